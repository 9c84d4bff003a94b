"""/readyz: is each part usable (models, job store, queue, storage, worker), and if not, why."""

from __future__ import annotations

import time
from typing import Any

from .context import AppContext
from .disk import free_mb, low_space
from .service import live_workers


def readiness(ctx: AppContext) -> dict[str, dict[str, Any]]:
    """Each check: {ok: bool, reason?: str, ...}."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, fn) -> None:
        try:
            reason, extra = fn()
        except Exception as exc:
            reason, extra = f"{type(exc).__name__}: {exc}", {}
        checks[name] = {"ok": reason is None, **({"reason": reason} if reason else {}), **extra}

    def models():
        if ctx.settings.worker_pipeline:
            return None, {"pipeline": ctx.settings.worker_pipeline}
        from pipeline.models import manifest, status

        names = [s.name for s in manifest().values() if s.set == "embedded"]
        bad = {n: s for n, s in status(ctx.settings.model_dir, names, check_hash=False).items() if s != "ok"}
        if bad:
            return (f"{', '.join(f'{n} {s}' for n, s in bad.items())} in {ctx.settings.model_dir}; run "
                    f"`render-appliance models pull`"), {}
        return None, {"model_dir": str(ctx.settings.model_dir)}

    def job_store():
        ctx.store.ping()
        return low_space(ctx.settings), {"backend": ctx.store.url, "active_jobs": ctx.store.active_count(),
                                         "queue_depth": ctx.settings.queue_depth,
                                         "free_mb": free_mb(ctx.settings), "min_free_mb": ctx.settings.min_free_mb}

    def queue():
        return None, {"backend": type(ctx.queue.huey).__name__, "pending_messages": ctx.queue.ping()}

    def storage():
        return ctx.storage_health.problem(), {"backend": ctx.storage.name}

    def worker():
        now = time.time()
        live = live_workers(ctx.store, ctx.settings)
        extra: dict[str, Any] = {"workers": [{"name": w.name, "pid": w.pid, "state": w.state,
                                              "heartbeat_age_s": round(now - w.heartbeat_at, 1)} for w in live]}
        sup = ctx.supervisor
        if sup is not None:  # this process runs the worker: that one must be up
            extra.update(supervised_pid=sup.pid, restarts=sup.restarts, last_exit=sup.last_exit)
        candidates = [w for w in live if sup is None or w.pid == sup.pid]
        if not any(w.state == "ready" for w in candidates):
            states = "; ".join(f"{w.name} pid {w.pid}: {w.state}" for w in live) or "none running"
            return f"no worker is ready ({states})", extra
        return None, extra

    check("models", models)
    check("job_store", job_store)
    check("queue", queue)
    check("storage", storage)
    check("worker", worker)
    return checks
