"""The JSON API (plain FastAPI routes; installed on NiceGUI's `app` by appliance/server.py).

The contract the web app is written against (also in the OpenAPI document at /docs):

POST /render/jobs {image_url, texture_url, project_id?, user_id?, mask_url?, options?}
    texture_url is a swatch image URL or a paint colour "#RRGGBB".
    201 {job_id, status: "processing", poll_url}              (header Location = poll_url)
    400 {error: "validation_failed", details: {field: reason}}
    401 {error: "unauthorized"}                                (api_key configured, bearer missing/wrong)
    409 {error: "idempotency_conflict"}                        (Idempotency-Key reused with another payload)
    503 {error: "queue_full"} + Retry-After                    (queue.depth jobs queued or running)
GET /render/jobs/{job_id}
    200 {job_id, status: processing | completed | failed, ...}; processing: stage, progress (0-1), and
        queue_position while waiting; completed: result_url; failed: error_code, error_message
    404 {error: "job_not_found"}
POST /render/jobs/{job_id}/cancel
    200 the job, failed/canceled (it was queued, or already canceled); 202 the job, still processing with
    cancel_requested (it is running; it stops at the next stage boundary); 409 {error: "job_finished"}; 404
GET /healthz, GET /readyz, GET /results/{path}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .config import Settings
from .jobs import COMPLETED, FAILED, QUEUED, RUNNING, IdempotencyConflict, Job, JobStore, QueueFull
from .queue import RenderQueue

log = logging.getLogger("appliance.api")

ERROR_CODES = ("download_failed", "pipeline_error", "upload_failed", "validation_failed", "timeout", "canceled")
FIELDS = ("image_url", "texture_url", "project_id", "user_id", "mask_url", "options")
MAX_BODY = 64 * 1024


@dataclass
class ApiContext:
    settings: Settings
    store: JobStore
    queue: RenderQueue
    storage: Any  # appliance.storage.ResultStorage
    supervisor: Any = None  # appliance.supervisor.Supervisor, when this process runs the worker
    started_at: float = field(default_factory=time.time)


def _error(status: int, error: str, message: str | None = None, headers: dict | None = None, **extra: Any):
    body: dict[str, Any] = {"error": error}
    if message:
        body["message"] = message
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` bytes (without reading the rest into memory)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --- validation -------------------------------------------------------------------------------------------

def validate_request(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The POST body -> (normalised fields, problems {field: reason})."""
    from pipeline.errors import InputError
    from pipeline.images import parse_colour
    from pipeline.options import RenderOptions

    from .fetch import check_url_syntax

    if not isinstance(body, dict):
        return {}, {"body": "must be a JSON object"}
    problems: dict[str, str] = {}
    for key in body:
        if key not in FIELDS:
            problems[str(key)] = "unknown field"
    out: dict[str, Any] = {}

    def url(name: str, required: bool, colour_ok: bool = False) -> None:
        value = body.get(name)
        if value is None:
            if required:
                problems[name] = "required"
            return
        if not isinstance(value, str):
            problems[name] = "must be a string"
            return
        if colour_ok and value.strip().startswith("#"):
            rgb = parse_colour(value)
            if rgb is None:
                problems[name] = "a paint colour must be written #RRGGBB"
            else:
                out[name] = "#%02X%02X%02X" % rgb
            return
        reason = check_url_syntax(value)
        if reason:
            problems[name] = reason + (" (or give a paint colour #RRGGBB)" if colour_ok else "")
        else:
            out[name] = value

    url("image_url", True)
    url("texture_url", True, colour_ok=True)
    url("mask_url", False)

    for name in ("project_id", "user_id"):
        value = body.get(name)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ValueError
            out[name] = str(uuid.UUID(value))
        except ValueError:
            problems[name] = "must be a UUID"
    if body.get("project_id") is not None and body.get("user_id") is None:
        problems["user_id"] = "required when project_id is given"

    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        problems["options"] = "must be a JSON object"
    else:
        try:
            out["options"] = RenderOptions.from_mapping(options).to_dict()
        except InputError as exc:
            problems.update(getattr(exc, "details", None) or {"options": str(exc)})
    return out, problems


def request_hash(fields: dict[str, Any]) -> str:
    canonical = json.dumps({k: fields.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- views ------------------------------------------------------------------------------------------------

def job_view(job: Job, store: JobStore) -> dict[str, Any]:
    """A job as the API shows it. Documented fields never change meaning; extra ones may be added."""
    view: dict[str, Any] = {"job_id": job.job_id,
                            "status": "processing" if job.status in (QUEUED, RUNNING) else job.status,
                            "project_id": job.project_id, "user_id": job.user_id,
                            "created_at": _iso(job.created_at), "attempts": job.attempts}
    if job.status == QUEUED:
        view.update(stage="queued", progress=0.0, queue_position=store.queue_position(job))
    elif job.status == RUNNING:
        view.update(stage=job.stage or "starting", progress=round(job.progress, 3), started_at=_iso(job.started_at))
    if job.status in (QUEUED, RUNNING) and job.cancel_requested:
        view["cancel_requested"] = True
    if job.status == COMPLETED:
        view["result_url"] = job.result_url
    if job.status == FAILED:
        view.update(error_code=job.error_code, error_message=job.error_message)
    if job.status in (COMPLETED, FAILED):
        view.update(started_at=_iso(job.started_at), completed_at=_iso(job.completed_at))
        for key in ("timings", "backends", "warnings", "scale"):  # scale: with options.swatch_width_m
            if getattr(job, key) is not None:
                view[key] = getattr(job, key)
    return view


# --- OpenAPI documentation (the handlers parse the body themselves to answer with our own 400 shape) --------

_OPTIONS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "real_world_scale": {"type": "number", "minimum": 1, "maximum": 400, "default": 24,
                             "description": "how many times the swatch repeats across the widest painted wall"},
        "enable_refinement": {"type": "boolean", "default": False,
                              "description": "diffusion refinement (needs the GPU model set; else pipeline_error)"},
        "refinement_seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "default": 42},
        "stage_timeout_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 3600,
                                  "description": "per-stage time limit; exceeded -> failed with error_code timeout"},
        "swatch_width_m": {"type": ["number", "null"], "minimum": 0.05, "maximum": 20, "default": None,
                           "description": "real width (m) the swatch image shows: tile size from the wall's "
                                          "estimated metric scale; real_world_scale is the fallback"},
    },
}
_UUID = {"type": "string", "format": "uuid"}
_REQUEST_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["image_url", "texture_url"],
    "properties": {
        "image_url": {"type": "string", "format": "uri", "description": "the house photo (http/https)"},
        "texture_url": {"type": "string", "description": "the swatch image URL, or a paint colour '#RRGGBB'",
                        "examples": ["https://example.com/swatches/brick.jpg", "#B04A3A"]},
        "project_id": dict(_UUID, description="optional; requires user_id"),
        "user_id": dict(_UUID, description="required when project_id is given"),
        "mask_url": {"type": "string", "format": "uri",
                     "description": "optional paint mask, same size as the photo, white = paint"},
        "options": _OPTIONS_SCHEMA,
    },
}


def _doc(status: int, description: str, example: dict) -> dict:
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


_JOB_EXAMPLE = {"job_id": "4f0d…", "status": "processing", "stage": "segment", "progress": 0.3}
_POST_DOCS = {**_doc(201, "accepted", {"job_id": "4f0d…", "status": "processing",
                                       "poll_url": "http://appliance:8080/render/jobs/4f0d…"}),
              **_doc(400, "invalid request", {"error": "validation_failed", "details": {"image_url": "required"}}),
              **_doc(401, "missing or wrong API key", {"error": "unauthorized"}),
              **_doc(409, "Idempotency-Key reused with another payload", {"error": "idempotency_conflict"}),
              **_doc(503, "queue full; see Retry-After", {"error": "queue_full", "retry_after": 10})}
_GET_DOCS = {**_doc(200, "the job: processing (stage, progress, queue_position) | completed (result_url) | failed "
                         f"(error_code in {', '.join(ERROR_CODES)}; error_message)", _JOB_EXAMPLE),
             **_doc(404, "unknown job", {"error": "job_not_found"})}


# --- the routes -------------------------------------------------------------------------------------------

def submit_job(ctx: ApiContext, fields: dict[str, Any], *, job_id: str | None = None,
               idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Store a queued job from validated fields and enqueue it: the one way in, for the API and the console.
    Returns (job, created). Raises QueueFull, IdempotencyConflict. Blocking (SQLite writes)."""
    job, created = ctx.store.create(job_id=job_id or str(uuid.uuid4()), image_url=fields["image_url"],
                                    texture_url=fields["texture_url"], mask_url=fields.get("mask_url"),
                                    options=fields["options"], project_id=fields.get("project_id"),
                                    user_id=fields.get("user_id"), idempotency_key=idempotency_key,
                                    request_hash=request_hash(fields) if idempotency_key else None,
                                    queue_depth=ctx.settings.queue_depth)
    if created:
        try:
            ctx.queue.enqueue(job.job_id)
        except Exception:  # the job is stored: housekeeping re-sends lost queue messages
            log.exception("job %s: enqueue failed; housekeeping will retry", job.job_id)
    return job, created


def build_router(ctx: ApiContext) -> APIRouter:
    settings, store = ctx.settings, ctx.store
    base = settings.base_url
    api_key = settings.api_key.encode() if settings.api_key else None
    router = APIRouter()

    def unauthorized(request: Request) -> JSONResponse | None:
        if api_key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key):
            return None
        return _error(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'",
                      headers={"WWW-Authenticate": "Bearer"})

    def create(fields: dict[str, Any], key: str | None) -> Response:
        try:
            job, created = submit_job(ctx, fields, idempotency_key=key)
        except QueueFull:
            retry = max(1, math.ceil(store.recent_duration()))
            return _error(503, "queue_full", f"{settings.queue_depth} jobs are queued or running; retry later",
                          headers={"Retry-After": str(retry)}, retry_after=retry)
        except IdempotencyConflict as exc:
            return _error(409, "idempotency_conflict", "this Idempotency-Key was used for a different request",
                          job_id=str(exc))
        poll_url = f"{base}/render/jobs/{job.job_id}"
        headers = {"Location": poll_url}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse({"job_id": job.job_id, "status": "processing", "poll_url": poll_url}, status_code=201,
                            headers=headers)

    @router.post("/render/jobs", status_code=201, responses=_POST_DOCS, tags=["render"],
                 summary="Start a render job",
                 openapi_extra={"requestBody": {"required": True,
                                                "content": {"application/json": {"schema": _REQUEST_SCHEMA}}},
                                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                                "schema": {"type": "string", "maxLength": 255},
                                                "description": "a retried POST with the same key returns the "
                                                               "same job"}]})
    async def post_job(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        raw = await read_capped(request, MAX_BODY)
        if raw is None:
            return _error(400, "validation_failed", details={"body": f"larger than {MAX_BODY} bytes"})
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "validation_failed", details={"body": "not valid JSON"})
        fields, problems = validate_request(body)
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
            problems["Idempotency-Key"] = "must be 1-255 printable characters"
        if problems:
            return _error(400, "validation_failed", details=problems)
        return await run_in_threadpool(create, fields, key)

    @router.get("/render/jobs/{job_id}", responses=_GET_DOCS, tags=["render"], summary="A job's status")
    async def get_job(job_id: str, request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        # A read in WAL mode never waits for writers: done on the event loop, no thread hop.
        job = store.get(job_id)
        if job is None:
            return _error(404, "job_not_found")
        return JSONResponse(job_view(job, store))

    @router.post("/render/jobs/{job_id}/cancel", tags=["render"], summary="Cancel a job",
                 responses={**_doc(200, "canceled (it was queued) or already canceled", _JOB_EXAMPLE),
                            **_doc(202, "running: it stops at the next stage boundary", _JOB_EXAMPLE),
                            **_doc(409, "already finished", {"error": "job_finished"}),
                            **_doc(404, "unknown job", {"error": "job_not_found"})})
    async def cancel_job(job_id: str, request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        job = await run_in_threadpool(store.request_cancel, job_id)
        if job is None:
            return _error(404, "job_not_found")
        view = job_view(job, store)
        if job.status == FAILED and job.error_code == "canceled":
            return JSONResponse(view, status_code=200)
        if job.status in (QUEUED, RUNNING):
            return JSONResponse(view, status_code=202)
        return _error(409, "job_finished", f"the job already ended ({view['status']})", job=view)

    @router.get("/healthz", tags=["ops"], summary="Alive")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", tags=["ops"], summary="Ready: models, queue, storage, worker")
    def readyz() -> Response:
        checks = readiness(ctx)
        ready = all(c.get("ok") for c in checks.values())
        return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                            status_code=200 if ready else 503)

    @router.get("/results/{path:path}", tags=["results"], summary="A result stored on the appliance's disk",
                response_class=FileResponse)
    async def result_file(path: str) -> Response:
        resolve = getattr(ctx.storage, "resolve", None)
        found = resolve(path) if resolve is not None else None
        if found is None:
            return _error(404, "not_found")
        return FileResponse(found, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return router


def readiness(ctx: ApiContext) -> dict[str, dict[str, Any]]:
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
        return None, {"backend": ctx.store.url, "active_jobs": ctx.store.active_count(),
                      "queue_depth": ctx.settings.queue_depth}

    def queue():
        return None, {"backend": type(ctx.queue.huey).__name__, "pending_messages": ctx.queue.ping()}

    def storage():
        return ctx.storage.check(), {"backend": getattr(ctx.storage, "name", "?")}

    def worker():
        fresh = max(15.0, ctx.settings.lease_seconds)
        now = time.time()
        workers = ctx.store.workers()
        live = [w for w in workers if now - w.heartbeat_at <= fresh]
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


def install(app: FastAPI, ctx: ApiContext) -> None:
    """CORS (allow-list from config) and the routes, on `app` (NiceGUI's app in production)."""
    if ctx.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                           expose_headers=["Retry-After", "Location", "Idempotent-Replayed"], max_age=600)
    app.include_router(build_router(ctx))
