"""The JSON API (FastAPI routes; installed on NiceGUI's `app` by appliance/server.py).

The contract the web app is written against (also in the OpenAPI document at /docs):

POST /render/jobs {image_url, texture_url, project_id?, user_id?, mask_url?, options?}   (appliance.schemas)
    texture_url is a swatch image URL or a paint colour "#RRGGBB".
    201 {job_id, status: "processing", poll_url}              (header Location = poll_url)
    400 {error: "validation_failed", details: {field: reason}}
    401 {error: "unauthorized"}                                (api_key configured, bearer missing/wrong)
    409 {error: "idempotency_conflict"}                        (Idempotency-Key reused with another payload)
    415 {error: "unsupported_media_type"}                      (a body sent without Content-Type: application/json)
    503 {error: "queue_full"} + Retry-After                    (queue.depth jobs queued or running)
    503 {error: "storage_unavailable"} + Retry-After           (the result storage's check fails: unreachable,
                                                                bucket missing or not public, folder unwritable)
    503 {error: "store_unavailable"} + Retry-After             (job store locked, disk full or low, unreachable;
                                                                any job route)
GET /render/jobs?project_id=&user_id=&status=&limit=&cursor=                      (appliance.listing)
    200 {jobs: [the jobs as GET /render/jobs/{job_id} shows them], next_cursor}: newest first, limit <= 100
    403 {error: "listing_disabled"}                            (no api_key configured: it would show anyone all jobs)
GET /render/jobs/{job_id}/events                                                    (appliance.events)
    200 text/event-stream: progress events (poll bodies), then completed | failed; 404 {error: "job_not_found"}
    503 {error: "too_many_streams"} + Retry-After              (server.events_max_streams streams open)
GET /render/jobs/{job_id}
    200 {job_id, status: processing | completed | failed, ...}; processing: stage, progress (0-1), and
        queue_position while waiting; completed: result_url; failed: error_code, error_message
    404 {error: "job_not_found"}
POST /render/jobs/{job_id}/cancel
    200 the job, failed/canceled (it was queued, or already canceled); 202 the job, still processing with
    cancel_requested (it is running; it stops at the next stage boundary); 409 {error: "job_finished"}; 404
GET /healthz, GET /readyz, GET /metrics (appliance.metrics; 503 store_unavailable while the store cannot be read),
GET /results/{path}

The routes speak HTTP only: jobs are made and canceled by the job service (appliance.service), the body is
validated by FastAPI against appliance.schemas.RenderRequest. The poll body is appliance.job_view's; the error
shape and the key check appliance.http_answers'; the operations routes appliance.ops_routes'.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Callable

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from .context import AppContext
from .domain import PROCESSING, ErrorCode, HttpError
from .events import Streams
from .http_answers import ApiError, authorizer, doc, store_unavailable
from .job_view import job_view
from .jobs import IdempotencyConflict, Job, QueueFull, StoreUnavailable
from .listing import list_page
from .ops_routes import ops_router
from .request_body import BodyError, declares_body, is_json_type, parse_json, read_capped
from .schemas import ListQuery, RenderRequest, problems
from .service import CancelOutcome, JobSpec

MAX_BODY = 64 * 1024
STORAGE_RETRY_AFTER = 10  # seconds: the storage check is re-run every 5 s
log = logging.getLogger("appliance.api")


STREAMS_RETRY_AFTER = 5  # seconds: a stream slot frees as soon as a job ends or a client leaves


# --- the job routes' HTTP rules -----------------------------------------------------------------------------

class JobRoute(APIRoute):
    """The job routes' own rules, around FastAPI's request handling:
    - the API key first (401 before anything else: an unauthenticated caller learns nothing about its body);
    - a body must come as application/json (415 otherwise: a cross-origin text/plain POST needs no preflight);
    - the body capped at MAX_BODY bytes while it is read, its nesting and its strings checked
      (appliance.request_body) before FastAPI parses it;
    - validation errors (body, header) answered 400 {error: "validation_failed", details: {field: reason}};
    - ApiError rendered in the error shape."""

    authorize: Callable[[Request], ApiError | None] = staticmethod(lambda request: None)

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        authorize = type(self).authorize

        async def route(request: Request) -> Response:
            try:
                if (denied := authorize(request)) is not None:
                    raise denied
                if request.method == "POST":
                    request = await _capped(request)
                return await handler(request)
            except RequestValidationError as exc:
                return ApiError(400, ErrorCode.VALIDATION_FAILED, details=problems(exc.errors())).response()
            except ApiError as exc:
                return exc.response()
            except StoreUnavailable as exc:
                return store_unavailable(request, exc).response()

        return route


async def _capped(request: Request) -> Request:
    """The request with its body read (at most MAX_BODY bytes), checked, and replayed to FastAPI's own parsing."""
    if declares_body(request) and not is_json_type(request.headers.get("content-type")):
        raise ApiError(415, HttpError.UNSUPPORTED_MEDIA_TYPE,
                       "send the body as JSON with 'Content-Type: application/json'")
    raw = await read_capped(request, MAX_BODY)
    if raw is None:
        raise RequestValidationError([{"type": "too_long", "loc": ("body",), "msg": f"larger than {MAX_BODY} bytes",
                                       "input": None}])
    if raw:
        try:
            parse_json(raw)
        except BodyError as exc:
            raise ApiError(400, ErrorCode.VALIDATION_FAILED, details={"body": str(exc)}) from None

    async def replay() -> dict:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(request.scope, replay)


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not (0 < len(value) <= 255 and value.isprintable()):
        raise ValueError("must be 1-255 printable characters")
    return value


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="a retried POST with the same "
                                              "key returns the same job"), AfterValidator(_idempotency_key)]


_JOB_EXAMPLE = {"job_id": "4f0d…", "status": "processing", "stage": "segment", "progress": 0.3}
_POST_DOCS = {**doc(201, "accepted", {"job_id": "4f0d…", "status": "processing",
                                       "poll_url": "http://appliance:8080/render/jobs/4f0d…"}),
              **doc(400, "invalid request", {"error": "validation_failed", "details": {"image_url": "required"}}),
              **doc(401, "missing or wrong API key", {"error": HttpError.UNAUTHORIZED}),
              **doc(409, "Idempotency-Key reused with another payload", {"error": HttpError.IDEMPOTENCY_CONFLICT}),
              **doc(415, "the body was not sent as application/json", {"error": HttpError.UNSUPPORTED_MEDIA_TYPE}),
              **doc(503, "queue full, or the job store cannot serve (locked, disk full, unreachable); see "
                          "Retry-After", {"error": HttpError.QUEUE_FULL, "retry_after": 10})}
_GET_DOCS = {**doc(200, "the job: processing (stage, progress, queue_position) | completed (result_url) | failed "
                         f"(error_code in {', '.join(ErrorCode)}; error_message)", _JOB_EXAMPLE),
             **doc(404, "unknown job", {"error": HttpError.JOB_NOT_FOUND})}
_LIST_DOCS = {**doc(200, "a page of jobs (poll bodies), newest first; next_cursor is null on the last page",
                      {"jobs": [_JOB_EXAMPLE], "next_cursor": "WzE3…"}),
              **doc(400, "invalid filter, limit or cursor", {"error": "validation_failed",
                                                               "details": {"limit": "Input should be less than or "
                                                                                    "equal to 100"}}),
              **doc(403, "no API key is configured (set server.api_key): the listing is off",
                     {"error": HttpError.LISTING_DISABLED})}
_EVENTS_DOCS = {200: {"description": "text/event-stream: `progress` events (the poll body while processing), then "
                             "one `completed` or `failed` event with the finished poll body; the stream then ends",
                      "content": {"text/event-stream": {"example": 'event: progress\nid: 1\ndata: {"job_id": "4f0d…", '
                                                                   '"status": "processing", "stage": "segment", '
                                                                   '"progress": 0.3}\n\n'}}},
                **doc(404, "unknown job", {"error": HttpError.JOB_NOT_FOUND}),
                **doc(503, "server.events_max_streams streams are open (see Retry-After); poll the job instead",
                       {"error": HttpError.TOO_MANY_STREAMS})}
_CANCEL_DOCS = {**doc(200, "canceled (it was queued) or already canceled", _JOB_EXAMPLE),
                **doc(202, "running: it stops at the next stage boundary", _JOB_EXAMPLE),
                **doc(409, "already finished", {"error": HttpError.JOB_FINISHED}),
                **doc(404, "unknown job", {"error": HttpError.JOB_NOT_FOUND})}


# --- the routes -------------------------------------------------------------------------------------------

def job_router(ctx: AppContext) -> APIRouter:
    settings, store, service = ctx.settings, ctx.store, ctx.service
    route_class = type("JobRoute", (JobRoute,), {"authorize": staticmethod(authorizer(settings.api_key))})
    router = APIRouter(route_class=route_class, tags=["render"])

    def create(spec: JobSpec, key: str | None) -> Response:
        try:
            # A retried POST (same key, same payload) gets its first job back before anything could refuse it now.
            first = service.replay(spec, key) if key is not None else None
        except IdempotencyConflict as exc:
            raise conflict(exc) from None
        if first is not None:
            return accepted(first, replayed=True)
        if (refused := service.refusal(spec)) is not None:
            raise ApiError(400, ErrorCode.VALIDATION_FAILED, details=refused)
        if (problem := ctx.storage_health.problem()) is not None:  # no render whose result could not be stored
            log.warning("POST /render/jobs refused: result storage: %s", problem)
            raise ApiError(503, HttpError.STORAGE_UNAVAILABLE, "the result storage is not usable; retry later",
                           headers={"Retry-After": str(STORAGE_RETRY_AFTER)}, retry_after=STORAGE_RETRY_AFTER)
        try:
            job, created = service.submit(spec, idempotency_key=key)
        except QueueFull:
            retry = max(1, math.ceil(store.recent_duration()))
            raise ApiError(503, HttpError.QUEUE_FULL,
                           f"{settings.queue_depth} jobs are queued or running; retry later",
                           headers={"Retry-After": str(retry)}, retry_after=retry) from None
        except IdempotencyConflict as exc:  # a concurrent twin with another payload took the key meanwhile
            raise conflict(exc) from None
        return accepted(job, replayed=not created)

    def conflict(exc: IdempotencyConflict) -> ApiError:
        return ApiError(409, HttpError.IDEMPOTENCY_CONFLICT, "this Idempotency-Key was used for a different request",
                        job_id=str(exc))

    def accepted(job: Job, *, replayed: bool) -> Response:
        poll_url = f"{settings.base_url}/render/jobs/{job.job_id}"
        headers = {"Location": poll_url}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse({"job_id": job.job_id, "status": PROCESSING, "poll_url": poll_url}, status_code=201,
                            headers=headers)

    @router.post("/render/jobs", status_code=201, responses=_POST_DOCS, summary="Start a render job")
    async def post_job(body: RenderRequest, idempotency_key: IdempotencyKey = None) -> Response:
        if body.webhook_url is not None and not settings.webhook_secret:
            raise ApiError(400, ErrorCode.VALIDATION_FAILED, details={
                "webhook_url": "webhooks are not enabled on this appliance (set [webhooks] secret)"})
        return await run_in_threadpool(create, JobSpec.from_request(body), idempotency_key)

    # Without an API key every route is open, and a listing would show anyone every user's jobs and results.
    listing_open = bool(settings.api_key)

    @router.get("/render/jobs", responses=_LIST_DOCS, summary="List jobs, newest first")
    async def list_jobs(query: Annotated[ListQuery, Query()]) -> Response:
        if not listing_open:
            raise ApiError(403, HttpError.LISTING_DISABLED,
                           "listing jobs needs an API key: set server.api_key in the config")
        page = await run_in_threadpool(list_page, store, query,
                                       lambda job, ahead: job_view(job, store, queue_position=ahead))
        return JSONResponse(page)

    @router.get("/render/jobs/{job_id}", responses=_GET_DOCS, summary="A job's status")
    async def get_job(job_id: str) -> Response:
        def read() -> dict[str, Any] | None:
            job = store.get(job_id)
            return None if job is None else job_view(job, store)

        # A SQLite read in WAL mode never waits for writers: done on the event loop, no thread hop. PostgreSQL
        # reads are network round trips (and wait on locks): in the thread pool, so one slow read stalls no other
        # request.
        view = read() if store.path is not None else await run_in_threadpool(read)
        if view is None:
            raise ApiError(404, HttpError.JOB_NOT_FOUND)
        return JSONResponse(view)

    streams = Streams(settings.events_max_streams, settings.events_max_stream_seconds)

    def read_view(job_id: str) -> dict[str, Any] | None:
        job = store.get(job_id)
        return None if job is None else job_view(job, store)

    @router.get("/render/jobs/{job_id}/events", responses=_EVENTS_DOCS, response_class=Response,
                summary="A job's progress as server-sent events, until it ends")
    async def job_events(job_id: str) -> Response:
        if streams.full():  # each open stream reads the store 5 times a second
            raise ApiError(503, HttpError.TOO_MANY_STREAMS, f"{streams.limit} event streams are open "
                           "(server.events_max_streams); poll GET /render/jobs/{job_id} or retry later",
                           headers={"Retry-After": str(STREAMS_RETRY_AFTER)})
        if await run_in_threadpool(store.get, job_id) is None:
            raise ApiError(404, HttpError.JOB_NOT_FOUND)
        return streams.response(job_id, read_view)

    @router.post("/render/jobs/{job_id}/cancel", summary="Cancel a job", responses=_CANCEL_DOCS)
    async def cancel_job(job_id: str) -> Response:
        def cancel() -> tuple[Job, CancelOutcome, dict[str, Any]] | None:
            found = service.cancel(job_id)  # the view reads the store too (webhook state): off the loop as well
            return None if found is None else (*found, job_view(found[0], store))

        found = await run_in_threadpool(cancel)
        if found is None:
            raise ApiError(404, HttpError.JOB_NOT_FOUND)
        job, outcome, view = found
        if outcome is CancelOutcome.FINISHED:
            raise ApiError(409, HttpError.JOB_FINISHED, f"the job already ended ({view['status']})", job=view)
        return JSONResponse(view, status_code=200 if outcome is CancelOutcome.CANCELED else 202)

    return router


def install(app: FastAPI, ctx: AppContext) -> None:
    """CORS (allow-list from config) and the routes, on `app` (NiceGUI's app in production)."""
    if ctx.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                           expose_headers=["Retry-After", "Location", "Idempotent-Replayed"], max_age=600)
    app.include_router(job_router(ctx))
    app.include_router(ops_router(ctx))
