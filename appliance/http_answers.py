"""What every route of the API answers the same way: the error shape (`ApiError`), 503 store_unavailable, the
bearer-key check, and the OpenAPI description of an answer."""

from __future__ import annotations

import hmac
import logging
from typing import Any, Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from .domain import HttpError
from .jobs import StoreUnavailable

STORE_RETRY_AFTER = 5  # seconds: a lock usually clears, an operator frees disk or restarts the database
log = logging.getLogger("appliance.api")


class ApiError(Exception):
    """An answer in the API's error shape: {error, message?, ...extra} (raised by routes, rendered by JobRoute)."""

    def __init__(self, status: int, error: str, message: str | None = None, *, headers: dict | None = None,
                 **extra: Any):
        super().__init__(error)
        self.status, self.error, self.message, self.headers, self.extra = status, error, message, headers, extra

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.message:
            body["message"] = self.message
        body.update(self.extra)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def store_unavailable(request: Request, exc: StoreUnavailable) -> ApiError:
    """503 store_unavailable + Retry-After: the answer of any route that needs the job store while it cannot serve."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return ApiError(503, HttpError.STORE_UNAVAILABLE, "the job store cannot serve right now; retry later",
                    headers={"Retry-After": str(STORE_RETRY_AFTER)}, retry_after=STORE_RETRY_AFTER)


def doc(status: int, description: str, example: dict) -> dict:
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


def authorizer(*api_keys: str | None) -> Callable[[Request], ApiError | None]:
    """Bearer auth accepting any of `api_keys` (none set: open)."""
    keys = [k.encode() for k in api_keys if k]

    def authorize(request: Request) -> ApiError | None:
        if not keys:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and any([hmac.compare_digest(token.strip().encode(), k) for k in keys]):
            return None
        return ApiError(401, HttpError.UNAUTHORIZED, "send the API key as 'Authorization: Bearer <key>'",
                        headers={"WWW-Authenticate": "Bearer"})

    return authorize
