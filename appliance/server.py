"""`render-appliance serve`: one process with the NiceGUI app (JSON API + console pages) and a supervised worker.

NiceGUI is imported lazily: this module is also imported in the worker process (multiprocessing "spawn" re-imports
the parent's main module), which must stay light.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .config import Settings

log = logging.getLogger("appliance.server")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client (appliance.metrics.MULTIPROC_ENV)
UI_MODULE = "ui.pages"  # console pages: a module with `register(app, ctx)`, added when it exists
# Request line + headers: bounded by h11 (httptools, uvicorn's other parser, buffers headers without a limit).
MAX_HEADER_BYTES = 16 * 1024


def register_ui(app: Any, ctx: Any) -> None:
    """Console pages live in ui/ (written separately); they get the same context as the API."""
    import importlib

    try:
        module = importlib.import_module(UI_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (UI_MODULE, UI_MODULE.split(".")[0]):
            raise
        return
    module.register(app, ctx)


def create_app(settings: Settings, *, with_worker: bool | None = None):
    """Register the API (and console pages) on NiceGUI's `app`; the worker starts with the app. Returns (app, ctx)."""
    _prepare_nicegui_env(settings)
    from nicegui import app

    from .api import install
    from .context import build_context
    from .docs import install_docs

    ctx = build_context(settings, with_worker=with_worker)
    install_docs(app)
    install(app, ctx)
    register_ui(app, ctx)
    if settings.webhook_secret:  # the jobs' webhook deliveries (appliance.webhooks), from this process
        from .job_view import job_view
        from .webhooks import Dispatcher

        dispatcher = Dispatcher(settings, ctx.store, lambda job: job_view(job, ctx.store))
        app.on_startup(dispatcher.start)
        app.on_shutdown(lambda: dispatcher.stop())
    if ctx.supervisor is not None:
        app.on_startup(ctx.supervisor.start)
        app.on_shutdown(lambda: ctx.supervisor.stop())  # NiceGUI passes `app` to one-argument handlers
    # Last (after the worker stopped): the SQLite file alone then holds every job (a copy of jobs.db is whole).
    app.on_shutdown(lambda: ctx.store.checkpoint())
    app.state.render = ctx
    return app, ctx


def _prepare_nicegui_env(settings: Settings) -> None:
    _prepare_metrics_dir(settings.metrics_dir)
    # NiceGUI's storage goes to ./.nicegui unless told otherwise: keep it in the data folder.
    os.environ.setdefault("NICEGUI_STORAGE_PATH", str(settings.data_dir / "nicegui"))
    # NiceGUI treats any process with PYTEST_CURRENT_TEST as its own screen test (and takes its port from
    # NICEGUI_SCREEN_TEST_PORT): a real server started from a test must not inherit it.
    os.environ.pop("PYTEST_CURRENT_TEST", None)


def _prepare_metrics_dir(path: Path) -> None:
    """prometheus_client's multiprocess mode (appliance.metrics): this process and its worker write metric files
    into `path`, merged at scrape time. Set before prometheus_client is first imported (it reads the variable at
    import); emptied, as files of a previous run would be summed in."""
    if "prometheus_client" in sys.modules and os.environ.get(METRICS_ENV) != str(path):
        log.warning("prometheus_client was loaded before its multiprocess folder was set: /metrics shows this "
                    "process only")
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_ENV] = str(path)


def serve(settings: Settings) -> None:
    """Blocking: uvicorn via ui.run (reload=False, show=False), the worker supervised alongside. /docs is ours
    (appliance.docs: offline assets), so NiceGUI's fastapi_docs stays off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    create_app(settings)
    from nicegui import ui

    log.info("render appliance on http://%s:%d (public %s), data in %s", settings.host, settings.port,
             settings.base_url, settings.data_dir)
    ui.run(host=settings.host, port=settings.port, reload=False, show=False, title="Render appliance",
           fastapi_docs=False,
           show_welcome_message=False, uvicorn_logging_level="warning", reconnect_timeout=10.0,
           http="h11", h11_max_incomplete_event_size=MAX_HEADER_BYTES)
