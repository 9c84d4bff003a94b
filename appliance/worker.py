"""The worker: runs jobs (fetch -> pipeline -> storage), one at a time, with the models loaded once per process.

The consumer process and its supervisor live in appliance/supervisor.py.

Never losing a job
------------------
The job store is the system of record. A claimed job carries a lease (`lease_owner` = host/device/pid,
`lease_expires_at`) that a heartbeat thread renews every lease/3 seconds. A job whose lease expired (worker hung
or killed) is requeued by the housekeeping task, and a restarted consumer requeues at once the jobs of its own
slot whose process is gone. Each requeue counts an attempt; after `max_attempts` the job fails with a reason.
SIGTERM (shutdown) hands the running job back to the queue without counting the attempt.

Cluster mode
------------
With cluster.database_url (PostgreSQL) + cluster.queue_url (Redis), any number of `render-appliance worker --device
cuda:N` processes on any number of machines drain one queue; the slot is `worker.name` (default: the host name) +
device, so every slot must be unique. Redis hands a message out once and never gets it back from a killed consumer:
the lease above is what brings the job back. Housekeeping runs under a named lease in the job store, so exactly
one process does it per interval, however many consumers' schedulers fire.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

from .config import Settings
from .jobs import QUEUED, UPLOAD_REF, Job, JobStore, upload_name
from .queue import RenderQueue

log = logging.getLogger("appliance.worker")

EXIT_RECYCLE = 75  # the consumer asks its supervisor for a fresh process
RECYCLE_GRACE = 30.0  # seconds an abandoned (timed-out) stage may take to finish before the process is recycled
# Overall progress (0..1) that each stage spans.
_SPANS = {"downloading": (0.0, 0.1), "segment": (0.1, 0.45), "geometry": (0.45, 0.6), "project": (0.6, 0.9),
          "refine": (0.75, 0.92), "uploading": (0.92, 1.0)}


def build_storage(settings: Settings):
    """SupabaseStorage when SUPABASE_URL + key are configured, else LocalStorage under data_dir/results."""
    if settings.uses_supabase:
        from .storage.supabase import SupabaseStorage

        return SupabaseStorage(settings.supabase_url, settings.supabase_key, bucket=settings.supabase_bucket,
                               signed_url_seconds=settings.supabase_signed_url_seconds)
    from .storage.local import LocalStorage

    return LocalStorage(settings.results_dir, settings.base_url)


def fetch_policy(settings: Settings):
    from .fetch import FetchPolicy

    return FetchPolicy(max_bytes=settings.fetch_max_bytes, connect_timeout=settings.fetch_connect_timeout,
                       read_timeout=settings.fetch_read_timeout, allow_networks=settings.fetch_allow_networks)


def build_pipeline(settings: Settings):
    """The configured pipeline: worker.pipeline = "module:callable" (called with the settings), by default
    pipeline.backends.from_settings (per stage: the GPU set when installed, else the embedded CPU set)."""
    import importlib

    module, _, name = (settings.worker_pipeline or "pipeline.backends:from_settings").partition(":")
    return getattr(importlib.import_module(module), name)(settings)


def resolve_device(settings: Settings, device: str | None) -> str | None:
    """The consumer's device: "cpu" under force_cpu, else the flag, else the config; None = auto."""
    if settings.force_cpu:
        return "cpu"
    return device or settings.worker_device


class _Stop(Exception):
    """Internal: the attempt ends without a verdict (lease lost or shutting down)."""


class _Attempt:
    """One run of one job: why it should stop, if it should."""

    def __init__(self, job: Job, deadline: float):
        self.job = job
        self.deadline = deadline
        self.lease_lost = False
        self.reason: str | None = None  # "canceled" | "timeout" | "lost" | "shutdown"


class Worker:
    """Runs jobs from the store through the pipeline. `process(job_id)` is the Huey task body."""

    def __init__(self, settings: Settings, store: JobStore, queue: RenderQueue, storage: Any, pipeline: Any,
                 *, device: str | None = None):
        self.settings = settings
        self.store = store
        self.queue = queue
        self.storage = storage
        self.pipeline = pipeline
        self.device = device
        self.slot = f"{settings.worker_name or socket.gethostname()}/{device or 'auto'}"
        self.owner = f"{self.slot}/{os.getpid()}"
        self.started_at = time.time()
        self.recycle = False
        self.recycle_grace = RECYCLE_GRACE
        self.on_recycle: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM)
        self.stopping = threading.Event()
        self._attempt: _Attempt | None = None
        self._policy = fetch_policy(settings)

    # --- one job ---
    def process(self, job_id: str) -> None:
        if self.recycle or self.stopping.is_set():
            time.sleep(0.2)  # this process is going away: leave the message for the next one
            self.queue.enqueue(job_id)
            return
        job = self.store.claim(job_id, self.owner, self.settings.lease_seconds)
        if job is None:
            return  # canceled, already taken, or a duplicate message
        attempt = self._attempt = _Attempt(job, time.monotonic() + self.settings.job_timeout)
        log.info("job %s: attempt %d", job_id, job.attempts)
        try:
            self._run(attempt)
        except _Stop:
            log.info("job %s: stopped (%s)", job_id, attempt.reason)
        except Exception as exc:  # a bug of ours: the job still gets a verdict
            log.exception("job %s: unexpected error", job_id)
            self._finish(attempt, "pipeline_error", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._attempt = None

    def _run(self, attempt: _Attempt) -> None:
        from pipeline.errors import Cancelled, PipelineError, StageTimeout

        from .fetch import DownloadError
        from .storage import UploadError

        job = attempt.job
        self._stage(attempt, "downloading", 0.0)
        try:
            photo = self._input(job, job.image_url, "image_url")
            texture = job.texture_url if job.texture_url.startswith("#") else self._input(job, job.texture_url,
                                                                                          "texture_url")
            mask = self._input(job, job.mask_url, "mask_url") if job.mask_url else None
        except DownloadError as exc:
            return self._finish(attempt, "download_failed", str(exc))
        self._keep(job, photo=None if job.image_url.startswith(UPLOAD_REF) else photo,
                   swatch=None if job.texture_url.startswith(("#", UPLOAD_REF)) else texture)
        self._checkpoint(attempt)

        def progress(stage: str, fraction: float) -> None:
            self._stage(attempt, stage, fraction)

        result = None
        try:
            result = self.pipeline.run(photo, texture, job.options, mask=mask, progress=progress,
                                       cancelled=lambda: self._should_stop(attempt))
        except Cancelled:
            self._checkpoint(attempt)  # raises _Stop or finishes as canceled / timeout
            return self._finish(attempt, "canceled", "canceled")
        except StageTimeout as exc:
            self._finish(attempt, "timeout", str(exc))
            return self._after_stage_timeout(exc.stage)
        except PipelineError as exc:
            return self._finish(attempt, exc.code, str(exc))
        self._keep(job, mask=result.mask)
        self._checkpoint(attempt)

        self._stage(attempt, "uploading", 0.0)
        png = encode_png(result.image)
        try:
            url = self.storage.save(job.job_id, job.user_id, job.project_id, png)
        except UploadError as exc:
            return self._finish(attempt, "upload_failed", str(exc), result)
        except Exception as exc:  # network errors the backend did not wrap
            return self._finish(attempt, "upload_failed", f"{type(exc).__name__}: {exc}", result)
        if not self.store.complete(job.job_id, self.owner, result_url=url, timings=_timings(result),
                                   backends=result.backends, warnings=result.warnings,
                                   scale=getattr(result, "scale", None)):
            log.warning("job %s: finished but the lease was gone; result %s discarded", job.job_id, url)
        else:
            log.info("job %s: completed in %.2f s", job.job_id, time.time() - job.started_at)

    def _input(self, job: Job, ref: str, what: str) -> bytes:
        """An input: a file of the job's own folder ("upload:<name>", put there by the console), else a download."""
        from .fetch import DownloadError, fetch_image

        if not ref.startswith(UPLOAD_REF):
            return fetch_image(ref, what=what, policy=self._policy)
        name = upload_name(ref)
        try:
            if name is None:
                raise FileNotFoundError(ref)
            return (self.settings.job_dir(job.job_id) / name).read_bytes()
        except OSError:
            raise DownloadError(f"{what}: the uploaded file {ref[len(UPLOAD_REF):]!r} is not in the job's folder "
                                f"(pruned?)") from None

    def _keep(self, job: Job, **files: Any) -> None:
        """Keep what the job used in its folder, for the console (retention prunes it with the job): the photo and
        swatch as downloaded (photo.jpg, swatch.png, ...) and the paint mask (mask.png, white = painted). Best
        effort: a full disk never fails a job."""
        from .fetch import image_kind

        folder = self.settings.job_dir(job.job_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for stem, data in files.items():
                if data is None:
                    continue
                if stem == "mask":
                    name, data = "mask.png", encode_png(data.astype("uint8") * 255)
                else:
                    name = f"{stem}.{(image_kind(data[:16]) or 'bin').replace('jpeg', 'jpg')}"
                tmp = folder / f".{name}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, folder / name)
        except (OSError, RuntimeError) as exc:
            log.warning("job %s: could not keep its inputs in %s: %s", job.job_id, folder, exc)

    def _stage(self, attempt: _Attempt, stage: str, fraction: float) -> None:
        low, high = _SPANS.get(stage, (0.0, 1.0))
        if not self.store.set_stage(attempt.job.job_id, self.owner, stage, low + (high - low) * fraction):
            attempt.lease_lost = True

    def _should_stop(self, attempt: _Attempt) -> bool:
        if attempt.lease_lost:
            attempt.reason = "lost"
        elif self.stopping.is_set():
            attempt.reason = "shutdown"
        elif time.monotonic() > attempt.deadline:
            attempt.reason = "timeout"
        elif self.store.cancel_requested(attempt.job.job_id):
            attempt.reason = "canceled"
        return attempt.reason is not None

    def _checkpoint(self, attempt: _Attempt) -> None:
        """Between steps: stop here if the job was canceled, ran out of time, or is no longer ours."""
        if not self._should_stop(attempt):
            return
        if attempt.reason == "canceled":
            self._finish(attempt, "canceled", "canceled by request while running")
        elif attempt.reason == "timeout":
            self._finish(attempt, "timeout", f"the job exceeded its time limit of {self.settings.job_timeout:g} s "
                                             f"(render.job_timeout_seconds)")
        raise _Stop()

    def _finish(self, attempt: _Attempt, code: str, message: str, result: Any = None) -> None:
        extra = {} if result is None else {"timings": _timings(result), "backends": result.backends,
                                           "warnings": result.warnings}
        if self.store.fail(attempt.job.job_id, self.owner, code, message, **extra):
            log.info("job %s: failed %s: %s", attempt.job.job_id, code, message)

    def _after_stage_timeout(self, stage: str) -> None:
        """A timed-out stage keeps running in its abandoned thread. Give it a grace period to finish; if it does
        not, recycle the process so that the next job gets the CPU/GPU (and memory) back."""
        deadline = time.monotonic() + self.recycle_grace
        for thread in threading.enumerate():
            if thread.name == f"stage-{stage}":
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("stage %s still running %g s after its time limit: recycling the worker", stage,
                                self.recycle_grace)
                    self.request_recycle()
                    return

    def request_recycle(self) -> None:
        self.recycle = True
        self.on_recycle()  # SIGTERM to this process: Consumer.run() stops, consumer_main exits with EXIT_RECYCLE

    # --- recovery and housekeeping ---
    def recover_orphans(self) -> None:
        """At start: jobs left running by a previous process of this slot (now dead) go back to the queue, and
        queued jobs without a queue message (lost between insert and enqueue) get one."""
        for job in self.store.running():
            owner = job.lease_owner or ""
            slot, _, pid = owner.rpartition("/")
            if slot == self.slot and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                self._recover(job, f"worker process {pid} died")
        self._repair_messages(min_age=0.0)

    def housekeeping(self) -> None:
        """Periodic (Huey periodic task): at most one process runs it per interval (a named lease)."""
        interval = self.settings.maintenance_interval
        if not self.store.acquire_lease("housekeeping", self.owner, interval * 0.9):
            return
        for job in self.store.expired():
            self._recover(job, "its worker stopped renewing the lease (hung or killed)")
        self._repair_messages(min_age=max(5.0, interval))
        self.prune()

    def _recover(self, job: Job, reason: str) -> None:
        status = self.store.recover(job, self.settings.max_attempts, reason)
        log.warning("job %s: %s -> %s", job.job_id, reason, status)
        if status == QUEUED:
            self.queue.enqueue(job.job_id)

    def _repair_messages(self, min_age: float) -> None:
        queued = self.store.queued_ids()
        if not queued:
            return
        pending = self.queue.pending_job_ids()
        now = time.time()
        for job_id in queued:
            if job_id not in pending:
                job = self.store.get(job_id)
                if job is not None and job.status == QUEUED and now - job.queued_at >= min_age:
                    log.warning("job %s: queued without a queue message; enqueuing again", job_id)
                    self.queue.enqueue(job_id)

    def prune(self, now: float | None = None) -> int:
        """Delete finished jobs older than retention_hours, their local results, and old uploads."""
        cutoff = (time.time() if now is None else now) - self.settings.retention_hours * 3600
        local = getattr(self.storage, "name", "") == "local"
        count = 0
        while True:
            batch = self.store.finished_before(cutoff)
            for job in batch:
                if local and job.result_url:
                    self.storage.delete(job.job_id, job.user_id, job.project_id)
                count += self.store.delete(job.job_id)
                shutil.rmtree(self.settings.job_dir(job.job_id), ignore_errors=True)
            if len(batch) < 500:
                break
        jobs_dir = self.settings.jobs_dir  # folders left without a job (a console upload never submitted)
        for folder in jobs_dir.iterdir() if jobs_dir.is_dir() else ():
            try:
                if folder.stat().st_mtime < cutoff and self.store.get(folder.name) is None:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
        uploads = self.settings.uploads_dir
        if uploads.is_dir():
            for path in uploads.rglob("*"):
                try:
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                except OSError:
                    pass
        if count:
            log.info("retention: pruned %d jobs finished before %s", count, time.ctime(cutoff))
        return count

    # --- the consumer process ---
    def beat(self, state: str = "ready") -> None:
        self.store.worker_beat(self.slot, os.getpid(), self.device, state, self.started_at)
        attempt = self._attempt
        if attempt is not None and not self.store.renew(attempt.job.job_id, self.owner,
                                                        self.settings.lease_seconds):
            attempt.lease_lost = True

    def _heartbeat_loop(self) -> None:
        period = min(self.settings.lease_seconds / 3, 5.0)
        while not self.stopping.wait(period):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed")

    def serve_forever(self) -> None:
        """Recover, then run the Huey consumer on this (main) thread until SIGTERM/SIGINT."""
        self.beat("starting")
        self.recover_orphans()
        consumer = self.queue.consumer(render=self.process, housekeeping=self.housekeeping,
                                       poll_interval=self.settings.poll_interval,
                                       periodic_seconds=self.settings.maintenance_interval)
        consumer.shutdown_timeout = 5.0
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        self.beat("ready")
        try:
            consumer.run()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.stopping.set()
        attempt = self._attempt
        if attempt is not None and self.store.release(attempt.job.job_id, self.owner):
            log.info("job %s: handed back to the queue (worker stopping)", attempt.job.job_id)
            self.queue.enqueue(attempt.job.job_id)
        try:
            self.store.remove_worker(self.slot, os.getpid())
        except Exception:
            pass


def _timings(result: Any) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.timings.items()}


def encode_png(image) -> bytes:
    """RGB (H, W, 3) or grey (H, W) uint8 -> PNG bytes."""
    import cv2

    ok, data = cv2.imencode(".png", image[:, :, ::-1] if image.ndim == 3 else image,
                            [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def describe_pipeline(pipeline: Any, device: str | None, threads: int) -> dict[str, Any]:
    """What the console shows of a worker: the device it renders on and the model of each stage."""
    try:
        from pipeline.backends import chosen_backends

        models = chosen_backends(pipeline)
    except Exception:  # a custom pipeline without the usual stages
        models = {}
    label = f"CPU ({threads} threads)"
    torch = sys.modules.get("torch")  # only where the models imported it
    if torch is not None and any("cuda" in name for name in models.values()):
        try:
            index = torch.device(device).index if device and device != "cuda" else None
            index = torch.cuda.current_device() if index is None else index
            label = f"{torch.cuda.get_device_name(index)} (cuda:{index})"
        except Exception:
            label = device or "cuda"
    return {"device": label, "models": models}


def pid_alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie, killed but not yet reaped, counts as dead)?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
