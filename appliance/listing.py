"""GET /render/jobs: a page of jobs, newest first, with an opaque cursor to the next page.

The cursor is the sort key of the last job shown (created_at, job_id), base64url-encoded JSON: keyset paging, so
a page costs one index range scan however deep it is, and jobs created meanwhile never shift the pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable

from .domain import ACTIVE, ErrorCode, JobStatus
from .jobs import Job, JobStore

# The listing's `status` filter, in the API's words -> (statuses in the job table, error code).
STATUS_FILTERS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "processing": (tuple(ACTIVE), None), "completed": ((JobStatus.COMPLETED,), None),
    "failed": ((JobStatus.FAILED,), None), "canceled": ((JobStatus.FAILED,), ErrorCode.CANCELED)}


def encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at, job.job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for anything that is not a cursor of this listing."""
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    # RecursionError: a cursor of thousands of "[" nests deeper than json.loads can go
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise ValueError("not a cursor of this listing (use next_cursor as given)") from None
    if not isinstance(created_at, (int, float)) or isinstance(created_at, bool) or not isinstance(job_id, str):
        raise ValueError("not a cursor of this listing (use next_cursor as given)")
    return float(created_at), job_id


def list_page(store: JobStore, query: Any, view: Callable[[Job, int | None], dict]) -> dict[str, Any]:
    """`query`: appliance.schemas.ListQuery; `view(job, queue_position)`: a poll body. -> {jobs: [poll bodies],
    next_cursor: str | None}. The queued jobs' positions come from one read of the line (at most queue.depth
    ids), not one count per job."""
    statuses, error_code = STATUS_FILTERS[query.status] if query.status else (None, None)
    jobs = store.page(project_id=query.project_id, user_id=query.user_id, statuses=statuses, error_code=error_code,
                      before=decode_cursor(query.cursor) if query.cursor else None, limit=query.limit + 1)
    more = len(jobs) > query.limit
    jobs = jobs[:query.limit]
    line = {job_id: i for i, job_id in enumerate(store.queued_ids())} \
        if any(job.status == JobStatus.QUEUED for job in jobs) else {}
    return {"jobs": [view(job, line.get(job.job_id)) for job in jobs],
            "next_cursor": encode_cursor(jobs[-1]) if more else None}
