"""GET /render/jobs/{job_id}/events: the job's poll body as server-sent events, each time it changes, until it ends.

    event: progress    data: the poll body while processing (stage, progress, queue_position)
    event: completed   data: the finished poll body (result_url, ...), then the stream ends
    event: failed      data: the finished poll body (error_code, error_message), then the stream ends
    event: error       data: {"error": "job_not_found"} if the job disappears (retention), then the stream ends

The worker runs in another process and the job store is the one source of truth, so each stream reads the store
every POLL_SECONDS, in a worker thread (never on the event loop that NiceGUI's pages share), and sends an event
only when the body changed. `Streams` caps how many are open (over it: 503 too_many_streams) and how long each lasts. sse-starlette frames the events, pings idle streams and notices a client that left.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable

import anyio
from sse_starlette import EventSourceResponse

from .domain import HttpError, JobStatus

POLL_SECONDS = 0.2  # store reads per open stream: 5/s (3 queries each); a change is sent within this
PING_SECONDS = 15  # a comment line on idle streams, so that proxies keep them open
RETRY_MS = 2000  # what an EventSource waits before reconnecting
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)


class Streams:
    """The open streams of one server: at most `limit` at once (each costs a store read per POLL_SECONDS), each
    for at most `lifetime` seconds (then it ends; an EventSource reconnects after RETRY_MS, a client may poll)."""

    def __init__(self, limit: int, lifetime: float):
        self.limit, self.lifetime = limit, lifetime
        self.open = 0  # changed on the event loop only

    def full(self) -> bool:
        return self.open >= self.limit

    def response(self, job_id: str, read: Callable[[str], dict[str, Any] | None]) -> EventSourceResponse:
        return event_stream(job_id, read, self)


async def job_events(job_id: str, read: Callable[[str], dict[str, Any] | None],
                     interval: float = POLL_SECONDS, lifetime: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """The events of one job; `read(job_id)` -> its poll body or None (blocking: run in a thread)."""
    last: dict[str, Any] | None = None
    seq = 0
    ends = None if lifetime is None else anyio.current_time() + lifetime
    while ends is None or anyio.current_time() < ends:
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


async def _counted(streams: Streams, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    streams.open += 1
    try:
        async for event in events:
            yield event
    finally:
        streams.open -= 1


def event_stream(job_id: str, read: Callable[[str], dict[str, Any] | None],
                 streams: Streams | None = None) -> EventSourceResponse:
    events = job_events(job_id, read, lifetime=None if streams is None else streams.lifetime)
    return EventSourceResponse(events if streams is None else _counted(streams, events), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
