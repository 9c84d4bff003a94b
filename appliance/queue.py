"""The Huey queue: SQLite (WAL) on local disk, or Redis in cluster mode (`redis://...`); a task carries only a job id.

Huey is the doorbell, not the ledger: it keeps no status (the job store does), a message may be lost (crash between
the job insert and the enqueue) or duplicated (recovery re-enqueues) and both are harmless — the worker claims a
job with a compare-and-set in the job store, and housekeeping re-enqueues queued jobs that have no message.

Huey pitfalls handled here:
- the consumer's signal handlers: `Consumer.run()` is only ever called on the main thread of the worker process
  (appliance/worker.py), never inside the web server;
- SQLite consumers poll and back off up to 10 s when idle: `poll_interval` is both the initial and the maximum
  delay, so an idle consumer picks a job up within one interval (default 50 ms);
- results are off (`results=False`): reading a Huey result deletes it, and we keep our own table;
- Redis has no acknowledgement: a consumer killed mid-job took its message with it. Recovery rests on the job store
  (the running job's lease expires, housekeeping requeues it), exactly as with SQLite;
- every consumer runs a scheduler that enqueues `housekeeping`; the named lease in the job store lets only one
  process do the work per interval (see Worker.housekeeping).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

from huey import PriorityRedisHuey, SqliteHuey
from huey.consumer import Consumer, Scheduler
from huey.storage import SqliteStorage

QUEUE_NAME = "render"


class _Storage(SqliteStorage):
    """WAL + synchronous=NORMAL: no fsync per enqueue. A message lost to a power cut is re-sent by housekeeping
    (the job row is the record), so the queue needs no more durability than the job store."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


class RenderQueue:
    """One Huey instance on `target` (a SQLite file path, or a redis:// URL), with the render task (and, for
    consumers, the periodic housekeeping)."""

    def __init__(self, target: Path | str, *, name: str = QUEUE_NAME):
        if str(target).startswith(("redis://", "rediss://", "unix://")):
            # The priority flavour (a sorted set; plain RedisHuey refuses priorities) so that housekeeping jumps
            # the queue as with SQLite. blocking: an idle consumer waits in BZPOPMIN (up to 1 s) and wakes at once.
            self.huey = PriorityRedisHuey(name, url=str(target), results=False, blocking=True, read_timeout=1,
                                  client_name="render-appliance")
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self.huey = SqliteHuey(name, filename=str(target), results=False, journal_mode="wal", timeout=10,
                                   storage_class=_Storage)
        # The task bodies are this instance's methods: `consumer()` binds the worker's handlers to them, so a task
        # reaches its handler without module-level state (two queues in one process stay apart).
        self._on_render: Callable[[str], None] | None = None
        self._on_housekeeping: Callable[[], None] | None = None
        self._render = self.huey.task(name="render_job")(self._render_job)
        # Periodic: the scheduler enqueues it every `periodic_seconds` (see `consumer`); high priority so that it
        # does not wait behind queued renders.
        self._housekeeping = self.huey.periodic_task(lambda _dt: True, name="housekeeping",
                                                     priority=10)(self._run_housekeeping)

    def _render_job(self, job_id: str) -> None:
        """The one render task (runs in the consumer): hands the id to the worker's handler."""
        if self._on_render is None:
            raise RuntimeError("render_job ran in a process without a consumer")
        self._on_render(job_id)

    def _run_housekeeping(self) -> None:
        """The periodic task: lease reaping, lost-message repair, retention."""
        if self._on_housekeeping is not None:
            self._on_housekeeping()

    def enqueue(self, job_id: str, delay: float = 0.0) -> None:
        """A render message now, or after `delay` seconds (Huey's schedule; the consumer's scheduler releases it)."""
        if delay > 0:
            self._render.schedule(args=(job_id,), delay=delay)
        else:
            self._render(job_id)

    def pending_job_ids(self) -> set[str]:
        """Job ids that have a render message waiting."""
        ids = set()
        for task in [*self.huey.pending(), *self.huey.scheduled()]:  # scheduled: a delayed retry is not lost
            if task.name == "render_job" and task.args:
                ids.add(task.args[0])
        return ids

    def ping(self) -> int:
        return self.huey.pending_count()

    def close(self) -> None:
        self.huey.storage.close()

    def consumer(self, *, render: Callable[[str], None], housekeeping: Callable[[], None] | None,
                 poll_interval: float, periodic_seconds: float) -> Consumer:
        """A one-thread consumer (one pipeline run at a time) polling every `poll_interval` seconds when idle."""
        self._on_render, self._on_housekeeping = render, housekeeping
        scheduler = type("HousekeepingScheduler", (Scheduler,),
                         {"periodic_task_seconds": max(1, int(round(periodic_seconds)))})

        class RenderConsumer(Consumer):
            scheduler_class = scheduler

            def _set_signal_handlers(self) -> None:
                super()._set_signal_handlers()
                # Huey restarts on SIGHUP by exec'ing sys.argv, which in a spawned child is not our command line.
                # A hang-up reaches the server too; the worker follows its supervisor instead.
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

        return RenderConsumer(self.huey, workers=1, worker_type="thread", periodic=housekeeping is not None,
                              initial_delay=poll_interval, max_delay=poll_interval, backoff=1.0,
                              scheduler_interval=1, check_worker_health=True, health_check_interval=5)
