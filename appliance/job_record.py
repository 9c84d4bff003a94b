"""A job as the store returns it (`Job`, `WorkerInfo`), the store's exceptions, and the `render_jobs` column list
the row mapping reads: the data every caller of the store sees, apart from the SQL that reads and writes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .domain import ErrorCode, JobStatus

COLUMNS = ("job_id", "project_id", "user_id", "image_url", "texture_url", "mask_url", "options", "status", "stage",
           "progress", "result_url", "error_code", "error_message", "timings", "backends", "warnings", "attempts",
           "cancel_requested", "idempotency_key", "request_hash", "lease_owner", "lease_expires_at", "heartbeat_at",
           "created_at", "queued_at", "started_at", "completed_at", "scale", "surfaces", "painted", "webhook_url",
           "webhook_events")
SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM render_jobs"
_JSON_COLUMNS = ("options", "timings", "backends", "warnings", "scale", "surfaces", "painted", "webhook_events")
# columns added after the first schema: added to an older store when it is opened
ADDED_COLUMNS = ("scale", "surfaces", "painted", "webhook_url", "webhook_events")


class QueueFull(Exception):
    """The configured queue depth is reached."""


class StoreUnavailable(Exception):
    """The job store cannot serve now: busy or locked beyond the busy timeout, disk full, I/O error, unreachable,
    or a damaged file. `str(exc)` names the store and the reason (for logs and the start; not for clients)."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used with a different request."""


@dataclass(frozen=True)
class Job:
    job_id: str
    project_id: str | None
    user_id: str | None
    image_url: str
    texture_url: str
    mask_url: str | None
    options: dict[str, Any]
    status: JobStatus
    stage: str | None  # a Stage value while active
    progress: float
    result_url: str | None
    error_code: ErrorCode | None
    error_message: str | None
    timings: dict[str, float] | None
    backends: dict[str, str] | None
    warnings: list[str] | None
    attempts: int
    cancel_requested: int
    idempotency_key: str | None
    request_hash: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    heartbeat_at: float | None
    created_at: float
    queued_at: float
    started_at: float | None
    completed_at: float | None
    scale: dict[str, Any] | None = None  # RenderResult.scale of a completed job (with options.swatch_width_m)
    # the extra surfaces asked for (service.SurfaceSpec.to_dict() each), and, once completed, RenderResult.painted
    surfaces: list[dict[str, Any]] | None = None
    painted: dict[str, Any] | None = None
    webhook_url: str | None = None  # where appliance/webhooks.py delivers the job's webhook_events
    webhook_events: list[str] | None = None

    @classmethod
    def from_row(cls, row: tuple) -> "Job":
        data = dict(zip(COLUMNS, row))
        for key in _JSON_COLUMNS:
            if data[key] is not None:
                data[key] = json.loads(data[key])
        data["status"] = JobStatus(data["status"])
        if data["error_code"] is not None:
            data["error_code"] = ErrorCode(data["error_code"])
        return cls(**data)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    pid: int
    device: str | None
    state: str
    started_at: float
    heartbeat_at: float
    info: dict[str, Any] | None = None  # what the worker loaded: {"device": ..., "models": {stage: name}}


def dump(value: Any) -> str | None:
    """A JSON column's text: compact and key-sorted, so equal values are equal text."""
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)
