"""Results in Supabase Storage, through the official `supabase` client.

Behaviour of the real server that this code depends on (see /work/shared/SUPABASE_STORAGE.md and the contract
double tests/supabase_storage_server.py): errors come back as HTTP 400 with the real status as a STRING in the
JSON body, which storage3 raises as `StorageApiError(status='409' ...)`; 5xx from a gateway come back as real
5xx (status an int); network failures are raw httpx exceptions.

Retry policy (`retry_policy`, tenacity): exponential backoff from `backoff_seconds` (capped at 10 s) over a window of
`retry_seconds` (default 90: a Storage restart takes 3-8 s, a gateway or network blip longer), optionally also
capped at `retries` more attempts; ONLY for 5xx (either form) and transport errors (connect/read/write errors,
timeouts, a dropped connection). Anything 4xx (bad key, missing bucket, type not allowed, ...) fails at once.
Re-sending an upload is safe because it is sent with upsert. An upload given up on may still land later (a
stalled server finishes it): the object path is then deleted, best effort, at once and again a minute later (dropped
by `upload_follows` when the job is re-queued to upload again), and retention deletes it again with the job.

Size: a standard upload is refused above the server's limit (50 MiB by default) and the bucket's
`file_size_limit`; both are checked before sending (the bucket's read once), so an oversized result fails at once
with a clear reason instead of after a full transfer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, TypeVar

import httpx
import tenacity
from storage3.exceptions import StorageApiError
from storage3.utils import StorageException
from supabase import ClientOptions, create_client

from ..retry import retrying
from . import UploadError, UploadUnavailable, check_png, object_path

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Transient(Exception):
    """Worth another try. `unanswered`: no answer came (timeout, dropped connection, gateway timeout), so the
    server may still complete the request."""

    def __init__(self, reason: str, unanswered: bool = False):
        super().__init__(reason)
        self.unanswered = unanswered


class _GaveUp(UploadUnavailable):
    """The retry window closed on a call that got no answer: it may still complete on the server."""


MIB = 1024 * 1024
STANDARD_UPLOAD_LIMIT = 50 * MIB  # the Storage server's UPLOAD_FILE_SIZE_LIMIT_STANDARD in its sample config


def retry_policy(window: float, attempts: int | None, backoff: float) -> tenacity.Retrying:
    """The retry rule for Storage calls (appliance/retry.py): only _Transient failures, exponential backoff, within
    `window` seconds (and `attempts` tries, when given); the last _Transient is re-raised."""
    return retrying(_Transient, window=window, attempts=attempts, before_sleep=_log_retry,
                    wait=tenacity.wait_exponential(multiplier=backoff, min=backoff, max=10.0))


def _log_retry(state: tenacity.RetryCallState) -> None:
    log.warning("Supabase Storage call failed (%s); retry %d in %.1f s", state.outcome.exception(),
                state.attempt_number, state.next_action.sleep if state.next_action else 0)


class SupabaseStorage:
    name = "supabase"
    prune_results = True  # retention deletes the objects of the jobs it prunes
    backoff_seconds = 0.3  # first pause before a retry; doubles each time
    orphan_recheck_seconds = 60.0  # after giving up on an unanswered upload, delete its path again this much later

    def __init__(
        self,
        url: str,
        service_role_key: str,
        bucket: str = "project-images",
        signed_url_seconds: int | None = None,
        retries: int | None = None,
        timeout: float = 20,
        retry_seconds: float = 90.0,
        max_upload_bytes: int = STANDARD_UPLOAD_LIMIT,
    ) -> None:
        self.bucket = bucket
        self.signed_url_seconds = signed_url_seconds
        self.retries = None if retries is None else max(0, retries)
        self.retry_seconds = retry_seconds
        self.max_upload_bytes = max_upload_bytes
        self._bucket_limit: int | None = None  # the bucket's file_size_limit, as check() last read it
        self._rechecks: dict[str, threading.Timer] = {}  # object path -> its pending second delete
        self._rechecks_lock = threading.Lock()
        # Our own httpx client carries the timeout (storage3 deprecates its `timeout` argument). The URL and key
        # come from the operator's config, not from users, so the environment's proxy settings are honoured.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)
        self._client = create_client(url, service_role_key, options=ClientOptions(httpx_client=self._http))

    def _files(self):
        return self._client.storage.from_(self.bucket)

    # --- ResultStorage ----------------------------------------------------------------------------------

    def save(self, job_id: str, user_id: str | None, project_id: str | None, png: bytes, *,
             deadline: float | None = None) -> str:
        check_png(png)
        path = object_path(job_id, user_id, project_id)
        self._check_size(len(png))
        options = {"content-type": "image/png", "upsert": "true", "cache-control": "3600"}
        self._recheck(path, None)  # a new upload of this path: an older failed one's delete must not follow it
        try:
            self._with_retry("upload", lambda: self._files().upload(path, bytes(png), options), deadline)
        except _GaveUp:
            # An upload given up on may still land (a stalled server finishes it): delete now and once more later,
            # best effort; retention deletes the path again with the job.
            self._remove(path)
            timer = threading.Timer(self.orphan_recheck_seconds, self._remove, args=(path,))
            timer.daemon = True
            self._recheck(path, timer)
            timer.start()
            raise
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
            path = object_path(job_id, user_id, project_id)
        except ValueError as exc:
            log.warning("could not delete result of job %s from Supabase Storage: %s", job_id, exc)
            return
        self._remove(path)

    def upload_follows(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        # The worker re-queues the job to upload it again: that upload (perhaps by another worker, which knows
        # nothing of this timer) must not be deleted. The immediate delete was done; retention deletes the path
        # of a job that ends upload_failed.
        self._recheck(object_path(job_id, user_id, project_id), None)

    def _recheck(self, path: str, timer: threading.Timer | None) -> None:
        with self._rechecks_lock:
            old = self._rechecks.pop(path, None)
            if timer is not None:
                self._rechecks[path] = timer
        if old is not None:
            old.cancel()

    def _remove(self, path: str) -> None:
        try:
            self._files().remove([path])
        except (StorageException, httpx.HTTPError, ValueError) as exc:
            log.warning("could not delete %s from Supabase Storage: %s", path, _describe(exc))

    def _check_size(self, size: int) -> None:
        limits = {"the Storage server's standard upload limit (storage.max_upload_mb)": self.max_upload_bytes}
        if self._bucket_limit:  # known once check() has read the bucket (the worker does at start)
            limits[f"bucket {self.bucket!r}'s file_size_limit"] = self._bucket_limit
        for what, limit in limits.items():
            if size > limit:
                raise UploadError(f"the result is {size / MIB:.1f} MiB, over {what} of {limit / MIB:.1f} MiB; "
                                  f"lower render.max_pixels or raise the limit")

    def _remember_bucket(self, bucket) -> None:
        limit = getattr(bucket, "file_size_limit", None)
        self._bucket_limit = int(limit) if limit else None

    def check(self) -> str | None:
        try:
            bucket = self._client.storage.get_bucket(self.bucket)
        except StorageApiError as exc:
            return f"Supabase Storage bucket {self.bucket!r}: {_describe(exc)}"
        except (StorageException, httpx.HTTPError) as exc:
            return f"Supabase Storage unreachable: {_describe(exc)}"
        self._remember_bucket(bucket)
        if not self.signed_url_seconds and not getattr(bucket, "public", False):
            return f"Supabase Storage bucket {self.bucket!r} is not public; set signed_url_seconds or make it public"
        return None

    def resolve(self, relative_path: str) -> None:
        """Results live in the bucket: `result_url` points there, this box serves none itself."""
        return None

    def close(self) -> None:
        self._http.close()

    # --- retry ------------------------------------------------------------------------------------------

    def _with_retry(self, action: str, call: Callable[[], T], deadline: float | None = None) -> T:
        window = self.retry_seconds
        if deadline is not None:  # the job's time limit comes first
            window = max(0.0, min(window, deadline - time.monotonic()))
        policy = retry_policy(window, None if self.retries is None else 1 + self.retries, self.backoff_seconds)
        try:
            return policy(_classify, action, call)
        except _Transient as exc:
            attempts = policy.statistics.get("attempt_number", 1)
            error = _GaveUp if exc.unanswered else UploadUnavailable
            raise error(f"Supabase Storage {action} failed after {attempts} attempts: {exc}") from exc.__cause__


def _classify(action: str, call: Callable[[], T]) -> T:
    """Run `call`; map failures to _Transient (worth retrying) or UploadError (final)."""
    try:
        return call()
    except StorageApiError as exc:
        if _status(exc) >= 500:
            raise _Transient(_describe(exc), unanswered=_status(exc) in (504, 544)) from exc  # 544: db timeout
        raise UploadError(f"Supabase Storage refused the {action}: {_describe(exc)}") from exc
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached the server
        raise _Transient(_describe(exc)) from exc
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Transient(_describe(exc), unanswered=True) from exc
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
