"""Downloads of the next queued jobs' inputs, in a small thread pool, while the current job renders.

A photo server that answers slowly then costs the pipeline nothing as long as the job ahead of it takes longer to
render than its download takes; the worker picks up a prefetched file when it claims the job (and waits for one
still arriving, within the job's own time limit). Prefetching never decides anything about a job: a download that
fails is simply done again, the normal way, when the job runs (same SSRF guard, caps and deadlines: the same
`fetch_image` under the same policy).

Bounded: at most `depth` jobs ahead, `workers` downloads at once; the files of jobs that left the queue meanwhile
(canceled, taken by another worker) are dropped.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

from .fetch import Deadlines

log = logging.getLogger("appliance.prefetch")


class Prefetcher:
    """`fetch(url, deadlines)`: the download, its deadline tracked in `deadlines` so that close() can cut it."""

    def __init__(self, fetch: Callable[[str, Deadlines], bytes], *, depth: int = 2, workers: int = 2):
        self.fetch, self.depth = fetch, depth
        self._deadlines = Deadlines()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], Future] = {}  # (job id, url) -> its download

    def ahead(self, upcoming: Iterable[tuple[str, list[str]]], current: str | None = None) -> None:
        """`upcoming`: (job id, its input URLs) of the next queued jobs, in queue order; the first `depth` are
        fetched. Anything else held is dropped, except the files of `current` (the job just claimed)."""
        wanted = {(job_id, url) for job_id, urls in list(upcoming)[: self.depth] for url in urls}
        with self._lock:
            for key in {k for k in self._files if k[0] != current} - wanted:
                self._files.pop(key).cancel()  # not started: never runs; running: its bytes are dropped
            for key in wanted - set(self._files):
                self._files[key] = self._pool.submit(self.fetch, key[1], self._deadlines)

    def take(self, job_id: str, url: str) -> Future | None:
        """The prefetched download of `url` for `job_id` (done or in flight), or None."""
        with self._lock:
            return self._files.pop((job_id, url), None)

    def close(self) -> None:
        with self._lock:
            for future in self._files.values():
                future.cancel()
            self._files.clear()
        # Python joins executor threads at exit: a download in flight from a slow server would hold a stopping
        # worker past its stop budget, so its socket is shut now.
        self._deadlines.cut_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
