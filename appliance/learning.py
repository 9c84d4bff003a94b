"""The studio's own training data and house parser weights: the one place that knows their layout.

    {data_dir}/learning/
      examples/{id}/photo.{ext}    the photo as the job rendered it (bytes as received)
                    mask.png       the final paint mask (white = painted), photo-sized
                    classes.png    optional: house-index map (0 unlabelled, 1 wall ... 10 other, shared data
                                   houses/ indices), when the correction named every part
                    example.json   {"job_id", "source", "created_at", "classes"}
                    .thumb.jpg     the console's thumbnail (photo with the mask tinted over it)
      parser/current.pt            the installed fine-tuned house parser (absent: the shipped weights)
             previous.pt           the exact bytes in use before the last install (`parser rollback`)
      runs.json                    fine-tune runs, newest last (figures before / after, installed or why not)
      progress.json                the running (or last) fine-tune's phase and step
      finetune.lock                held (flock) by the fine-tune process while it runs
      finetune.log                 the output of the last fine-tune the console started
      cache/                       the recipe's data as training items (learning.recipe_data_dir), made once

Examples are kept until an operator deletes one: retention (appliance/worker.py prune) only touches jobs/,
results/ and uploads/. An example's id is a hash of its photo and mask, so a job run twice (a crash, a retry of
the same fix) keeps one example.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_atomic


class Source:
    """Where an example came from."""

    MASK_FIX = "mask_fix"  # the console's mask editor (or a retry of such a job)
    CLIENT_MASK = "client_mask"  # a mask_url sent with an API job ([learning] collect_client_masks = true)
    IMPORTED = "imported"  # put there by a script (labelled photos)


@dataclass(frozen=True)
class Example:
    id: str
    path: Path
    job_id: str | None
    source: str
    created_at: float
    has_classes: bool

    @property
    def photo(self) -> Path:
        return next(p for p in self.path.glob("photo.*"))

    @property
    def mask(self) -> Path:
        return self.path / "mask.png"

    @property
    def classes(self) -> Path | None:
        return self.path / "classes.png" if self.has_classes else None


def class_map(wall: np.ndarray, parts: dict[str, np.ndarray]) -> np.ndarray:
    """A house-index map from corrected masks: the wall, the house parts given (roof, trim, door, ...), and
    everything else "not wall, class unknown" (pipeline.parser_training.NOT_WALL)."""
    from pipeline.facade_parser import CLASSES
    from pipeline.parser_training import NOT_WALL

    wall = np.asarray(wall, bool)
    out = np.full(wall.shape, NOT_WALL, np.uint8)
    for name, mask in parts.items():
        out[np.asarray(mask, bool)] = CLASSES.index(name) + 1
    out[wall] = CLASSES.index("wall") + 1  # the paint mask the render used wins where masks overlap
    return out


def shipped_weights(model_dir: Path | str) -> Path:
    """The house parser weights that ship with the appliance (model "facade-parser")."""
    from pipeline.models import require

    return require(model_dir, "facade-parser")


class StudioData:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "learning"
        self.examples_dir = self.root / "examples"
        self.current = self.root / "parser" / "current.pt"
        self.previous = self.root / "parser" / "previous.pt"
        self.runs_file = self.root / "runs.json"
        self.progress_file = self.root / "progress.json"
        self.lock_file = self.root / "finetune.lock"
        self.log_file = self.root / "finetune.log"

    # --- examples ---
    def add_example(self, photo: bytes, paint: np.ndarray, *, job_id: str | None, source: str,
                    classes: np.ndarray | None = None) -> str:
        """Store one example; returns its id (the same photo and mask again: the same id, stored once)."""
        from .fetch import image_kind
        from .jobdir import extension

        mask_png = _png(np.asarray(paint, bool).astype(np.uint8) * 255)
        classes_png = None if classes is None else _png(np.asarray(classes, np.uint8))
        digest = hashlib.sha256(photo)
        digest.update(mask_png)
        digest.update(classes_png or b"")
        example_id = digest.hexdigest()[:16]
        folder = self.examples_dir / example_id
        if (folder / "example.json").is_file():
            return example_id
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"photo.{extension(image_kind(photo[:16]))}", photo)
        write_atomic(folder / "mask.png", mask_png)
        if classes_png is not None:
            write_atomic(folder / "classes.png", classes_png)
        meta = {"job_id": job_id, "source": source, "created_at": time.time(), "classes": classes_png is not None}
        write_atomic(folder / "example.json", json.dumps(meta).encode())  # last: the example is complete
        return example_id

    def examples(self) -> list[Example]:
        """Complete examples, oldest first."""
        out = []
        for folder in self.examples_dir.iterdir() if self.examples_dir.is_dir() else ():
            try:
                meta = json.loads((folder / "example.json").read_text())
            except (OSError, ValueError):
                continue  # being written, or not an example
            out.append(Example(folder.name, folder, meta.get("job_id"), meta.get("source", ""),
                               float(meta.get("created_at", 0)), bool(meta.get("classes"))))
        return sorted(out, key=lambda e: (e.created_at, e.id))

    def example(self, example_id: str) -> Example | None:
        if not example_id.isalnum():
            return None
        return next((e for e in self.examples() if e.id == example_id), None)

    def delete_example(self, example_id: str) -> bool:
        example = self.example(example_id)
        if example is None:
            return False
        shutil.rmtree(example.path, ignore_errors=True)
        return True

    def thumbnail(self, example_id: str) -> Path | None:
        """A small JPEG of the photo with the paint mask tinted over it (made once)."""
        from PIL import Image, ImageOps

        example = self.example(example_id)
        if example is None:
            return None
        cached = example.path / ".thumb.jpg"
        if not cached.is_file():
            photo = ImageOps.exif_transpose(Image.open(example.photo)).convert("RGB")
            mask = Image.open(example.mask).convert("L").resize(photo.size)
            tint = Image.new("RGB", photo.size, (255, 64, 129))
            photo = Image.composite(Image.blend(photo, tint, 0.45), photo, mask)
            photo.thumbnail((240, 160))
            from io import BytesIO

            buffer = BytesIO()
            photo.save(buffer, "JPEG", quality=85)
            write_atomic(cached, buffer.getvalue())
        return cached

    # --- weights ---
    def weights(self, shipped: Path) -> Path:
        """The house parser weights in use: the installed fine-tuned file, else `shipped`."""
        return self.current if self.current.is_file() else shipped

    def fine_tuned(self, shipped: Path) -> bool:
        """Are the weights in use other than the shipped ones (a rollback to them leaves their exact bytes)?"""
        if not self.current.is_file():
            return False
        return self.current.stat().st_size != shipped.stat().st_size or \
            self.current.read_bytes() != shipped.read_bytes()

    def weights_version(self) -> tuple[int, int, int] | None:
        """Changes whenever weights are installed or rolled back (a new file is renamed in); None = shipped."""
        try:
            st = os.stat(self.current)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def install(self, candidate: Path, shipped: Path) -> None:
        """Make `candidate` the weights in use; the bytes in use until now become previous.pt. Both steps are
        renames of complete files: a worker reading the weights sees the old file or the new one."""
        in_use = self.weights(shipped).read_bytes()
        write_atomic(self.previous, in_use, durable=True)
        write_atomic(self.current, Path(candidate).read_bytes(), durable=True)

    def rollback(self) -> bool:
        """The weights in use before the last install are in use again (exact bytes); the ones rolled back
        become previous.pt (so a second rollback undoes the first). False when there is nothing to go back to."""
        if not self.previous.is_file():
            return False
        back = self.previous.read_bytes()
        undone = self.current.read_bytes() if self.current.is_file() else None
        write_atomic(self.current, back, durable=True)
        if undone is not None:
            write_atomic(self.previous, undone, durable=True)
        return True

    # --- runs and progress ---
    def runs(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.runs_file.read_text())
        except (OSError, ValueError):
            return []

    def record_run(self, run: dict[str, Any]) -> None:
        write_atomic(self.runs_file, json.dumps((self.runs() + [run])[-50:], indent=1).encode())

    def set_progress(self, **state: Any) -> None:
        write_atomic(self.progress_file, json.dumps({"pid": os.getpid(), "time": time.time(), **state}).encode())

    def progress(self) -> dict[str, Any]:
        try:
            return json.loads(self.progress_file.read_text())
        except (OSError, ValueError):
            return {}

    def lock(self):
        """An exclusive lock held while a fine-tune runs (released when its process ends, however it ends);
        None when another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_file, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return fh

    def running(self) -> bool:
        fh = self.lock()
        if fh is None:
            return True
        fh.close()
        return False


def _png(grey: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", grey)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()
