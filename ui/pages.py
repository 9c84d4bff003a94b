"""The operator console: `register(app, ctx)` is called by appliance/server.py with the API's context.

Pages (NiceGUI): /  (queue), /jobs/{id}  (job detail), /jobs/{id}/mask  (mask fix), /jobs/{id}/material (try
another material), /test-render, /swatches (the swatch library), /learning (fine-tune the house parser),
/login.
Routes of the console itself (behind the same sign-in): /console/files/{id}/{name} (a job's images),
/console/swatches/{id}/{image|thumb} (library swatches), /console/learning/{id}/thumb (training examples),
POST /console/jobs/{id}/mask (a corrected mask -> a new job), POST /console/jobs/{id}/snap (the mask editor's
edge-snapping fill), /console/session, /console/logout; the CSS/JS it
ships lie in ui/static (served at /console/static). Nothing here blocks the event loop: store reads and file work
go through run.io_bound / the thread pool.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from appliance.jobdir import MASK, MASK_INPUT, MEDIA, PART, PHOTO, SWATCH, surface_stem
from appliance.jobs import QueueFull, StoreUnavailable
from appliance.request_body import read_capped
from pipeline.errors import InputError
from pipeline.surfaces import EXTRA_SURFACES

from . import jobfiles
from .auth import ConsoleAuth

log = logging.getLogger("appliance.console")

STATIC = Path(__file__).resolve().parent / "static"
JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_MASK_BODY = 30_000_000
# Shown where a job has no picture yet (the photo was never fetched): a grey tile with a house outline.
PLACEHOLDER = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 60 40'>"
               "<rect width='60' height='40' fill='#e9edf2'/><path d='M22 21 30 14l8 7v8H22z' fill='none' "
               "stroke='#b5bdc9' stroke-width='1.6'/></svg>")


# ... and where a job has no swatch yet: a grey tile with faint diagonal courses (not a house: it is a material).
NO_SWATCH = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'><rect width='40' height='40' fill='#e9edf2'/>"
             "<path d='M0 30 30 0M10 40 40 10M0 14 14 0M26 40 40 26' stroke='#cfd5de' stroke-width='2'/></svg>")


def register(app: Any, ctx: Any) -> None:
    from nicegui import ui

    from . import job_page, learning_page, mask_editor, queue_page, swatch_library, test_render, variants
    from .components import login_page

    auth = ConsoleAuth(ctx.settings)
    app.add_static_files("/console/static", STATIC)
    ui.add_head_html('<link rel="stylesheet" href="/console/static/console.css">'
                     '<script src="/console/static/console.js"></script>', shared=True)
    _routes(app, ctx, auth)
    login_page(auth)
    queue_page.register(ctx, auth)
    job_page.register(ctx, auth)
    test_render.register(ctx, auth)
    mask_editor.register(ctx, auth)
    variants.register(ctx, auth)
    swatch_library.register(ctx, auth)
    learning_page.register(app, ctx, auth)


def _routes(app: Any, ctx: Any, auth: ConsoleAuth) -> None:
    settings, store = ctx.settings, ctx.store
    private = {"Cache-Control": "private, max-age=300"}

    @app.get("/console/session", include_in_schema=False)
    def session(request: Request, ticket: str = "", next: str = "/") -> Response:  # noqa: A002
        return auth.redeem(ticket, next, secure=auth.secure(request))

    @app.get("/console/logout", include_in_schema=False)
    def logout() -> Response:
        return auth.sign_out()

    @app.get("/console/files/{job_id}/{name}", include_in_schema=False)
    def job_file(job_id: str, name: str, request: Request, download: bool = False) -> Response:
        """A job's images: photo, swatch, mask, overlay (the mask tinted), result, thumb, swatch-thumb,
        before-after (photo and render side by side, a download). Runs in the pool."""
        if (denied := auth.guard_api(request)) is not None:
            return denied
        if not JOB_ID.match(job_id):
            return JSONResponse({"error": "not_found"}, status_code=404)
        job = store.get(job_id)
        path: Path | None = None
        headers = dict(private)
        kind, _, surface = name.partition("-")  # "swatch-roof", "mask-trim", "overlay-door": an extra surface's
        if surface and surface not in EXTRA_SURFACES:
            kind = ""
        if kind in (PHOTO, SWATCH, MASK) and not (kind == PHOTO and surface):
            stem = surface_stem(kind, surface) if surface else kind
            path = jobfiles.find(settings, job_id, stem) or \
                (jobfiles.find(settings, job_id, surface_stem(MASK_INPUT, surface) if surface else MASK_INPUT)
                 if kind == MASK else None)
        elif kind == "overlay":
            path = jobfiles.overlay(settings, job_id, surface or None)
        elif name == "thumb" and job is not None:
            path = jobfiles.thumbnail(ctx, job)
        elif name.startswith(PART + "-"):
            path = jobfiles.parts(settings, job_id).get(name[len(PART) + 1:])
        elif name == "swatch-thumb":
            path = jobfiles.swatch_thumbnail(settings, job_id)
        elif name == "before-after" and job is not None:
            path = jobfiles.side_by_side(ctx, job)
            headers["Content-Disposition"] = f'attachment; filename="before-after-{job_id[:8]}.png"'
        elif name == "result" and job is not None and job.result_url:
            path = jobfiles.result_file(ctx, job)
            if path is None:  # results in Supabase: the browser fetches them there
                return RedirectResponse(job.result_url, status_code=307)
            if download:
                headers["Content-Disposition"] = f'attachment; filename="render-{job_id[:8]}.png"'
        if path is None and name in ("thumb", "swatch-thumb"):
            return Response(PLACEHOLDER if name == "thumb" else NO_SWATCH, media_type="image/svg+xml",
                            headers={"Cache-Control": "no-store"})
        if path is None:
            return JSONResponse({"error": "not_found"}, status_code=404, headers={"Cache-Control": "no-store"})
        return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"),
                            headers=headers)

    @app.get("/console/swatches/{swatch_id}/{name}", include_in_schema=False)
    def library_file(swatch_id: str, name: str, request: Request) -> Response:
        """A library swatch: "image" (as uploaded) or "thumb". Runs in the pool."""
        if (denied := auth.guard_api(request)) is not None:
            return denied
        from appliance.swatches import SwatchLibrary

        path = None
        if name == "thumb":
            path = jobfiles.library_thumbnail(settings, swatch_id)
        elif name == "image":
            library = SwatchLibrary(settings)
            entry = library.get(swatch_id)
            path = None if entry is None else library.file(entry)
        if path is None:
            return JSONResponse({"error": "not_found"}, status_code=404, headers={"Cache-Control": "no-store"})
        return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"), headers=private)

    @app.post("/console/jobs/{job_id}/snap", include_in_schema=False)
    async def snap(job_id: str, request: Request) -> Response:
        """The mask editor's snap tool: the stroke (PNG, the photo's size) -> the region the photo's edges bound
        (PNG, white = region). GrabCut in the thread pool, never on the event loop."""
        if (denied := auth.guard_api(request, write=True)) is not None:
            return denied
        if not JOB_ID.match(job_id):
            return JSONResponse({"error": "job_not_found"}, status_code=404)
        data = await read_capped(request, MAX_MASK_BODY)
        if not data:
            return JSONResponse({"error": "validation_failed", "message": "stroke: empty or too large"}, 400)
        return await run_in_threadpool(_snap, ctx, job_id, data)

    @app.post("/console/jobs/{job_id}/mask", include_in_schema=False)
    async def mask_fix(job_id: str, request: Request, surface: str | None = None) -> Response:
        """The mask editor's PNG (white = paint) -> a new job with the same inputs and this mask (of the wall, or
        with ?surface=roof|trim|door|garage_door of that surface of the job)."""
        if (denied := auth.guard_api(request, write=True)) is not None:
            return denied
        job = store.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            return JSONResponse({"error": "job_not_found"}, status_code=404)
        data = await read_capped(request, MAX_MASK_BODY)
        if not data:
            return JSONResponse({"error": "validation_failed", "message": "mask: empty or too large"}, 400)
        return await run_in_threadpool(_remask, ctx, job, data, surface)


def _snap(ctx: Any, job_id: str, data: bytes) -> Response:
    from . import mask_snap

    photo = jobfiles.find(ctx.settings, job_id, PHOTO)
    if photo is None:
        return JSONResponse({"error": "inputs_gone", "message": "the photo of this job is no longer on this box"}, 410)
    try:
        region = mask_snap.snap_png(photo, data, max_pixels=ctx.settings.max_pixels)
    except (InputError, ValueError, OSError) as exc:  # the stroke's InputError says what is wrong with it
        return JSONResponse({"error": "validation_failed", "message": f"stroke: {str(exc).removeprefix('mask: ')}"},
                            status_code=400)
    return Response(region, media_type="image/png", headers={"Cache-Control": "no-store"})


def _remask(ctx: Any, job: Any, data: bytes, surface: str | None = None) -> Response:
    try:
        jobfiles.check_mask(ctx.settings, job.job_id, data)
        new = ctx.service.fix_mask(job, data, surface)
    except (jobfiles.UploadRejected, ValueError) as exc:
        return JSONResponse({"error": "validation_failed", "message": str(exc)}, status_code=400)
    except FileNotFoundError as exc:
        return JSONResponse({"error": "inputs_gone", "message": str(exc)}, status_code=410)
    except QueueFull:
        return JSONResponse({"error": "queue_full", "message": f"the queue is full ({ctx.settings.queue_depth} jobs "
                                                               "waiting or rendering); try again shortly"}, 503)
    except StoreUnavailable as exc:  # the editor keeps the painted mask: the operator sends it again
        log.warning("mask fix of %s: %s", job.job_id, exc)
        return JSONResponse({"error": "store_unavailable", "message": jobfiles.STORE_BUSY}, 503)
    log.info("job %s: mask fix of %s", new.job_id, job.job_id)
    return JSONResponse({"job_id": new.job_id}, status_code=201)
