"""The webhook outbox: `render_webhook_deliveries`, one row per event of a job that is owed to its webhook_url.

Rows are derived from the job table, the system of record, by `sweep()`: a finished job whose `webhook_pending`
flag is still 1 gets its final delivery row and loses the flag in ONE transaction; a running job that subscribed
to `progress` gets a row per stage it is seen in. Each row has a unique `dedupe_key` (job + event [+ attempt +
stage]), so sweeping twice, from two processes, or again after a kill -9 never records an event twice. Whichever
process transitions the job (worker, API cancel, housekeeping) needs to know nothing about webhooks.

A delivery is claimed with a lease before each attempt (as jobs are), so a process killed mid-attempt leaves it to
be tried again once the lease expires: at-least-once, with the same delivery_id (the receiver's idempotency key).
The SQL follows appliance/jobs.py's portable style and runs on its connections and dialect.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable

from .domain import DEFAULT_WEBHOOK_EVENTS, JobStatus, WebhookEvent
from .job_record import SELECT, Job
from .jobs import JobStore


class DeliveryState(StrEnum):
    PENDING = "pending"  # not delivered yet; next attempt at next_attempt_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused (a 4xx other than 408/429, or a forbidden address) or retried past the limit


_COLUMNS = ("delivery_id", "job_id", "event", "url", "payload", "state", "attempts", "next_attempt_at",
            "last_status", "last_error", "created_at", "delivered_at")
_DSELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM render_webhook_deliveries"


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    job_id: str
    event: str
    url: str
    payload: str  # the JSON body, fixed when the event was recorded: every attempt sends the same bytes
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None

    @classmethod
    def from_row(cls, row: tuple) -> "Delivery":
        data = dict(zip(_COLUMNS, row))
        data["state"] = DeliveryState(data["state"])
        return cls(**data)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


class Deliveries:
    def __init__(self, store: JobStore):
        self.store = store

    # --- recording what is owed ---
    def sweep(self, view: Callable[[Job], dict[str, Any]], limit: int = 200) -> int:
        """Record the deliveries owed by jobs with a webhook. `view(job)`: the job's poll body. Returns how many."""
        # Finished jobs first, then the oldest: running jobs that subscribed to progress keep their flag while they
        # run, so in table order a few hundred of them would fill every batch and hold back the final events.
        rows = self.store._db.execute(
            SELECT + " WHERE webhook_pending = 1 AND status IN (?, ?, ?) "
            "ORDER BY CASE WHEN status = ? THEN 1 ELSE 0 END, created_at, job_id LIMIT ?",
            (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.RUNNING, limit)).fetchall()
        made = 0
        for job in map(Job.from_row, rows):
            events = job.webhook_events or list(DEFAULT_WEBHOOK_EVENTS)
            if job.status == JobStatus.RUNNING:
                if WebhookEvent.PROGRESS in events and job.stage:
                    key = f"{job.job_id}:progress:{job.attempts}:{job.stage}"
                    if self.store._one("SELECT 1 FROM render_webhook_deliveries WHERE dedupe_key = ?", (key,)) is None:
                        with self.store._tx() as db:
                            made += self._insert(db, job, WebhookEvent.PROGRESS, key, view)
                continue
            event = WebhookEvent.COMPLETED if job.status == JobStatus.COMPLETED else WebhookEvent.FAILED
            with self.store._tx() as db:
                if event in events:
                    made += self._insert(db, job, event, f"{job.job_id}:{event}", view)
                db.execute("UPDATE render_jobs SET webhook_pending = 0 WHERE job_id = ?", (job.job_id,))
        return made

    def _insert(self, db: Any, job: Job, event: str, key: str, view: Callable[[Job], dict[str, Any]]) -> int:
        now = time.time()
        delivery_id = f"msg_{uuid.uuid4().hex}"
        body = {k: v for k, v in view(job).items() if k != "webhook"}  # its own delivery state would go stale
        body.update(event=str(event), delivery_id=delivery_id, timestamp=_iso(now))
        return db.execute(
            "INSERT INTO render_webhook_deliveries (delivery_id, job_id, event, dedupe_key, url, payload, state, "
            "attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) "
            "ON CONFLICT (dedupe_key) DO NOTHING",
            (delivery_id, job.job_id, str(event), key, job.webhook_url, json.dumps(body, separators=(",", ":")),
             DeliveryState.PENDING, now, now)).rowcount

    # --- attempts ---
    def claim_due(self, owner: str, lease_seconds: float, limit: int = 8) -> list[Delivery]:
        now = time.time()
        rows = self.store._db.execute(
            _DSELECT + " WHERE state = ? AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR "
            "lease_expires_at < ?) ORDER BY CASE WHEN event = ? THEN 1 ELSE 0 END, next_attempt_at LIMIT ?",
            (DeliveryState.PENDING, now, now, WebhookEvent.PROGRESS, limit)).fetchall()  # final events first
        claimed = []
        for delivery in map(Delivery.from_row, rows):
            if self.store._write("UPDATE render_webhook_deliveries SET lease_owner = ?, lease_expires_at = ? "
                                 "WHERE delivery_id = ? AND state = ? AND (lease_expires_at IS NULL OR "
                                 "lease_expires_at < ?)", (owner, now + lease_seconds, delivery.delivery_id,
                                                           DeliveryState.PENDING, now)):
                claimed.append(delivery)
        return claimed

    def record(self, delivery: Delivery, owner: str, state: DeliveryState, *, status: int | None,
               error: str | None, next_attempt_at: float | None = None) -> bool:
        """The outcome of one attempt (only by the lease holder)."""
        now = time.time()
        return bool(self.store._write(
            "UPDATE render_webhook_deliveries SET state = ?, attempts = attempts + 1, last_status = ?, "
            "last_error = ?, next_attempt_at = ?, delivered_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE delivery_id = ? AND lease_owner = ?",
            (state, status, error, next_attempt_at if next_attempt_at is not None else now,
             now if state == DeliveryState.DELIVERED else None, delivery.delivery_id, owner)))

    # --- what the API shows ---
    def for_job(self, job_id: str) -> list[Delivery]:
        return [Delivery.from_row(r) for r in self.store._db.execute(
            _DSELECT + " WHERE job_id = ? ORDER BY created_at, delivery_id", (job_id,)).fetchall()]

    def prune(self, cutoff: float) -> int:
        """Forget finished deliveries (delivered or failed) recorded before `cutoff`; pending ones stay until their
        retries end."""
        return self.store._write("DELETE FROM render_webhook_deliveries WHERE state <> ? AND created_at < ?",
                                 (DeliveryState.PENDING, cutoff))

    def pending_count(self) -> int:
        return int(self.store._one("SELECT COUNT(*) FROM render_webhook_deliveries WHERE state = ?",
                                   (DeliveryState.PENDING,))[0])


def webhook_state(job: Job, store: JobStore) -> dict[str, Any]:
    """The `webhook` field of a job's poll body: its events and each delivery's state."""
    return {"events": job.webhook_events or [str(e) for e in DEFAULT_WEBHOOK_EVENTS],
            "deliveries": [{"delivery_id": d.delivery_id, "event": d.event, "state": d.state,
                            "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
                            "next_attempt_at": _iso(d.next_attempt_at) if d.state == DeliveryState.PENDING else None,
                            "delivered_at": _iso(d.delivered_at)} for d in Deliveries(store).for_job(job.job_id)]}
