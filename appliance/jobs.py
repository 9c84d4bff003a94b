"""The job store: the `render_jobs` table is the system of record, the only place that decides a job's status.

Status moves queued -> running -> completed | failed; a running job whose worker died goes back to queued (until
`max_attempts`). Every write a worker makes is conditional on holding the job's lease (`lease_owner`), so a worker
that lost its lease (it was presumed dead and the job was requeued) can no longer change the job.

All job SQL of the appliance lives in this module (the webhook outbox's in appliance/deliveries.py), written once
as plain portable statements (qmark parameters, REAL epoch seconds, TEXT JSON, no backend-only functions,
`ON CONFLICT DO NOTHING`). The row mapping and the exceptions are in appliance/job_record.py, the connection and
migration in appliance/store_connection.py; `appliance.sql` holds the dialect seam: SQLite (a file path or
`sqlite:///path`, the default) or PostgreSQL (`postgresql://...`, cluster mode): connecting, the write transaction,
the parameter style, the schema types.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .domain import ACTIVE, ErrorCode, JobStatus, Stage
from .job_record import (COLUMNS, SELECT, IdempotencyConflict, Job, QueueFull, StoreUnavailable,  # noqa: F401
                         WorkerInfo, dump)
from .sql import SCHEMA  # noqa: F401  (re-exported)
from .store_connection import StoreConnection

QUEUED, RUNNING, COMPLETED, FAILED = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED
CANCELED = ErrorCode.CANCELED
# The order queued jobs start in, defined once: oldest first, the job id breaking ties (jobs that arrived within
# one clock tick), so the queue page, the API's queue_position and the message repair agree.
_LINE_ORDER = " ORDER BY queued_at, job_id"


class JobStore(StoreConnection):
    """The job SQL (every write a worker makes needs its lease); the connection handling is StoreConnection's."""

    # --- API side ---
    def create(self, *, job_id: str, image_url: str, texture_url: str, mask_url: str | None, options: dict,
               project_id: str | None, user_id: str | None, idempotency_key: str | None, request_hash: str | None,
               queue_depth: int, surfaces: list | None = None, webhook_url: str | None = None,
               webhook_events: list[str] | None = None) -> tuple[Job, bool]:
        """Insert a queued job unless the queue is full. Returns (job, created); with an idempotency key already
        used for the same request, returns the existing job and False. Raises QueueFull, IdempotencyConflict."""
        if idempotency_key is not None:
            existing = self.by_idempotency_key(idempotency_key, request_hash)
            if existing is not None:
                return existing, False
        now = time.time()
        # One statement in a serialized transaction: the depth check and the insert are atomic.
        sql = ("INSERT INTO render_jobs (job_id, project_id, user_id, image_url, texture_url, mask_url, options, "
               "surfaces, webhook_url, webhook_events, webhook_pending, status, stage, progress, attempts, "
               "cancel_requested, idempotency_key, request_hash, created_at, queued_at) "
               "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, ?, ?, ? "
               "WHERE (SELECT COUNT(*) FROM render_jobs WHERE status IN (?, ?)) < ?")
        try:
            with self._tx(serialize=True) as db:
                inserted = db.execute(sql, (job_id, project_id, user_id, image_url, texture_url, mask_url,
                                            dump(options), dump(surfaces), webhook_url, dump(webhook_events),
                                            int(webhook_url is not None), QUEUED, Stage.QUEUED, idempotency_key,
                                            request_hash, now, now,
                                            QUEUED, RUNNING, queue_depth)).rowcount
        except self.dialect.integrity_errors:
            if idempotency_key is None:
                raise
            existing = self.by_idempotency_key(idempotency_key, request_hash)  # a concurrent twin won the race
            if existing is None:
                raise
            return existing, False
        if not inserted:
            raise QueueFull()
        job = self.get(job_id)
        assert job is not None
        return job, True

    def by_idempotency_key(self, key: str, request_hash: str | None) -> Job | None:
        """The job made with this Idempotency-Key, or None. Raises IdempotencyConflict when it was made from
        another request (`request_hash` differs)."""
        row = self._one(SELECT + " WHERE idempotency_key = ?", (key,))
        if row is None:
            return None
        job = Job.from_row(row)
        if job.request_hash != request_hash:
            raise IdempotencyConflict(job.job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._one(SELECT + " WHERE job_id = ?", (job_id,))
        return None if row is None else Job.from_row(row)

    def queue_position(self, job: Job) -> int:
        """How many queued jobs will start before this one (0 = it is next), in _LINE_ORDER."""
        row = self._one("SELECT COUNT(*) FROM render_jobs WHERE status = ? AND "
                        "(queued_at < ? OR (queued_at = ? AND job_id < ?))",
                        (QUEUED, job.queued_at, job.queued_at, job.job_id))
        return int(row[0])

    def active_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM render_jobs WHERE status IN (?, ?)", ACTIVE)[0])

    def recent_duration(self, default: float = 10.0) -> float:
        """Mean seconds of the last few completed jobs (for Retry-After)."""
        rows = self._db.execute("SELECT completed_at - started_at FROM render_jobs WHERE status = ? AND "
                                "started_at IS NOT NULL ORDER BY completed_at DESC LIMIT 20", (COMPLETED,)).fetchall()
        values = [r[0] for r in rows if r[0] is not None and r[0] >= 0]
        return sum(values) / len(values) if values else default

    def request_cancel(self, job_id: str) -> Job | None:
        """A queued job fails `canceled` at once; a running one is flagged and stops at its next checkpoint."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, "
                       "error_message = 'canceled by request before it started', completed_at = ?, "
                       "cancel_requested = 1 WHERE job_id = ? AND status = ?", (FAILED, CANCELED, now, job_id, QUEUED))
            db.execute("UPDATE render_jobs SET cancel_requested = 1 WHERE job_id = ? AND status = ?",
                       (job_id, RUNNING))
        return self.get(job_id)

    def list_jobs(self, status: str | None = None, limit: int = 100, *, include_canceled: bool = True,
                  search: str | None = None, order: str = "created") -> list[Job]:
        """Newest first. status: queued | running | completed | failed (canceled included unless
        include_canceled=False) | canceled | None. search: the start of a job, project or user id.
        order: "created" (newest created first) or "finished" (last to finish first, unfinished last)."""
        clauses: list[str] = []
        params: tuple = ()
        if status == CANCELED:
            clauses, params = ["status = ? AND error_code = ?"], (FAILED, CANCELED)
        elif status is not None:
            clauses, params = ["status = ?"], (status,)
            if status == FAILED and not include_canceled:
                clauses.append("(error_code IS NULL OR error_code <> ?)")
                params += (CANCELED,)
        if search:
            prefix = search.strip().lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
            clauses.append("(LOWER(job_id) LIKE ? OR LOWER(project_id) LIKE ? OR LOWER(user_id) LIKE ?)")
            params += (prefix, prefix, prefix)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        by = {"created": " ORDER BY created_at DESC",
              "finished": " ORDER BY CASE WHEN completed_at IS NULL THEN 1 ELSE 0 END, completed_at DESC, "
                          "created_at DESC"}[order]
        rows = self._db.execute(SELECT + where + by + " LIMIT ?", params + (limit,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def page(self, *, project_id: str | None = None, user_id: str | None = None,
             statuses: tuple[str, ...] | None = None, error_code: str | None = None,
             before: tuple[float, str] | None = None, limit: int = 20) -> list[Job]:
        """Newest first (created_at, then job_id, both descending: a total order, so keyset paging never skips or
        repeats a job), at most `limit`, strictly after the `before` key (created_at, job_id) when given."""
        where, params = [], []
        for column, value in (("project_id", project_id), ("user_id", user_id), ("error_code", error_code)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
            params += [before[0], before[0], before[1]]
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        return [Job.from_row(r) for r in self._db.execute(sql, (*params, limit)).fetchall()]

    def queue_figures(self) -> dict[str, Any]:
        """{queued, running, oldest_queued_at} for the metrics scrape: one grouped query."""
        figures: dict[str, Any] = {"queued": 0, "running": 0, "oldest_queued_at": None}
        for status, n, oldest in self._db.execute(
                "SELECT status, COUNT(*), MIN(queued_at) FROM render_jobs WHERE status IN (?, ?) GROUP BY status",
                ACTIVE).fetchall():
            figures[status] = int(n)
            if status == QUEUED:
                figures["oldest_queued_at"] = oldest
        return figures

    def last_finished(self) -> Job | None:
        """The job that finished last (completed or failed), by the time it finished."""
        row = self._one(SELECT + " WHERE completed_at IS NOT NULL ORDER BY completed_at DESC LIMIT 1")
        return None if row is None else Job.from_row(row)

    def status_counts(self) -> dict[str, int]:
        """{queued, running, completed, failed, canceled}: failed counts the canceled jobs too."""
        counts = dict.fromkeys((QUEUED, RUNNING, COMPLETED, FAILED, CANCELED), 0)
        for status, canceled, n in self._db.execute(
                "SELECT status, CASE WHEN error_code = ? THEN 1 ELSE 0 END, COUNT(*) FROM render_jobs "
                "GROUP BY status, CASE WHEN error_code = ? THEN 1 ELSE 0 END", (CANCELED, CANCELED)).fetchall():
            counts[status] = counts.get(status, 0) + n
            if canceled:
                counts[CANCELED] += n
        return counts

    def queued_ids(self) -> list[str]:
        """Queued job ids in the order they start (see _LINE_ORDER)."""
        return [r[0] for r in self._db.execute("SELECT job_id FROM render_jobs WHERE status = ?" + _LINE_ORDER,
                                               (QUEUED,)).fetchall()]

    # --- worker side: every write needs the lease ---
    def claim(self, job_id: str, owner: str, lease_seconds: float) -> Job | None:
        """queued -> running for `owner`. None when the job is not (or no longer) queued: another worker has it,
        it was canceled, or this is a duplicate queue message."""
        now = time.time()
        n = self._write("UPDATE render_jobs SET status = ?, stage = ?, progress = 0, "
                        "attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, heartbeat_at = ?, "
                        "started_at = ? WHERE job_id = ? AND status = ? AND cancel_requested = 0",
                        (RUNNING, Stage.STARTING, owner, now + lease_seconds, now, now, job_id, QUEUED))
        if n:
            return self.get(job_id)
        # A queued job with its cancel flag set (left so by an older release) ends here instead of waiting forever.
        self._write("UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, error_message = "
                    "'canceled by request', completed_at = ? WHERE job_id = ? AND status = ? AND cancel_requested = 1",
                    (FAILED, CANCELED, now, job_id, QUEUED))
        return None

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        now = time.time()
        return bool(self._write("UPDATE render_jobs SET lease_expires_at = ?, heartbeat_at = ? "
                                "WHERE job_id = ? AND status = ? AND lease_owner = ?",
                                (now + lease_seconds, now, job_id, RUNNING, owner)))

    def set_stage(self, job_id: str, owner: str, stage: str, progress: float) -> bool:
        return bool(self._write("UPDATE render_jobs SET stage = ?, progress = ? "
                                "WHERE job_id = ? AND status = ? AND lease_owner = ?",
                                (stage, round(float(progress), 4), job_id, RUNNING, owner)))

    def cancel_requested(self, job_id: str) -> bool:
        row = self._one("SELECT cancel_requested FROM render_jobs WHERE job_id = ?", (job_id,))
        return bool(row and row[0])

    def complete(self, job_id: str, owner: str, *, result_url: str, timings: dict | None = None,
                 backends: dict | None = None, warnings: list | None = None, scale: dict | None = None,
                 painted: dict | None = None) -> bool:
        return bool(self._write(
            "UPDATE render_jobs SET status = ?, stage = NULL, progress = 1, result_url = ?, timings = ?, "
            "backends = ?, warnings = ?, scale = ?, painted = ?, completed_at = ?, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE job_id = ? AND status = ? AND lease_owner = ?",
            (COMPLETED, result_url, dump(timings), dump(backends), dump(warnings), dump(scale), dump(painted),
             time.time(), job_id, RUNNING, owner)))

    def fail(self, job_id: str, owner: str, code: str, message: str, *, timings: dict | None = None,
             backends: dict | None = None, warnings: list | None = None) -> bool:
        return bool(self._write(
            "UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, error_message = ?, timings = ?, "
            "backends = ?, warnings = ?, completed_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE job_id = ? AND status = ? AND lease_owner = ?",
            (FAILED, code, message, dump(timings), dump(backends), dump(warnings), time.time(), job_id, RUNNING,
             owner)))

    def requeue(self, job_id: str, owner: str) -> bool:
        """running -> queued for a later attempt, the attempt counted (an upload to retry once storage is back)."""
        return bool(self._write(
            "UPDATE render_jobs SET status = ?, stage = ?, lease_owner = NULL, lease_expires_at = NULL, queued_at = ? "
            "WHERE job_id = ? AND status = ? AND lease_owner = ? AND cancel_requested = 0",
            (QUEUED, Stage.QUEUED, time.time(), job_id, RUNNING, owner)))

    def release(self, job_id: str, owner: str) -> JobStatus | None:
        """The worker is shutting down: back to the queue without counting the attempt, or, when a cancel was
        requested meanwhile, failed `canceled` (a queued job with the flag set would never be claimed again).
        Returns the new status, None when the job is no longer ours."""
        now = time.time()
        with self._tx() as db:
            if db.execute("UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, "
                          "error_message = 'canceled by request while running', completed_at = ?, "
                          "lease_owner = NULL, lease_expires_at = NULL "
                          "WHERE job_id = ? AND status = ? AND lease_owner = ? AND cancel_requested = 1",
                          (FAILED, CANCELED, now, job_id, RUNNING, owner)).rowcount:
                return FAILED
            if db.execute("UPDATE render_jobs SET status = ?, stage = ?, progress = 0, attempts = attempts - 1, "
                          "lease_owner = NULL, lease_expires_at = NULL, queued_at = ? "
                          "WHERE job_id = ? AND status = ? AND lease_owner = ?",
                          (QUEUED, Stage.QUEUED, now, job_id, RUNNING, owner)).rowcount:
                return QUEUED
        return None

    # --- recovery ---
    def running(self) -> list[Job]:
        return [Job.from_row(r) for r in self._db.execute(SELECT + " WHERE status = ?", (RUNNING,)).fetchall()]

    def expired(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        return [Job.from_row(r) for r in self._db.execute(
            SELECT + " WHERE status = ? AND lease_expires_at < ?", (RUNNING, now)).fetchall()]

    def recover(self, job: Job, max_attempts: int, reason: str) -> str | None:
        """A running job whose worker is gone: requeue it, or fail it once its attempts are used up.
        Returns the new status, or None if the job moved on meanwhile (its worker was alive after all)."""
        now = time.time()
        if job.cancel_requested:
            update = ("UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, error_message = ?, "
                      "completed_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                      "WHERE job_id = ? AND status = ? AND lease_owner = ?")
            params: tuple = (FAILED, CANCELED, f"canceled by request ({reason})", now, job.job_id, RUNNING,
                             job.lease_owner)
            status = FAILED
        elif job.attempts >= max_attempts:
            update = ("UPDATE render_jobs SET status = ?, stage = NULL, error_code = ?, "
                      "error_message = ?, completed_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                      "WHERE job_id = ? AND status = ? AND lease_owner = ?")
            message = (f"the worker stopped during each of {job.attempts} attempts (last: {reason}); giving up "
                       f"(queue.max_attempts = {max_attempts})")
            params = (FAILED, ErrorCode.PIPELINE_ERROR, message, now, job.job_id, RUNNING, job.lease_owner)
            status = FAILED
        else:
            update = ("UPDATE render_jobs SET status = ?, stage = ?, progress = 0, lease_owner = NULL, "
                      "lease_expires_at = NULL, queued_at = ? WHERE job_id = ? AND status = ? AND lease_owner = ?")
            params = (QUEUED, Stage.QUEUED, now, job.job_id, RUNNING, job.lease_owner)
            status = QUEUED
        return status if self._write(update, params) else None

    def acquire_lease(self, name: str, owner: str, seconds: float) -> bool:
        """A named lease (one holder across processes until it expires)."""
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO render_leases (name, owner, expires_at) VALUES (?, NULL, 0) "
                       "ON CONFLICT (name) DO NOTHING", (name,))
            n = db.execute("UPDATE render_leases SET owner = ?, expires_at = ? WHERE name = ? AND "
                           "(expires_at < ? OR owner = ?)", (owner, now + seconds, name, now, owner)).rowcount
        return bool(n)

    # --- retention ---
    def finished_before(self, cutoff: float, limit: int = 500) -> list[Job]:
        return [Job.from_row(r) for r in self._db.execute(
            SELECT + " WHERE status IN (?, ?) AND completed_at < ? ORDER BY completed_at LIMIT ?",
            (COMPLETED, FAILED, cutoff, limit)).fetchall()]

    def delete(self, job_id: str) -> bool:
        return bool(self._write("DELETE FROM render_jobs WHERE job_id = ? AND status IN (?, ?)",
                                (job_id, COMPLETED, FAILED)))

    # --- workers ---
    def worker_beat(self, name: str, pid: int, device: str | None, state: str, started_at: float) -> None:
        now = time.time()
        with self._tx() as db:
            n = db.execute("UPDATE render_workers SET info = CASE WHEN pid = ? THEN info END, pid = ?, device = ?, "
                           "state = ?, started_at = ?, heartbeat_at = ? WHERE name = ?",
                           (pid, pid, device, state, started_at, now, name)).rowcount
            if not n:
                db.execute("INSERT INTO render_workers (name, pid, device, state, started_at, heartbeat_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (name, pid, device, state, started_at, now))

    def worker_info(self, name: str, pid: int, info: dict[str, Any]) -> None:
        self._write("UPDATE render_workers SET info = ? WHERE name = ? AND pid = ?", (dump(info), name, pid))

    def workers(self) -> list[WorkerInfo]:
        rows = self._db.execute("SELECT name, pid, device, state, started_at, heartbeat_at, info FROM render_workers "
                                "ORDER BY name").fetchall()
        return [WorkerInfo(*r[:-1], info=json.loads(r[-1]) if r[-1] else None) for r in rows]

    def remove_worker(self, name: str, pid: int) -> None:
        self._write("DELETE FROM render_workers WHERE name = ? AND pid = ?", (name, pid))
