"""A job as the API shows it (the poll body of GET /render/jobs/{job_id}), also the body of its events and
webhooks and of each entry of a listing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .deliveries import webhook_state
from .domain import ACTIVE, PROCESSING, JobStatus, Stage
from .jobs import Job, JobStore


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def job_view(job: Job, store: JobStore, *, queue_position: int | None = None) -> dict[str, Any]:
    """A job as the API shows it. Documented fields never change meaning; extra ones may be added.
    `queue_position`: already known (a listing reads the whole line once), else read from the store."""
    view: dict[str, Any] = {"job_id": job.job_id,
                            "status": PROCESSING if job.status in ACTIVE else job.status,
                            "project_id": job.project_id, "user_id": job.user_id,
                            "created_at": iso(job.created_at), "attempts": job.attempts}
    if job.status == JobStatus.QUEUED:
        view.update(stage=Stage.QUEUED, progress=0.0,
                    queue_position=store.queue_position(job) if queue_position is None else queue_position)
    elif job.status == JobStatus.RUNNING:
        view.update(stage=job.stage or Stage.STARTING, progress=round(job.progress, 3),
                    started_at=iso(job.started_at))
    if job.status in ACTIVE and job.cancel_requested:
        view["cancel_requested"] = True
    if job.status == JobStatus.COMPLETED:
        view["result_url"] = job.result_url
    if job.status == JobStatus.FAILED:
        view.update(error_code=job.error_code, error_message=job.error_message)
    if job.status not in ACTIVE:
        view.update(started_at=iso(job.started_at), completed_at=iso(job.completed_at))
        for key in ("timings", "backends", "warnings", "scale", "painted"):  # scale: with options.swatch_width_m
            if getattr(job, key) is not None:
                view[key] = getattr(job, key)
    if job.webhook_url is not None:  # {events, deliveries: [{delivery_id, event, state, attempts, ...}]}
        view["webhook"] = webhook_state(job, store)
    return view
