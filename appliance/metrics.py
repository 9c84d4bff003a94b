"""Prometheus metrics (prometheus_client): what the worker counts, what a scrape reads from the job store, and
GET /metrics.

`serve` runs two processes (the API and its supervised worker), so the client's multiprocess mode is used: the
serving process points PROMETHEUS_MULTIPROC_DIR at `Settings.metrics_dir` (appliance.server, emptied at start,
before prometheus_client is first imported; the worker inherits it) and a scrape merges every process's files. Queue
figures are not counted but read from the job store at scrape time (the store is the system of record).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)

JOBS_FINISHED = Counter("render_jobs_finished", "Jobs that ended, by final status and error code "
                        "(error_code is empty for completed jobs)", ["status", "error_code"])
JOB_DURATION = Histogram("render_job_duration_seconds", "Wall time of a job's last attempt, start to end",
                         ["status"], buckets=_JOB_BUCKETS)
STAGE_DURATION = Histogram("render_stage_duration_seconds", "Time per pipeline stage of finished attempts",
                           ["stage"], buckets=_STAGE_BUCKETS)
DOWNLOAD_BYTES = Counter("render_download_bytes", "Bytes of inputs downloaded, by input", ["input"])
DOWNLOAD_FAILURES = Counter("render_download_failures", "Jobs failed download_failed, by the input that failed",
                            ["input"])
UPLOAD_BYTES = Counter("render_upload_bytes", "Bytes of results stored")
UPLOAD_FAILURES = Counter("render_upload_failures", "Results that could not be stored (upload_failed)")
WEBHOOK_DELIVERIES = Counter("render_webhook_deliveries", "Webhook delivery attempts, by event and outcome "
                             "(delivered, retry, refused, gave_up)", ["event", "outcome"])
WORKER_RESTARTS = Counter("render_worker_restarts", "Worker processes restarted by their supervisor, by reason "
                          "(recycle, exit)", ["reason"])
DEVICE_MEMORY = Gauge("render_device_memory_bytes", "GPU memory held by the worker's PyTorch (allocated, "
                      "reserved)", ["device", "kind"], multiprocess_mode="livesum")


# --- what the worker and the supervisor record ---------------------------------------------------------------

def job_finished(status: str, error_code: str | None, started_at: float | None) -> None:
    JOBS_FINISHED.labels(status=str(status), error_code=str(error_code or "")).inc()
    if started_at is not None:
        JOB_DURATION.labels(status=str(status)).observe(max(0.0, time.time() - started_at))


def stage_timings(timings: dict[str, float] | None) -> None:
    for stage, seconds in (timings or {}).items():
        if stage != "total":
            STAGE_DURATION.labels(stage=stage).observe(seconds)


def device_memory(device: str | None) -> None:
    """After a job: what PyTorch holds on the GPU (nothing is imported or initialised for this)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    index = torch.cuda.current_device()
    name = device or f"cuda:{index}"
    DEVICE_MEMORY.labels(device=name, kind="allocated").set(torch.cuda.memory_allocated(index))
    DEVICE_MEMORY.labels(device=name, kind="reserved").set(torch.cuda.memory_reserved(index))


def worker_exited(pid: int | None, recycled: bool) -> None:
    WORKER_RESTARTS.labels(reason="recycle" if recycled else "exit").inc()
    if pid is not None and MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # its live gauges leave the sums


# --- a scrape ----------------------------------------------------------------------------------------------

class StoreCollector:
    """Queue figures read from the job store at scrape time."""

    def __init__(self, store: Any):
        self.store = store

    def collect(self):
        now = time.time()
        figures = self.store.queue_figures()
        yield GaugeMetricFamily("render_queue_depth", "Jobs waiting to start", value=figures["queued"])
        yield GaugeMetricFamily("render_jobs_running", "Jobs rendering now", value=figures["running"])
        oldest = figures["oldest_queued_at"]
        yield GaugeMetricFamily("render_queue_oldest_wait_seconds", "How long the longest-waiting job has waited "
                                "(0 when none waits)", value=0.0 if oldest is None else max(0.0, now - oldest))
        from .deliveries import Deliveries

        yield GaugeMetricFamily("render_webhook_deliveries_pending", "Webhook deliveries not yet made (nor given "
                                "up)", value=Deliveries(self.store).pending_count())


def scrape(store: Any) -> tuple[bytes, str]:
    """The Prometheus text exposition: every process's metrics (multiprocess mode) plus the store's figures."""
    from prometheus_client import REGISTRY

    store_registry = CollectorRegistry()
    store_registry.register(StoreCollector(store))
    if MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:  # one process (`render-appliance worker`, tests): the default registry has it all
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(store_registry), CONTENT_TYPE_LATEST
