"""One way to write a file so that readers see the old one or the whole new one, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
    """Write `data` to a uniquely named hidden temp file beside `path`, then rename it over `path`.

    Unique names: two writers of the same file never share a temp file. `durable`: fsync before the rename (results;
    job-folder files are re-creatable and skip it). Dot-files are never served, so a temp file never leaks out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
