"""The consumer process and its supervisor.

Process model
-------------
`Supervisor` (a thread in `serve`, the main loop of `render-appliance worker`) starts ONE consumer process
(multiprocessing "spawn": no fork after CUDA/threads, works in frozen builds with freeze_support) and restarts it
when it dies (kill -9, OOM, crash) or asks to be recycled (a stage overran its limit and its thread cannot be
killed). The consumer process runs Huey's `Consumer.run()` on its own main thread, where Huey's signal handlers
belong, with a single worker thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .config import Settings
from .jobs import JobStore
from .queue import RenderQueue
from .build import build_pipeline, build_storage, describe_pipeline, resolve_device

EXIT_RECYCLE = 75  # the consumer asks its supervisor for a fresh process

log = logging.getLogger("appliance.worker")


def _watch_parent(parent_pid: int, on_orphan: Callable[[], None]) -> None:
    """The supervisor died (kill -9): hand the job back and exit, so that no orphan consumer keeps the GPU."""
    def loop() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent_pid:
                try:
                    on_orphan()
                finally:
                    os._exit(1)
    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def consumer_main(settings: Settings, device: str | None, parent_pid: int | None = None) -> None:
    """Entry point of the consumer process (the worker module is imported here only: the serving process that
    supervises it never loads it)."""
    from .worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(name)s: "
                                                   "%(message)s")
    for noisy in ("huey", "httpx"):  # a line per task / per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if settings.force_cpu:
        os.environ["AI_FORCE_CPU"] = "1"
    settings = settings.with_overrides(worker_device=device)  # what the pipeline builder reads
    store = JobStore(settings.jobs_db, busy_timeout=settings.store_busy_timeout)
    queue = RenderQueue(settings.queue_db)
    storage = build_storage(settings)
    if problem := storage.check():  # also reads what the backend needs once (the bucket's size limit)
        log.warning("result storage not usable yet: %s", problem)
    worker = Worker(settings, store, queue, storage, None, device=device)
    if parent_pid is not None:
        _watch_parent(parent_pid, worker.shutdown)
    worker.beat("loading models")
    try:
        worker.pipeline = build_pipeline(settings)  # once per process, not per job
    except Exception as exc:  # e.g. ModelMissingError: /readyz shows why; the supervisor retries with backoff
        log.error("cannot load the pipeline: %s: %s", type(exc).__name__, exc)
        worker.beat(f"failed to load the pipeline: {type(exc).__name__}: {exc}"[:500])
        sys.exit(3)
    store.worker_info(worker.slot, os.getpid(), describe_pipeline(worker.pipeline, device, settings.worker_threads))
    worker.serve_forever()
    sys.exit(EXIT_RECYCLE if worker.recycle else 0)


class Supervisor:
    """Keeps one consumer process alive: restart on death (backoff when it dies young), recycle on request."""

    def __init__(self, settings: Settings, device: str | None = None):
        self.settings = settings
        self.device = resolve_device(settings, device)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        proc = self.process
        return proc.pid if proc is not None and proc.is_alive() else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="worker-supervisor", daemon=True)
        self._thread.start()

    def run(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        delay = 0.0
        while not self._stop.is_set():
            proc = ctx.Process(target=consumer_main, args=(self.settings, self.device, os.getpid()),
                               name=f"render-worker-{self.device or 'auto'}", daemon=True)
            proc.start()
            self.process = proc
            started = time.monotonic()
            while proc.is_alive() and not self._stop.is_set():
                proc.join(0.2)
            if self._stop.is_set():
                break
            self.last_exit = proc.exitcode
            lived = time.monotonic() - started
            if proc.exitcode == EXIT_RECYCLE:
                delay = 0.0
            elif lived < 30:
                delay = min(max(delay * 2, 1.0), 30.0)
            else:
                delay = 0.5
            self.restarts += 1
            from . import metrics  # here, not at import: the serving process set its metrics folder first

            metrics.worker_exited(proc.pid, recycled=proc.exitcode == EXIT_RECYCLE)
            log.warning("worker process %s exited with %s after %.1f s; restarting in %.1f s", proc.pid,
                        proc.exitcode, lived, delay)
            self._stop.wait(delay)
        self._terminate()

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is not None and proc.is_alive():
            proc.terminate()  # SIGTERM: the consumer hands its job back and exits
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        else:
            self._terminate()


def run_worker(settings: Settings, device: str | None = None) -> None:
    """`render-appliance worker`: a supervised consumer, no HTTP. Blocks until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervisor = Supervisor(settings, device)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    supervisor.start()
    log.info("worker for device %s started (data %s)", supervisor.device or "auto", Path(settings.data_dir))
    stop.wait()
    supervisor.stop()
