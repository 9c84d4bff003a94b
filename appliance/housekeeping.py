"""Recovery and retention: what brings a job back when its worker died, and what removes old jobs.

At a consumer's start, the jobs its slot's dead process left running go back to the queue; periodically (under a
named lease, one process per interval) the jobs whose lease expired do, queued jobs without a queue message get one
again, and finished jobs older than retention_hours are deleted with their results, folders and old uploads.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from . import metrics
from .config import Settings
from .domain import ErrorCode, JobStatus
from .jobdir import JobFolder
from .jobs import Job, JobStore
from .queue import RenderQueue

log = logging.getLogger("appliance.worker")


class Housekeeper:
    """Recovery and retention for one worker slot (`slot`, `owner`: the worker's, see appliance/worker.py)."""

    def __init__(self, settings: Settings, store: JobStore, queue: RenderQueue, storage: Any, *, slot: str,
                 owner: str):
        self.settings, self.store, self.queue, self.storage = settings, store, queue, storage
        self.slot, self.owner = slot, owner

    def recover_orphans(self) -> None:
        """At start: jobs left running by a previous process of this slot (now dead) go back to the queue, and
        queued jobs without a queue message (lost between insert and enqueue) get one."""
        for job in self.store.running():
            owner = job.lease_owner or ""
            slot, _, pid = owner.rpartition("/")
            if slot == self.slot and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                self.recover(job, f"worker process {pid} died")
        self.repair_messages(min_age=0.0)

    def run(self) -> None:
        """Periodic (Huey periodic task): at most one process runs it per interval (a named lease)."""
        interval = self.settings.maintenance_interval
        if not self.store.acquire_lease("housekeeping", self.owner, interval * 0.9):
            return
        for job in self.store.expired():
            self.recover(job, "its worker stopped renewing the lease (hung or killed)")
        self.repair_messages(min_age=max(5.0, interval))
        self.prune()

    def recover(self, job: Job, reason: str) -> None:
        status = self.store.recover(job, self.settings.max_attempts, reason)
        log.warning("job %s: %s -> %s", job.job_id, reason, status)
        if status == JobStatus.FAILED:
            recovered = self.store.get(job.job_id)
            metrics.job_finished(JobStatus.FAILED, recovered.error_code if recovered else None, job.started_at)
        if status == JobStatus.QUEUED:
            self.queue.enqueue(job.job_id)

    def repair_messages(self, min_age: float) -> None:
        queued = self.store.queued_ids()
        if not queued:
            return
        pending = self.queue.pending_job_ids()
        now = time.time()
        for job_id in queued:
            if job_id not in pending:
                job = self.store.get(job_id)
                if job is not None and job.status == JobStatus.QUEUED and now - job.queued_at >= min_age:
                    log.warning("job %s: queued without a queue message; enqueuing again", job_id)
                    self.queue.enqueue(job_id)

    def prune(self, now: float | None = None) -> int:
        """Delete finished jobs older than retention_hours, their stored results (local files, Supabase objects),
        and old uploads."""
        cutoff = (time.time() if now is None else now) - self.settings.retention_hours * 3600
        prune_results = self.storage.prune_results
        count = 0
        while True:
            batch = self.store.finished_before(cutoff)
            for job in batch:
                # upload_failed too: an upload given up on may have landed after all (an orphan otherwise)
                if prune_results and (job.result_url or job.error_code == ErrorCode.UPLOAD_FAILED):
                    self.storage.delete(job.job_id, job.user_id, job.project_id)
                count += self.store.delete(job.job_id)
                JobFolder(self.settings, job.job_id).remove()
            if len(batch) < 500:
                break
        jobs_dir = self.settings.jobs_dir  # folders left without a job (a console upload never submitted)
        for folder in jobs_dir.iterdir() if jobs_dir.is_dir() else ():
            try:
                if folder.stat().st_mtime < cutoff and self.store.get(folder.name) is None:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
        uploads = self.settings.uploads_dir
        if uploads.is_dir():
            for path in uploads.rglob("*"):
                try:
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                except OSError:
                    pass
        if count:
            log.info("retention: pruned %d jobs finished before %s", count, time.ctime(cutoff))
        return count


def pid_alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie, killed but not yet reaped, counts as dead)?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
