"""What the HTTP routes and the console pages share in the serving process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .cached_check import CachedCheck
from .config import Settings
from .jobs import JobStore
from .queue import RenderQueue
from .service import JobService


@dataclass
class AppContext:
    settings: Settings
    store: JobStore
    queue: RenderQueue
    storage: Any  # appliance.storage.ResultStorage
    supervisor: Any = None  # appliance.supervisor.Supervisor, when this process runs the worker
    started_at: float = field(default_factory=time.time)

    @cached_property
    def service(self) -> JobService:
        return JobService(self.settings, self.store, self.queue)

    @cached_property
    def storage_health(self) -> CachedCheck:
        """The result storage's check (a network round trip for Supabase), cached: /readyz and POST read it."""
        return CachedCheck("storage", self.storage.check)


def build_context(settings: Settings, *, with_worker: bool | None = None) -> AppContext:
    """The store, queue, storage (and worker supervisor) that the routes and the console share."""
    from .build import build_storage
    from .supervisor import Supervisor

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_worker = settings.worker_enabled if with_worker is None else with_worker
    store = JobStore(settings.jobs_db, busy_timeout=settings.store_busy_timeout)
    return AppContext(settings=settings, store=store, queue=RenderQueue(settings.queue_db),
                      storage=build_storage(settings), supervisor=Supervisor(settings) if run_worker else None)
