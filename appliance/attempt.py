"""One run of one job, as the worker and the input fetching share it."""

from __future__ import annotations

from .jobs import Job


class Stop(Exception):
    """The attempt ends without a verdict (lease lost or shutting down)."""


class Attempt:
    """One run of one job: why it should stop, if it should."""

    def __init__(self, job: Job, deadline: float):
        self.job = job
        self.deadline = deadline
        self.lease_lost = False
        self.reason: str | None = None  # "canceled" | "timeout" | "lost" | "shutdown"
        self.kept: dict[str, bytes] = {}  # inputs downloaded for this attempt, kept in the job's folder
