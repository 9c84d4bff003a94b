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

import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from typing import Any, Callable

from pipeline.images import encode_png

from . import metrics
from .build import fetch_policy
from .config import Settings
from .domain import PROGRESS_SPANS, ErrorCode, JobStatus, Stage
from .jobdir import KEPT_RENDER, KEPT_REPORT, MASK, PART, PHOTO, SWATCH, JobFolder, extension, surface_stem
from .jobs import Job, JobStore
from .learning import Source, StudioData, class_map, shipped_weights
from .queue import RenderQueue
from .refs import InputRef, RefKind

log = logging.getLogger("appliance.worker")

RECYCLE_GRACE = 30.0  # seconds an abandoned (timed-out) stage may take to finish before the process is recycled


class _Stop(Exception):
    """Internal: the attempt ends without a verdict (lease lost or shutting down)."""


class _Attempt:
    """One run of one job: why it should stop, if it should."""

    def __init__(self, job: Job, deadline: float):
        self.job = job
        self.deadline = deadline
        self.lease_lost = False
        self.reason: str | None = None  # "canceled" | "timeout" | "lost" | "shutdown"
        self.kept: dict[str, bytes] = {}  # inputs downloaded for this attempt, kept in the job's folder


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
        self.prefetch = None  # a Prefetcher (appliance/prefetch.py), when worker.prefetch_jobs > 0
        if settings.prefetch_jobs > 0:
            from .fetch import fetch_image
            from .prefetch import Prefetcher

            policy = self._policy
            self.prefetch = Prefetcher(lambda url, deadlines: fetch_image(url, what="prefetch", policy=policy,
                                                                          deadlines=deadlines),
                                       depth=settings.prefetch_jobs, workers=2)
        self._studio = StudioData(settings.data_dir)
        self._parser_version: tuple | None = None  # the pipeline was built with the shipped parser weights

    # --- one job ---
    def process(self, job_id: str) -> None:
        if self.recycle or self.stopping.is_set():
            time.sleep(0.2)  # this process is going away: leave the message for the next one
            self.queue.enqueue(job_id)
            return
        self._load_new_parser()  # between jobs: never while one renders, and before this one is claimed
        job = self.store.claim(job_id, self.owner, self.settings.lease_seconds)
        if job is None:
            return  # canceled, already taken, or a duplicate message
        attempt = self._attempt = _Attempt(job, time.monotonic() + self.settings.job_timeout)
        log.info("job %s: attempt %d", job_id, job.attempts)
        self._prefetch_ahead(job_id)
        try:
            self._run(attempt)
        except _Stop:
            log.info("job %s: stopped (%s)", job_id, attempt.reason)
        except Exception as exc:  # a bug of ours: the job still gets a verdict
            log.exception("job %s: unexpected error", job_id)
            self._finish(attempt, ErrorCode.PIPELINE_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._attempt = None

    def _run(self, attempt: _Attempt) -> None:
        from pipeline.errors import Cancelled, PipelineError, StageTimeout

        from .fetch import DownloadError

        job = attempt.job
        kept = self._kept_render(job)
        if kept is not None:  # rendered before, its upload failed while the storage was down: upload only
            log.info("job %s: uploading the render kept from an earlier attempt", job.job_id)
            self._deliver(attempt, *kept)
            return
        self._stage(attempt, Stage.DOWNLOADING, 0.0)
        texture_ref = InputRef.parse(job.texture_url)
        try:
            photo = self._input(attempt, InputRef.parse(job.image_url), "image_url", PHOTO)
            texture = texture_ref.value if texture_ref.is_colour else self._input(attempt, texture_ref,
                                                                                  "texture_url", SWATCH)
            mask = self._input(attempt, InputRef.parse(job.mask_url), "mask_url") if job.mask_url else None
            surfaces = self._surfaces(attempt)
        except DownloadError as exc:
            metrics.DOWNLOAD_FAILURES.labels(input=str(exc).split(":", 1)[0]).inc()  # the text starts with the field
            self._checkpoint(attempt)  # out of time (the download was cut at the job's deadline) or canceled
            return self._finish(attempt, ErrorCode.DOWNLOAD_FAILED, str(exc))
        self._keep(job, attempt.kept)
        self._checkpoint(attempt)

        def progress(stage: str, fraction: float) -> None:
            self._stage(attempt, Stage(stage), fraction)

        result = None
        try:
            result = self.pipeline.run(photo, texture, job.options, mask=mask, surfaces=surfaces, progress=progress,
                                       cancelled=lambda: self._should_stop(attempt))
        except Cancelled:
            self._checkpoint(attempt)  # raises _Stop or finishes as canceled / timeout
            return self._finish(attempt, ErrorCode.CANCELED, "canceled")
        except StageTimeout as exc:
            self._finish(attempt, ErrorCode.TIMEOUT, str(exc))
            return self._after_stage_timeout(exc)
        except PipelineError as exc:
            return self._finish(attempt, ErrorCode(exc.code), str(exc))
        self._keep(job, {MASK: encode_png(result.mask.astype("uint8") * 255)} | {
            surface_stem(MASK, name): encode_png(result.surfaces[name].astype("uint8") * 255)
            for name in getattr(result, "painted", {}) if name != "wall" and name in result.surfaces} | {
            # every part the parser found, for the mask editor's include/exclude-a-whole-part
            surface_stem(PART, name): encode_png(part.astype("uint8") * 255)
            for name, part in getattr(result, "surfaces", {}).items() if name != "wall" and part.any()})
        self._checkpoint(attempt)

        report = {"timings": _timings(result), "backends": result.backends, "warnings": result.warnings,
                  "scale": getattr(result, "scale", None),
                  "painted": getattr(result, "painted", None) if job.surfaces else None}
        if self._deliver(attempt, encode_png(result.image), report):
            metrics.stage_timings(result.timings)
            self._collect(job, photo, result)

    def _deliver(self, attempt: _Attempt, png: bytes, report: dict[str, Any]) -> bool:
        """Upload the render and complete the job. An upload that failed because the storage is unavailable
        keeps the render in the job's folder and puts the job back in the queue (until queue.max_attempts):
        the next attempt uploads it instead of rendering again. True when the job completed."""
        from .storage import UploadError

        job = attempt.job
        self._stage(attempt, Stage.UPLOADING, 0.0)
        try:
            url = self.storage.save(job.job_id, job.user_id, job.project_id, png, deadline=attempt.deadline)
        except Exception as exc:  # UploadError, or a network error the backend did not wrap
            metrics.UPLOAD_FAILURES.inc()
            message = str(exc) if isinstance(exc, UploadError) else f"{type(exc).__name__}: {exc}"
            if time.monotonic() > attempt.deadline:  # the retries ran into the job's time limit
                self._finish(attempt, ErrorCode.TIMEOUT, f"the job exceeded its time limit of "
                             f"{self.settings.job_timeout:g} s (render.job_timeout_seconds) while uploading: "
                             f"{message}", report=report)
                return False
            if getattr(exc, "retryable", False) and job.attempts < self.settings.max_attempts \
                    and self._keep_render(job, png, report) and self.store.requeue(job.job_id, self.owner):
                # another upload of this path follows (here or on another worker): no delayed delete may hit it
                self.storage.upload_follows(job.job_id, job.user_id, job.project_id)
                delay = self.settings.upload_retry_delay
                log.warning("job %s: upload failed (%s); render kept, upload again in %g s (attempt %d of %d)",
                            job.job_id, message, delay, job.attempts + 1, self.settings.max_attempts)
                self.queue.enqueue(job.job_id, delay=delay)
                return False
            if self.store.cancel_requested(job.job_id):  # canceled while uploading (requeue refuses a canceled job)
                self._finish(attempt, ErrorCode.CANCELED, "canceled by request while running", report=report)
                return False
            self._finish(attempt, ErrorCode.UPLOAD_FAILED, message, report=report)
            return False
        metrics.UPLOAD_BYTES.inc(len(png))
        if not self.store.complete(job.job_id, self.owner, result_url=url, **report):
            log.warning("job %s: finished but the lease was gone; result %s discarded", job.job_id, url)
            return False
        folder = JobFolder(self.settings, job.job_id)
        for name in (KEPT_RENDER, KEPT_REPORT):  # delivered: the kept copy is not needed any more
            folder.file(name).unlink(missing_ok=True)
        log.info("job %s: completed in %.2f s", job.job_id, time.time() - job.started_at)
        metrics.job_finished(JobStatus.COMPLETED, None, job.started_at)
        metrics.device_memory(self.device)
        return True

    def _keep_render(self, job: Job, png: bytes, report: dict[str, Any]) -> bool:
        folder = JobFolder(self.settings, job.job_id)
        try:
            folder.write(KEPT_REPORT, json.dumps(report).encode())
            folder.write(KEPT_RENDER, png)
        except (OSError, TypeError, ValueError) as exc:  # a full disk: the job fails upload_failed as before
            log.warning("job %s: could not keep the render for a later upload: %s", job.job_id, exc)
            return False
        return True

    def _kept_render(self, job: Job) -> tuple[bytes, dict[str, Any]] | None:
        folder = JobFolder(self.settings, job.job_id)
        try:
            return folder.file(KEPT_RENDER).read_bytes(), json.loads(folder.file(KEPT_REPORT).read_text())
        except (OSError, ValueError):
            return None

    def _surfaces(self, attempt: _Attempt) -> list[Any]:
        """The job's extra surfaces with their materials and masks fetched (the same guard as the main inputs;
        swatches kept as swatch-<surface>.<ext>)."""
        from pipeline.surfaces import SurfaceMaterial

        out = []
        for i, raw in enumerate(attempt.job.surfaces or ()):
            name, texture = raw["surface"], InputRef.parse(raw["texture_url"])
            where = f"surfaces[{i}]"
            material = texture.value if texture.is_colour else \
                self._input(attempt, texture, f"{where}.texture_url", surface_stem(SWATCH, name))
            mask = self._input(attempt, InputRef.parse(raw["mask_url"]), f"{where}.mask_url") \
                if raw.get("mask_url") else None
            out.append(SurfaceMaterial(name, material, raw.get("swatch_width_m"), mask))
        return out

    def _collect(self, job: Job, photo: bytes, result: Any) -> None:
        """A job rendered with a corrected mask becomes a training example (appliance/learning.py): a console mask
        fix always, an API mask_url when learning.collect_client_masks. Best effort: never fails the job."""
        ref = InputRef.parse(job.mask_url) if job.mask_url else None
        if ref is None or (ref.kind is RefKind.URL and not self.settings.collect_client_masks):
            return
        source = Source.MASK_FIX if ref.kind is RefKind.UPLOAD else Source.CLIENT_MASK
        given = [raw["surface"] for raw in getattr(job, "surfaces", None) or () if raw.get("mask_url")]
        try:
            classes = class_map(result.mask, {name: result.surfaces[name] for name in given
                                              if name in result.surfaces}) if given else None
            example = self._studio.add_example(photo, result.mask, job_id=job.job_id, source=source,
                                               classes=classes)
            log.info("job %s: kept as training example %s (%s)", job.job_id, example, source)
        except (OSError, ValueError) as exc:
            log.warning("job %s: could not keep it as a training example: %s", job.job_id, exc)

    def _load_new_parser(self) -> None:
        """Fine-tuned (or rolled back) house parser weights installed since the last job: load them now."""
        version = self._studio.weights_version()
        if version == self._parser_version:
            return
        self._parser_version = version  # a file that fails to load is not retried before the next install
        segmenter = getattr(self.pipeline, "segmenter", None)
        if not hasattr(segmenter, "load_parser"):
            return  # a segmenter without the house parser (GPU set, a client-mask-only pipeline)
        try:
            weights = self._studio.weights(shipped_weights(self.settings.model_dir))
            segmenter.load_parser(weights)
            log.info("house parser weights loaded from %s", weights)
        except Exception:
            log.exception("house parser weights could not be loaded; the previous ones stay in use")

    def _input(self, attempt: _Attempt, ref: InputRef, what: str, keep_as: str | None = None) -> bytes:
        """An input: a file of the job's own folder (an upload reference, put there by the console), else a
        download (remembered under `keep_as`, to be kept in the job's folder for the console)."""
        from .fetch import DownloadError, fetch_image

        if ref.kind is RefKind.URL:
            data = self._prefetched(attempt, ref.value)
            if data is None:
                data = fetch_image(ref.value, what=what, policy=self._policy, deadline=attempt.deadline)
            metrics.DOWNLOAD_BYTES.labels(input=what).inc(len(data))
            if keep_as is not None:
                attempt.kept[keep_as] = data
            return data
        try:
            if ref.file_name is None:
                raise FileNotFoundError(ref.value)
            return JobFolder(self.settings, attempt.job.job_id).file(ref.file_name).read_bytes()
        except OSError:
            raise DownloadError(f"{what}: the uploaded file {ref.value!r} is not in the job's folder "
                                f"(pruned?)") from None

    def _prefetch_ahead(self, current: str) -> None:
        """Start downloading the inputs of the next queued jobs (appliance/prefetch.py); best effort."""
        if self.prefetch is None:
            return
        try:
            upcoming = []
            for job_id in self.store.queued_ids()[: self.prefetch.depth]:
                job = self.store.get(job_id)
                if job is not None:
                    upcoming.append((job_id, _urls(job)))
            self.prefetch.ahead(upcoming, current)
        except Exception:  # the job store hiccuped: the jobs download their own inputs
            log.exception("prefetch: could not look ahead")

    def _prefetched(self, attempt: _Attempt, url: str) -> bytes | None:
        """The file prefetched for this job, waited for within the job's time limit; None: fetch it now."""
        future = None if self.prefetch is None else self.prefetch.take(attempt.job.job_id, url)
        if future is None:
            return None
        try:
            return future.result(timeout=max(0.0, attempt.deadline - time.monotonic()))
        except Exception:  # failed, canceled or still too slow: the ordinary download decides (and says why)
            return None

    def _keep(self, job: Job, files: dict[str, bytes]) -> None:
        """Keep what the job used in its folder, for the console (retention prunes it with the job): the photo and
        swatch as downloaded (photo.jpg, swatch.png, ...) and the paint mask (mask.png, white = painted). Best
        effort: a full disk never fails a job."""
        from .fetch import image_kind

        folder = JobFolder(self.settings, job.job_id)
        try:
            for stem, data in files.items():
                kind = "png" if stem.startswith(MASK) else image_kind(data[:16])
                folder.write(f"{stem}.{extension(kind)}", data)
        except (OSError, RuntimeError) as exc:
            log.warning("job %s: could not keep its inputs in %s: %s", job.job_id, folder.path, exc)

    def _stage(self, attempt: _Attempt, stage: Stage, fraction: float) -> None:
        low, high = PROGRESS_SPANS.get(stage, (0.0, 1.0))
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
            self._finish(attempt, ErrorCode.CANCELED, "canceled by request while running")
        elif attempt.reason == "timeout":
            self._finish(attempt, ErrorCode.TIMEOUT, f"the job exceeded its time limit of {self.settings.job_timeout:g} s "
                                             f"(render.job_timeout_seconds)")
        raise _Stop()

    def _finish(self, attempt: _Attempt, code: ErrorCode, message: str, result: Any = None,
                report: dict[str, Any] | None = None) -> None:
        extra = {} if result is None else {"timings": _timings(result), "backends": result.backends,
                                           "warnings": result.warnings}
        if report is not None:
            extra = {k: report[k] for k in ("timings", "backends", "warnings")}
        if self.store.fail(attempt.job.job_id, self.owner, code, message, **extra):
            log.info("job %s: failed %s: %s", attempt.job.job_id, code, message)
            metrics.job_finished(JobStatus.FAILED, code, attempt.job.started_at)
            if result is not None:
                metrics.stage_timings(result.timings)
            metrics.device_memory(self.device)

    def _after_stage_timeout(self, timeout: Any) -> None:
        """A timed-out stage keeps running in its abandoned thread (the StageTimeout carries it). Give it a grace
        period to finish; if it does not, recycle the process so that the next job gets the CPU/GPU (and memory)
        back."""
        if not timeout.stage_finished(self.recycle_grace):
            log.warning("stage %s still running %g s after its time limit: recycling the worker", timeout.stage,
                        self.recycle_grace)
            self.request_recycle()

    def request_recycle(self) -> None:
        self.recycle = True
        self.on_recycle()  # SIGTERM to this process: Consumer.run() stops, consumer_main exits with supervisor.EXIT_RECYCLE

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
        if status == JobStatus.FAILED:
            recovered = self.store.get(job.job_id)
            metrics.job_finished(JobStatus.FAILED, recovered.error_code if recovered else None, job.started_at)
        if status == JobStatus.QUEUED:
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
                if job is not None and job.status == JobStatus.QUEUED and now - job.queued_at >= min_age:
                    log.warning("job %s: queued without a queue message; enqueuing again", job_id)
                    self.queue.enqueue(job_id)

    def prune(self, now: float | None = None) -> int:
        """Delete finished jobs older than retention_hours, their stored results (local files, Supabase objects),
        and old uploads."""
        cutoff = (time.time() if now is None else now) - self.settings.retention_hours * 3600
        prune_results = self.storage.prune_results
        count = 0
        while True:
            batch = self.store.finished_before(cutoff)
            for job in batch:
                # upload_failed too: an upload given up on may have landed after all (an orphan otherwise)
                if prune_results and (job.result_url or job.error_code == ErrorCode.UPLOAD_FAILED):
                    self.storage.delete(job.job_id, job.user_id, job.project_id)
                count += self.store.delete(job.job_id)
                JobFolder(self.settings, job.job_id).remove()
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
        if self.prefetch is not None:
            self.prefetch.close()
        attempt = self._attempt
        if attempt is not None and self.store.release(attempt.job.job_id, self.owner) == JobStatus.QUEUED:
            log.info("job %s: handed back to the queue (worker stopping)", attempt.job.job_id)
            self.queue.enqueue(attempt.job.job_id)
        try:
            self.store.remove_worker(self.slot, os.getpid())
        except Exception:
            pass
        self.store.checkpoint()


def _urls(job: Job) -> list[str]:
    """The URL inputs of a job (photo, swatch, mask, and each surface's), the ones a worker downloads."""
    refs = [job.image_url, job.texture_url, job.mask_url]
    for entry in job.surfaces or ():
        refs += [entry.get("texture_url"), entry.get("mask_url")]
    return [r for r in refs if r and InputRef.parse(r).kind is RefKind.URL]


def _timings(result: Any) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.timings.items()}


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
