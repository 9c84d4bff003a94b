"""The job vocabulary, defined once: statuses, error codes, stages, and how far along each stage is.

StrEnums: each member is also its string, so the job table, the JSON bodies and the console keep the same values
that the API documents (`"processing"`, `"download_failed"`, ...) and comparisons with stored strings just work.
"""

from __future__ import annotations

from enum import StrEnum

from pipeline.stages import PipelineStage


class JobStatus(StrEnum):
    """A job's status in the job table (the API shows queued and running both as `processing`)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
PROCESSING = "processing"  # what the API calls an active job


class ErrorCode(StrEnum):
    """`error_code` of a failed job. The pipeline's own errors carry theirs in `PipelineError.code`."""

    DOWNLOAD_FAILED = "download_failed"
    VALIDATION_FAILED = "validation_failed"
    PIPELINE_ERROR = "pipeline_error"
    UPLOAD_FAILED = "upload_failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"


class Stage(StrEnum):
    """`stage` of an active job, in running order: the worker's own steps around the pipeline's stages."""

    QUEUED = "queued"
    STARTING = "starting"
    DOWNLOADING = "downloading"
    SEGMENT = PipelineStage.SEGMENT.value
    GEOMETRY = PipelineStage.GEOMETRY.value
    PROJECT = PipelineStage.PROJECT.value
    REFINE = PipelineStage.REFINE.value
    UPLOADING = "uploading"


# The share of overall progress (0..1) that each stage spans: back to back in running order, so progress never
# goes backwards (without refinement it jumps from the end of project to the start of uploading).
PROGRESS_SPANS: dict[Stage, tuple[float, float]] = {
    Stage.DOWNLOADING: (0.0, 0.1), Stage.SEGMENT: (0.1, 0.45), Stage.GEOMETRY: (0.45, 0.6),
    Stage.PROJECT: (0.6, 0.75), Stage.REFINE: (0.75, 0.92), Stage.UPLOADING: (0.92, 1.0)}


class WebhookEvent(StrEnum):
    """What a job's webhook is sent for (`webhook_events` of POST /render/jobs)."""

    COMPLETED = "completed"
    FAILED = "failed"
    PROGRESS = "progress"  # each stage a running job enters


DEFAULT_WEBHOOK_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED)


def is_canceled(status: str, error_code: str | None) -> bool:
    """A canceled job is a failed one whose error code is `canceled` (the API has no separate status)."""
    return status == JobStatus.FAILED and error_code == ErrorCode.CANCELED


class HttpError(StrEnum):
    """`error` of an HTTP error answer (the API's own refusals; a failed job's reason is its ErrorCode).
    400 answers say ErrorCode.VALIDATION_FAILED."""

    UNAUTHORIZED = "unauthorized"
    LISTING_DISABLED = "listing_disabled"  # GET /render/jobs without a configured server.api_key
    JOB_NOT_FOUND = "job_not_found"
    NOT_FOUND = "not_found"  # GET /results/{path}
    JOB_FINISHED = "job_finished"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    QUEUE_FULL = "queue_full"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    TOO_MANY_STREAMS = "too_many_streams"  # GET /render/jobs/{id}/events over server.events_max_streams
