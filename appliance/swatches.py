"""The swatch library: materials the studio used before, kept on this box to be reused in one click.

    data_dir/swatches/<id>.<ext>   the swatch image as uploaded (id = the first 16 hex digits of its sha256,
                                   so the same file is kept once)
    data_dir/swatches/<id>.json    {"name", "width_m" (the real width it shows, or null), "added_at"}

Retention never prunes it: an operator deletes entries. Blocking file work: call it from a thread pool.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .jobdir import MEDIA, extension

SWATCH_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_NAME = 80


@dataclass(frozen=True)
class Swatch:
    swatch_id: str
    name: str
    width_m: float | None
    added_at: float
    file_name: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SwatchLibrary:
    def __init__(self, settings: Any):
        self.path: Path = settings.data_dir / "swatches"

    def add(self, data: bytes, kind: str, name: str, width_m: float | None = None) -> Swatch:
        """Keep an image already checked as a swatch (kind from fetch.image_kind). The same bytes again keep
        the entry and its name (the width is learnt if it had none)."""
        swatch_id = hashlib.sha256(data).hexdigest()[:16]
        file_name = f"{swatch_id}.{extension(kind)}"
        existing = self.get(swatch_id)
        if existing is None:
            write_atomic(self.path / file_name, data)
        entry = Swatch(swatch_id, existing.name if existing else (_clean_name(name) or "swatch"),
                       existing.width_m if existing and existing.width_m is not None else width_m,
                       existing.added_at if existing else time.time(),
                       existing.file_name if existing else file_name)
        write_atomic(self.path / f"{swatch_id}.json", json.dumps(entry.to_dict()).encode())
        return entry

    def get(self, swatch_id: str) -> Swatch | None:
        if not SWATCH_ID.match(swatch_id or ""):
            return None
        try:
            data = json.loads((self.path / f"{swatch_id}.json").read_text())
            entry = Swatch(**{k: data[k] for k in Swatch.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entry if self.file(entry) is not None else None

    def file(self, entry: Swatch) -> Path | None:
        path = self.path / entry.file_name
        return path if path.suffix in MEDIA and path.is_file() else None

    def list(self) -> list[Swatch]:
        """Newest first."""
        entries = [self.get(p.stem) for p in self.path.glob("*.json")] if self.path.is_dir() else []
        return sorted((e for e in entries if e is not None), key=lambda e: -e.added_at)

    def update(self, swatch_id: str, *, name: str | None = None, width_m: float | None = None) -> Swatch | None:
        entry = self.get(swatch_id)
        if entry is None:
            return None
        entry = Swatch(entry.swatch_id, _clean_name(name) or entry.name if name is not None else entry.name,
                       width_m, entry.added_at, entry.file_name)
        write_atomic(self.path / f"{swatch_id}.json", json.dumps(entry.to_dict()).encode())
        return entry

    def delete(self, swatch_id: str) -> bool:
        entry = self.get(swatch_id)
        if entry is None:
            return False
        (self.path / f"{swatch_id}.json").unlink(missing_ok=True)
        (self.path / entry.file_name).unlink(missing_ok=True)
        return True


def _clean_name(name: str | None) -> str:
    """One line, at most MAX_NAME characters, no control characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in (name or "")).split())[:MAX_NAME]
