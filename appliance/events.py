"""GET /render/jobs/{job_id}/events: the job's poll body as server-sent events, each time it changes, until it ends.

    event: progress    data: the poll body while processing (stage, progress, queue_position)
    event: completed   data: the finished poll body (result_url, ...), then the stream ends
    event: failed      data: the finished poll body (error_code, error_message), then the stream ends
    event: error       data: {"error": "job_not_found"} if the job disappears (retention), then the stream ends

The worker runs in another process and the job store is the one source of truth, so each stream reads the store
every POLL_SECONDS, in a worker thread (never on the event loop that NiceGUI's pages share), and sends an event
only when the body changed. sse-starlette frames the events, pings idle streams and notices a client that left.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable

import anyio
from sse_starlette import EventSourceResponse

from .domain import HttpError, JobStatus

POLL_SECONDS = 0.02  # store reads per open stream: 50/s (a read is ~0.1 ms); a change is sent within this
PING_SECONDS = 15  # a comment line on idle streams, so that proxies keep them open
RETRY_MS = 2000  # what an EventSource waits before reconnecting
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)


async def job_events(job_id: str, read: Callable[[str], dict[str, Any] | None],
                     interval: float = POLL_SECONDS) -> AsyncIterator[dict[str, Any]]:
    """The events of one job; `read(job_id)` -> its poll body or None (blocking: run in a thread)."""
    last: dict[str, Any] | None = None
    seq = 0
    while True:
        view = await anyio.to_thread.run_sync(read, job_id)
        if view is None:
            yield {"event": "error", "data": json.dumps({"error": HttpError.JOB_NOT_FOUND})}
            return
        if view != last:
            seq += 1
            last = view
            final = view["status"] in FINAL
            yield {"event": view["status"] if final else "progress", "id": str(seq), "retry": RETRY_MS,
                   "data": json.dumps(view, separators=(",", ":"))}
            if final:
                return
        await anyio.sleep(interval)


def event_stream(job_id: str, read: Callable[[str], dict[str, Any] | None]) -> EventSourceResponse:
    return EventSourceResponse(job_events(job_id, read), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
