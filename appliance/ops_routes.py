"""The operations routes: /healthz, /readyz, /metrics, and /results/{path} (the results the box stores itself)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .context import AppContext
from .domain import HttpError
from .http_answers import ApiError, authorizer, doc, store_unavailable
from .jobs import StoreUnavailable
from .readiness import readiness


def ops_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", tags=["ops"], summary="Alive")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    readyz_auth = authorizer(ctx.settings.api_key)

    ready_docs = {**doc(200, "every part is usable", {"status": "ready", "checks": {"job_store": {"ok": True}}}),
                  **doc(503, "some part is not usable; each check says why (with the API key)",
                         {"status": "not_ready", "checks": {"worker": {"ok": False, "reason": "no worker is ready"}}})}

    @router.get("/readyz", tags=["ops"], summary="Ready: models, queue, storage, worker (details with the API key)",
                responses=ready_docs)
    def readyz(request: Request) -> Response:
        checks = readiness(ctx)
        ready = all(c.get("ok") for c in checks.values())
        if readyz_auth(request) is not None:  # a probe without the key learns up/down per part, no pids or paths
            checks = {name: {"ok": bool(check.get("ok"))} for name, check in checks.items()}
        return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                            status_code=200 if ready else 503)

    metrics_auth = authorizer(ctx.settings.metrics_token, ctx.settings.api_key)

    @router.get("/metrics", tags=["ops"], summary="Prometheus metrics (text exposition format)")
    async def metrics(request: Request) -> Response:
        if (denied := metrics_auth(request)) is not None:
            return denied.response()
        from .metrics import scrape

        try:
            body, content_type = await run_in_threadpool(scrape, ctx.store)  # files and the store: off the loop
        except StoreUnavailable as exc:  # like the job routes: a scraper sees the outage and when to retry
            return store_unavailable(request, exc).response()
        return Response(body, media_type=content_type)

    @router.get("/results/{path:path}", tags=["results"], summary="A result stored on the appliance's disk",
                responses=doc(404, "no such result (or results live in Supabase Storage)",
                               {"error": HttpError.NOT_FOUND}),
                response_class=FileResponse)
    async def result_file(path: str) -> Response:
        found = ctx.storage.resolve(path)  # None for remote storage: its result_url points elsewhere
        if found is None:
            return ApiError(404, HttpError.NOT_FOUND).response()
        return FileResponse(found, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return router
