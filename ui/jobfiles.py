"""The console's file work (all blocking: call it through run.io_bound or a thread pool).

A job's folder (`settings.job_dir(job_id)`) holds what the job used: photo.<ext>, swatch.<ext> (not for a paint
colour), mask.png (the paint mask the pipeline used), and for console jobs the inputs that the job row names as
"upload:<file>" (photo.jpg, swatch.png, mask-input.png) plus origin.json (what the job was made from). Console
jobs are submitted through appliance.api.submit_job, the same path as the API's.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from appliance.api import submit_job
from appliance.jobs import COMPLETED, UPLOAD_REF, Job, upload_name

KINDS = ("png", "jpeg", "webp", "gif", "bmp", "tiff")
MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp",
         ".tiff": "image/tiff"}
OVERLAY_RGB = (255, 64, 129)  # the painted area, tinted over the photo
THUMB = (240, 160)


class UploadRejected(Exception):
    """A file the render would refuse; the text says why, in the pipeline's words."""


def new_job_id() -> str:
    return str(uuid.uuid4())


def find(settings, job_id: str, stem: str) -> Path | None:
    """The job's file named `stem`.<ext> (photo, swatch, mask, mask-input), or None."""
    try:
        folder = settings.job_dir(job_id)
    except ValueError:
        return None
    for path in sorted(folder.glob(f"{stem}.*")) if folder.is_dir() else ():
        if path.suffix in MEDIA and path.is_file():
            return path
    return None


def result_file(ctx, job: Job) -> Path | None:
    """The result on this box's disk (local storage), else None (Supabase: the browser uses result_url)."""
    if job.status != COMPLETED or getattr(ctx.storage, "name", "") != "local":
        return None
    from appliance.storage import object_path

    try:
        return ctx.storage.resolve(object_path(job.job_id, job.user_id, job.project_id))
    except ValueError:
        return None


def origin(settings, job_id: str) -> dict[str, Any]:
    try:
        return json.loads((settings.job_dir(job_id) / "origin.json").read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- uploads (test render) ----------------------------------------------------------------------------------

def check_upload(settings, what: str, data: bytes) -> dict[str, Any]:
    """Refuse what the render would refuse: too large, not an image, too small, too many pixels. Returns
    {kind, width, height}. Raises UploadRejected with the reason."""
    from appliance.fetch import image_kind
    from pipeline.errors import InputError
    from pipeline.images import load_photo, load_texture

    if len(data) > settings.fetch_max_bytes:
        raise UploadRejected(f"{what}: the file is {len(data) / 1e6:.1f} MB, over the limit of "
                             f"{settings.fetch_max_bytes / 1e6:.0f} MB")
    kind = image_kind(data[:16])
    if kind is None:
        raise UploadRejected(f"{what}: the file is not a PNG, JPEG, WebP, GIF, BMP or TIFF image")
    try:
        if what == "photo":
            pixels = load_photo(data, max_pixels=settings.max_pixels)
        else:
            pixels = load_texture(data, max_pixels=settings.max_pixels).image
    except InputError as exc:
        raise UploadRejected(str(exc)) from None
    return {"kind": kind, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])}


def store_upload(settings, job_id: str, stem: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """Check and keep an upload in the (future) job's folder: its "upload:<file>" reference and check_upload's
    facts."""
    info = check_upload(settings, stem, data)
    folder = settings.job_dir(job_id)
    for old in folder.glob(f"{stem}.*") if folder.is_dir() else ():
        old.unlink(missing_ok=True)
    name = f"{stem}.{info['kind'].replace('jpeg', 'jpg')}"
    _write(folder / name, data)
    return UPLOAD_REF + name, info


def submit(ctx, job_id: str, *, photo: str, texture: str, options: dict, mask: str | None = None,
           project_id: str | None = None, user_id: str | None = None, made_from: dict | None = None) -> Job:
    """Enqueue a job whose inputs lie in its folder. Raises QueueFull (the folder stays, for another try) and
    pipeline InputError for bad options."""
    from pipeline.options import RenderOptions

    fields = {"image_url": photo, "texture_url": texture, "mask_url": mask, "project_id": project_id,
              "user_id": user_id, "options": RenderOptions.from_mapping(options).to_dict()}
    if made_from:
        _write(ctx.settings.job_dir(job_id) / "origin.json", json.dumps(made_from).encode())
    job, _ = submit_job(ctx, fields, job_id=job_id)
    return job


# --- jobs made from jobs: retry and mask fix ----------------------------------------------------------------

def _carry(settings, job: Job, ref: str | None, stem: str, new_id: str, target_stem: str) -> str | None:
    """The new job's reference for one input: the file the old job kept (linked into the new folder), else the
    original URL or colour."""
    if ref is None or ref.startswith("#"):
        return ref
    name = upload_name(ref)
    source = settings.job_dir(job.job_id) / name if name else find(settings, job.job_id, stem)
    if source is None or not source.is_file():
        if name:
            raise FileNotFoundError(f"the {stem} of job {job.job_id[:8]} is no longer on this box")
        return ref
    target = settings.job_dir(new_id) / f"{target_stem}{source.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return UPLOAD_REF + target.name


def derive(ctx, job: Job, *, kind: str, mask_png: bytes | None = None) -> Job:
    """A new job with the inputs of `job` (retry), or with a corrected paint mask (mask fix)."""
    settings = ctx.settings
    new_id = new_job_id()
    try:
        photo = _carry(settings, job, job.image_url, "photo", new_id, "photo")
        texture = _carry(settings, job, job.texture_url, "swatch", new_id, "swatch")
        if mask_png is not None:
            _write(settings.job_dir(new_id) / "mask-input.png", mask_png)
            mask = UPLOAD_REF + "mask-input.png"
        elif job.mask_url and upload_name(job.mask_url):
            mask = _carry(settings, job, job.mask_url, "mask-input", new_id, "mask-input")
        elif job.mask_url:
            mask = _carry(settings, job, job.mask_url, "mask", new_id, "mask-input")
        else:
            mask = None
        return submit(ctx, new_id, photo=photo, texture=texture, options=job.options, mask=mask,
                      project_id=job.project_id, user_id=job.user_id,
                      made_from={"kind": kind, "parent": job.job_id})
    except BaseException:
        shutil.rmtree(settings.job_dir(new_id), ignore_errors=True)
        raise


def photo_size(settings, job_id: str) -> tuple[int, int] | None:
    """(width, height) of the job's photo, upright: the size a paint mask must have."""
    from PIL import Image

    mask = find(settings, job_id, "mask")
    path = mask or find(settings, job_id, "photo")
    if path is None:
        return None
    with Image.open(path) as img:
        w, h = img.size
        if mask is None and img.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation: turned by 90 degrees
            w, h = h, w
    return w, h


def check_mask(settings, job_id: str, data: bytes):
    """A painted mask from the editor, checked like the worker will (size, paints something)."""
    from pipeline.errors import InputError
    from pipeline.images import load_mask

    size = photo_size(settings, job_id)
    if size is None:
        raise UploadRejected("the photo of this job is no longer on this box")
    if len(data) > settings.fetch_max_bytes:
        raise UploadRejected("mask: the file is too large")
    try:
        load_mask(data, (size[1], size[0]), max_pixels=settings.max_pixels)
    except InputError as exc:
        raise UploadRejected(str(exc)) from None


# --- derived images (cached in the job's folder as dot-files; pruned with it) -------------------------------

def overlay(settings, job_id: str) -> Path | None:
    """The paint mask as a tinted, half-transparent PNG to lay over the photo."""
    import numpy as np
    from PIL import Image

    mask = find(settings, job_id, "mask") or find(settings, job_id, "mask-input")
    if mask is None:
        return None
    cached = mask.with_name(f".overlay-{mask.stem}.png")
    if not cached.is_file() or cached.stat().st_mtime < mask.stat().st_mtime:
        with Image.open(mask) as img:
            painted = np.asarray(img.convert("L")) >= 128
        rgba = np.zeros(painted.shape + (4,), np.uint8)
        rgba[painted] = (*OVERLAY_RGB, 150)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG", compress_level=3)
        _write(cached, buffer.getvalue())
    return cached


def thumbnail(ctx, job: Job) -> Path | None:
    """A small JPEG of the result (when finished here), else of the photo."""
    from PIL import Image, ImageOps

    settings = ctx.settings
    source, name = result_file(ctx, job), ".thumb-result.jpg"
    if source is None:
        source, name = find(settings, job.job_id, "photo"), ".thumb-photo.jpg"
    if source is None:
        return None
    cached = settings.job_dir(job.job_id) / name
    if not cached.is_file():
        with Image.open(source) as img:
            img.draft("RGB", (THUMB[0] * 2, THUMB[1] * 2))  # JPEG: decode at a reduced scale
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail(THUMB)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=82)
        _write(cached, buffer.getvalue())
    return cached
