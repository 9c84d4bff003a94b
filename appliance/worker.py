"""The worker: runs jobs (fetch -> pipeline -> storage), one at a time, with the models loaded once per process.

The consumer process and its supervisor live in appliance/supervisor.py; fetching and keeping a job's inputs in
appliance/job_inputs.py; recovery and retention in appliance/housekeeping.py.

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
import signal
import socket
import threading
import time
from typing import Any, Callable

from pipeline.images import encode_png

from . import metrics
from .attempt import Attempt, Stop
from .config import Settings
from .domain import PROGRESS_SPANS, ErrorCode, JobStatus, Stage
from .housekeeping import Housekeeper, pid_alive  # noqa: F401  (pid_alive re-exported)
from .job_inputs import JobInputs
from .jobdir import KEPT_RENDER, KEPT_REPORT, MASK, PART, PHOTO, SWATCH, JobFolder, surface_stem
from .jobs import Job, JobStore
from .learning import Source, StudioData, class_map, shipped_weights
from .queue import RenderQueue
from .refs import InputRef, RefKind

log = logging.getLogger("appliance.worker")

RECYCLE_GRACE = 30.0  # seconds an abandoned (timed-out) stage may take to finish before the process is recycled


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
        self._attempt: Attempt | None = None
        self.inputs = JobInputs(settings, store)
        self.prefetch = self.inputs.prefetch  # a Prefetcher (appliance/prefetch.py), when worker.prefetch_jobs > 0
        self.keeper = Housekeeper(settings, store, queue, storage, slot=self.slot, owner=self.owner)
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
        attempt = self._attempt = Attempt(job, time.monotonic() + self.settings.job_timeout)
        log.info("job %s: attempt %d", job_id, job.attempts)
        self.inputs.prefetch_ahead(job_id)
        try:
            self._run(attempt)
        except Stop:
            log.info("job %s: stopped (%s)", job_id, attempt.reason)
        except Exception as exc:  # a bug of ours: the job still gets a verdict
            log.exception("job %s: unexpected error", job_id)
            self._finish(attempt, ErrorCode.PIPELINE_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._attempt = None

    def _run(self, attempt: Attempt) -> None:
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
            photo = self.inputs.fetch(attempt, InputRef.parse(job.image_url), "image_url", PHOTO)
            texture = texture_ref.value if texture_ref.is_colour else self.inputs.fetch(attempt, texture_ref,
                                                                                  "texture_url", SWATCH)
            mask = self.inputs.fetch(attempt, InputRef.parse(job.mask_url), "mask_url") if job.mask_url else None
            surfaces = self.inputs.surfaces(attempt)
        except DownloadError as exc:
            metrics.DOWNLOAD_FAILURES.labels(input=str(exc).split(":", 1)[0]).inc()  # the text starts with the field
            self._checkpoint(attempt)  # out of time (the download was cut at the job's deadline) or canceled
            return self._finish(attempt, ErrorCode.DOWNLOAD_FAILED, str(exc))
        self.inputs.keep(job, attempt.kept)
        self._checkpoint(attempt)

        def progress(stage: str, fraction: float) -> None:
            self._stage(attempt, Stage(stage), fraction)

        result = None
        try:
            result = self.pipeline.run(photo, texture, job.options, mask=mask, surfaces=surfaces, progress=progress,
                                       cancelled=lambda: self._should_stop(attempt))
        except Cancelled:
            self._checkpoint(attempt)  # raises Stop or finishes as canceled / timeout
            return self._finish(attempt, ErrorCode.CANCELED, "canceled")
        except StageTimeout as exc:
            self._finish(attempt, ErrorCode.TIMEOUT, str(exc))
            return self._after_stage_timeout(exc)
        except PipelineError as exc:
            return self._finish(attempt, ErrorCode(exc.code), str(exc))
        self.inputs.keep(job, {MASK: encode_png(result.mask.astype("uint8") * 255)} | {
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

    def _deliver(self, attempt: Attempt, png: bytes, report: dict[str, Any]) -> bool:
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

    def _stage(self, attempt: Attempt, stage: Stage, fraction: float) -> None:
        low, high = PROGRESS_SPANS.get(stage, (0.0, 1.0))
        if not self.store.set_stage(attempt.job.job_id, self.owner, stage, low + (high - low) * fraction):
            attempt.lease_lost = True

    def _should_stop(self, attempt: Attempt) -> bool:
        if attempt.lease_lost:
            attempt.reason = "lost"
        elif self.stopping.is_set():
            attempt.reason = "shutdown"
        elif time.monotonic() > attempt.deadline:
            attempt.reason = "timeout"
        elif self.store.cancel_requested(attempt.job.job_id):
            attempt.reason = "canceled"
        return attempt.reason is not None

    def _checkpoint(self, attempt: Attempt) -> None:
        """Between steps: stop here if the job was canceled, ran out of time, or is no longer ours."""
        if not self._should_stop(attempt):
            return
        if attempt.reason == "canceled":
            self._finish(attempt, ErrorCode.CANCELED, "canceled by request while running")
        elif attempt.reason == "timeout":
            self._finish(attempt, ErrorCode.TIMEOUT, f"the job exceeded its time limit of {self.settings.job_timeout:g} s "
                                             f"(render.job_timeout_seconds)")
        raise Stop()

    def _finish(self, attempt: Attempt, code: ErrorCode, message: str, result: Any = None,
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
    # --- recovery and housekeeping (appliance/housekeeping.py) ---
    def recover_orphans(self) -> None:
        self.keeper.recover_orphans()

    def housekeeping(self) -> None:
        """The periodic Huey task."""
        self.keeper.run()

    def prune(self, now: float | None = None) -> int:
        return self.keeper.prune(now)

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
def _timings(result: Any) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.timings.items()}