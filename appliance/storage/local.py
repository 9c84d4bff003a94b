"""Results on the appliance's own disk, served by the API under `/results/<object path>`."""

from __future__ import annotations

import logging
import tempfile
import urllib.parse
from pathlib import Path, PurePosixPath

from ..atomic import write_atomic
from . import UploadUnavailable, check_png, object_path

log = logging.getLogger(__name__)


class LocalStorage:
    name = "local"
    prune_results = True

    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = Path(root)
        self.public_base_url = public_base_url.rstrip("/")

    def save(self, job_id: str, user_id: str | None, project_id: str | None, png: bytes, *,
             deadline: float | None = None) -> str:  # one local write: no retries for a deadline to cut
        check_png(png)
        relative = object_path(job_id, user_id, project_id)
        target = self.root / relative
        try:
            # A reader sees the old file or the whole new one, never half; temp dot-files are never served.
            write_atomic(target, png, durable=True, mode=0o644)
        except OSError as exc:
            raise UploadUnavailable(f"could not write result to {target}: {exc.strerror or exc}") from exc
        return f"{self.public_base_url}/results/{urllib.parse.quote(relative)}"

    def delete(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        try:
            (self.root / object_path(job_id, user_id, project_id)).unlink(missing_ok=True)
        except (OSError, ValueError) as exc:
            log.warning("could not delete result of job %s: %s", job_id, exc)

    def upload_follows(self, job_id: str, user_id: str | None, project_id: str | None) -> None:
        """Nothing scheduled here: a local save never gives up half way."""

    def check(self) -> str | None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".readyz.", delete=True):
                pass
        except OSError as exc:
            return f"result folder {self.root} is not writable: {exc.strerror or exc}"
        return None

    def resolve(self, relative_path: str) -> Path | None:
        """The file behind `/results/<relative_path>`, or None (missing, hidden, or outside the root).

        Refuses absolute paths, `..`, empty segments, backslashes, NUL and dot-files (temp files), and anything
        whose real path (symlinks followed) leaves the root.
        """
        if not relative_path or "\x00" in relative_path or "\\" in relative_path:
            return None
        parts = PurePosixPath(relative_path).parts
        if relative_path.startswith("/") or not parts:
            return None
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        if parts != tuple(relative_path.split("/")):  # "a//b", "a/./b", trailing "/"
            return None
        root = self.root.resolve()
        try:  # a name the file system refuses (too long, ...) is simply not there
            candidate = (root / relative_path).resolve()
            if not candidate.is_relative_to(root) or not candidate.is_file():
                return None
        except (OSError, ValueError):
            return None
        return candidate
