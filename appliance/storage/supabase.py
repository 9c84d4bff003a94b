"""Results in Supabase Storage, through the official `supabase` client.

Behaviour of the real server that this code depends on (see /work/shared/SUPABASE_STORAGE.md and the contract
double tests/supabase_storage_server.py): errors come back as HTTP 400 with the real status as a STRING in the
JSON body, which storage3 raises as `StorageApiError(status='409' ...)`; 5xx from a gateway come back as real
5xx (status an int); network failures are raw httpx exceptions.

Retry policy: up to `retries` more attempts, short exponential backoff, ONLY for 5xx (either form) and
transport errors (connect/read/write errors, timeouts, a dropped connection). Anything 4xx (bad key, missing
bucket, type not allowed, ...) fails at once. Re-sending an upload is safe because it is sent with upsert.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable, TypeVar

import httpx
from storage3.exceptions import StorageApiError
from storage3.utils import StorageException
from supabase import ClientOptions, create_client

from . import UploadError, check_png, object_path

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Transient(Exception):
    pass


class SupabaseStorage:
    name = "supabase"
    prune_results = False  # retention does not delete bucket objects (yet)
    backoff_seconds = 0.3  # first pause before a retry; doubles each time

    def __init__(
        self,
        url: str,
        service_role_key: str,
        bucket: str = "project-images",
        signed_url_seconds: int | None = None,
        retries: int = 2,
        timeout: float = 20,
    ) -> None:
        self.bucket = bucket
        self.signed_url_seconds = signed_url_seconds
        self.retries = max(0, retries)
        # Our own httpx client carries the timeout (storage3 deprecates its `timeout` argument). The URL and key
        # come from the operator's config, not from users, so the environment's proxy settings are honoured.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)
        self._client = create_client(url, service_role_key, options=ClientOptions(httpx_client=self._http))

    def _files(self):
        return self._client.storage.from_(self.bucket)

    # --- ResultStorage ----------------------------------------------------------------------------------

    def save(self, job_id: str, user_id: str | None, project_id: str | None, png: bytes) -> str:
        check_png(png)
        path = object_path(job_id, user_id, project_id)
        options = {"content-type": "image/png", "upsert": "true", "cache-control": "3600"}
        self._with_retry("upload", lambda: self._files().upload(path, bytes(png), options))
        if self.signed_url_seconds:
            seconds = int(self.signed_url_seconds)
            signed = self._with_retry("signed URL", lambda: self._files().create_signed_url(path, seconds))
            url = signed.get("signedURL") or signed.get("signedUrl")
            if not url:
                raise UploadError("Supabase Storage returned no signed URL")
            return url
        return self._files().get_public_url(path)

    def delete(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        try:
            self._files().remove([object_path(job_id, user_id, project_id)])
        except (StorageException, httpx.HTTPError, ValueError) as exc:
            log.warning("could not delete result of job %s from Supabase Storage: %s", job_id, _describe(exc))

    def check(self) -> str | None:
        try:
            bucket = self._client.storage.get_bucket(self.bucket)
        except StorageApiError as exc:
            return f"Supabase Storage bucket {self.bucket!r}: {_describe(exc)}"
        except (StorageException, httpx.HTTPError) as exc:
            return f"Supabase Storage unreachable: {_describe(exc)}"
        if not self.signed_url_seconds and not getattr(bucket, "public", False):
            return f"Supabase Storage bucket {self.bucket!r} is not public; set signed_url_seconds or make it public"
        return None

    def resolve(self, relative_path: str) -> None:
        """Results live in the bucket: `result_url` points there, this box serves none itself."""
        return None

    def close(self) -> None:
        self._http.close()

    # --- retry ------------------------------------------------------------------------------------------

    def _with_retry(self, action: str, call: Callable[[], T]) -> T:
        attempts = 1 + self.retries
        for attempt in range(attempts):
            try:
                return _classify(action, call)
            except _Transient as exc:
                if attempt + 1 >= attempts:
                    raise UploadError(
                        f"Supabase Storage {action} failed after {attempts} attempts: {exc}"
                    ) from exc.__cause__
                delay = self.backoff_seconds * (2**attempt)
                log.warning("Supabase Storage %s failed (%s); retrying in %.1f s", action, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def _classify(action: str, call: Callable[[], T]) -> T:
    """Run `call`; map failures to _Transient (worth retrying) or UploadError (final)."""
    try:
        return call()
    except StorageApiError as exc:
        if _status(exc) >= 500:
            raise _Transient(_describe(exc)) from exc
        raise UploadError(f"Supabase Storage refused the {action}: {_describe(exc)}") from exc
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Transient(_describe(exc)) from exc
    except (StorageException, httpx.HTTPError, ValueError) as exc:
        raise UploadError(f"Supabase Storage {action} failed: {_describe(exc)}") from exc


def _status(exc: StorageApiError) -> int:
    try:
        return int(str(exc.status))  # the real server puts the status in the body as a string
    except (TypeError, ValueError):
        return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StorageApiError):
        message = str(exc.message)
        if message.startswith("Unable to parse error message:"):  # non-JSON body, or JSON without "error"
            message = message.split(":", 1)[1].strip()
            try:
                message = str(json.loads(message).get("message") or message)
            except (ValueError, AttributeError):
                pass
        return f"{exc.status} {message}"[:300]
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
