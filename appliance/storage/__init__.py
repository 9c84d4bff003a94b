"""Where finished renders go: one small protocol, two backends (`local.LocalStorage`, `supabase.SupabaseStorage`).

Object paths (the same in every backend, relative to the backend's root or bucket):

    renders/{user_id}/{project_id}-{job_id}.png   user and project known
    renders/{user_id}/{job_id}.png                user known, no project
    renders/anonymous/{project_id}-{job_id}.png   project known, no user
    renders/anonymous/{job_id}.png                neither (e.g. a render started from the console)

Ids become path segments, so they must be 1-128 characters of letters, digits, `_`, `-` and `.`, and must not
start with `.`; anything else raises ValueError (validate ids at the API so a job never fails this late).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["UploadError", "UploadUnavailable", "ResultStorage", "object_path", "check_id", "check_png", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ANONYMOUS = "anonymous"
_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")


class UploadError(Exception):
    """Saving a result failed; `str(exc)` is a one-line human reason. `retryable`: the backend was unavailable
    (outage, full disk), so the same upload may work later; False for a refusal (bad key, size, type)."""

    retryable = False


class UploadUnavailable(UploadError):
    retryable = True


@runtime_checkable
class ResultStorage(Protocol):
    name: str
    # Capabilities, declared so that no caller branches on `name`:
    prune_results: bool  # retention deletes the results of pruned jobs from this backend

    def resolve(self, relative_path: str) -> Path | None:
        """The file behind `/results/<relative_path>` when this box serves its results itself, else None."""
        ...

    def save(self, job_id: str, user_id: str | None, project_id: str | None, png: bytes, *,
             deadline: float | None = None) -> str:
        """Store the PNG and return its absolute URL. Raises UploadError. `deadline` (time.monotonic()): the job's
        time limit; retries stop there."""
        ...

    def delete(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        """Remove a stored result; best effort (retention), never raises."""
        ...

    def upload_follows(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        """The job goes back to the queue to upload its result again (maybe on another worker): drop any delete of
        its path this backend scheduled after a failed upload."""
        ...

    def check(self) -> str | None:
        """None when the storage is usable, else a reason (for /readyz)."""
        ...


def check_id(value: str, field: str = "id") -> str | None:
    """None when `value` can be used as a path segment, else the reason."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return f"{field} must be 1-128 characters of letters, digits, '_', '-' or '.', not starting with '.'"
    return None


def object_path(job_id: str, user_id: str | None, project_id: str | None) -> str:
    """The object path of a result (see the module docstring); raises ValueError for unsafe ids."""
    for field, value in (("job_id", job_id), ("user_id", user_id), ("project_id", project_id)):
        if value is None and field != "job_id":
            continue
        reason = check_id(value, field)
        if reason:
            raise ValueError(reason)
    name = f"{project_id}-{job_id}.png" if project_id else f"{job_id}.png"
    return f"renders/{user_id or ANONYMOUS}/{name}"


def check_png(png: bytes) -> None:
    if not isinstance(png, (bytes, bytearray)) or not bytes(png[:8]) == PNG_SIGNATURE:
        raise ValueError("result is not PNG data")
