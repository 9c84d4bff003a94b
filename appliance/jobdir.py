"""A job's own folder (`settings.job_dir(job_id)`): the one place that knows its layout.

    photo.<ext>        the photo as the worker used it (downloaded, or uploaded in the console)
    swatch.<ext>       the swatch (none for a paint colour)
    mask.png           the paint mask the pipeline used (white = painted)
    mask-input.png     a paint mask given to the job (console mask fix, or carried over by a retry)
    swatch-<surface>.<ext>, mask-<surface>.png, mask-input-<surface>.png
                       the same for each extra surface (roof, trim, door, garage_door): its swatch, the mask
                       it was painted with, the mask it was given
    result.png, result.json
                       a finished render whose upload failed while the storage was unavailable, and its report
                       (timings, backends, ...): the next attempt uploads it instead of rendering again
    part-<surface>.png the house parser's mask of each part it found (roof, window, door, garage_door, trim),
                       white = that part: the mask editor includes or excludes a whole part in one click
    origin.json        what a console job was made from ({"kind": "retry", "parent": ...})
    derived.json       the jobs made from this one ([{"kind": "retry", "job_id": ...}, ...]), newest last
    .derived.lock      held (flock) while derived.json is checked and updated
    .<name>            caches and temp files (thumbnails, overlays): never inputs

The worker keeps the inputs here, the console reads them and the job service links them into derived jobs;
retention deletes the folder with the job.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_atomic

PHOTO, SWATCH, MASK, MASK_INPUT, PART = "photo", "swatch", "mask", "mask-input", "part"
ORIGIN, DERIVED, DERIVED_LOCK = "origin.json", "derived.json", ".derived.lock"
KEPT_RENDER, KEPT_REPORT = "result.png", "result.json"
MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp",
         ".tiff": "image/tiff"}


def surface_stem(stem: str, surface: str) -> str:
    """The stem of an extra surface's file: surface_stem(SWATCH, "roof") -> "swatch-roof"."""
    return f"{stem}-{surface}"


def extension(kind: str | None) -> str:
    """The file extension for an image kind from `fetch.image_kind` ("jpeg" -> "jpg")."""
    return (kind or "bin").replace("jpeg", "jpg")


class JobFolder:
    def __init__(self, settings: Any, job_id: str):
        self.job_id = job_id
        self.path: Path = settings.job_dir(job_id)  # ValueError for a malformed id
        self.reaches_workers: bool = getattr(settings, "job_files_shared", True)  # every worker can read it

    def file(self, name: str) -> Path:
        return self.path / name

    def find(self, stem: str) -> Path | None:
        """The image named `stem`.<ext> (photo, swatch, mask, mask-input), or None."""
        for path in sorted(self.path.glob(f"{stem}.*")) if self.path.is_dir() else ():
            if path.suffix in MEDIA and path.is_file():
                return path
        return None

    def parts(self) -> dict[str, Path]:
        """{surface: part-<surface>.png} of the house parts the segmenter found."""
        prefix = PART + "-"
        return {p.stem[len(prefix):]: p for p in sorted(self.path.glob(prefix + "*.png"))} if self.path.is_dir() \
            else {}

    def mask(self, surface: str | None = None) -> Path | None:
        """The mask the pipeline used, else the one the job was given (of the wall, or of an extra surface)."""
        if surface:
            return self.find(surface_stem(MASK, surface)) or self.find(surface_stem(MASK_INPUT, surface))
        return self.find(MASK) or self.find(MASK_INPUT)

    def write(self, name: str, data: bytes) -> Path:
        target = self.path / name
        write_atomic(target, data)
        return target

    def replace_image(self, stem: str, kind: str, data: bytes) -> str:
        """Keep `data` as `stem`.<ext of kind>, removing any other `stem`.*; returns the file name."""
        for old in self.path.glob(f"{stem}.*") if self.path.is_dir() else ():
            if not old.name.startswith("."):
                old.unlink(missing_ok=True)
        name = f"{stem}.{extension(kind)}"
        self.write(name, data)
        return name

    def link_in(self, source: Path, stem: str) -> str:
        """Hard-link (else copy) another job's file in as `stem`<suffix>; returns the new file name."""
        target = self.path / f"{stem}{source.suffix}"
        self.path.mkdir(parents=True, exist_ok=True)
        if target.exists() and os.path.samefile(source, target):  # linked by an earlier, refused try
            return target.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return target.name

    def origin(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / ORIGIN).read_text())
        except (OSError, ValueError):
            return {}

    def set_origin(self, made_from: dict[str, Any]) -> None:
        self.write(ORIGIN, json.dumps(made_from).encode())

    def derived(self) -> list[tuple[str, str]]:
        """(kind, job_id) of the jobs made from this one, oldest first."""
        try:
            return [(d["kind"], d["job_id"]) for d in json.loads((self.path / DERIVED).read_text())]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    @contextmanager
    def deriving(self) -> Iterator[list[tuple[str, str]]]:
        """Hold this folder's derivation lock (flock on .derived.lock) and yield derived() as a list: entries
        appended to it are written (atomically, by rename) when the block ends without an error. Two derivations
        of one job, in threads or processes, therefore never lose an entry, and a check made inside the block
        ("no retry yet") still holds when the new entry is written."""
        self.path.mkdir(parents=True, exist_ok=True)  # a job that never fetched its photo has no folder yet
        with open(self.path / DERIVED_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            entries = self.derived()
            before = len(entries)
            yield entries
            if len(entries) != before:
                self.write(DERIVED, json.dumps([{"kind": k, "job_id": j} for k, j in entries]).encode())

    def add_derived(self, kind: str, job_id: str) -> None:
        with self.deriving() as entries:
            entries.append((kind, job_id))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
