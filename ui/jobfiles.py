"""The console's file work (all blocking: call it through run.io_bound or a thread pool).

The job folder's layout is appliance.jobdir's; jobs are made through the job service (ctx.service), the same path
as the API's. This module checks uploads the way the render will, and draws the derived images (thumbnails, the
mask overlay) that the pages show.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

from appliance.domain import JobStatus
from appliance.jobdir import MASK, PHOTO, SWATCH, JobFolder
from appliance.jobs import Job
from appliance.refs import InputRef
from appliance.service import JobSpec

OVERLAY_RGB = (255, 64, 129)  # the painted area, tinted over the photo
THUMB = (240, 160)
SWATCH_THUMB = (96, 96)


class UploadRejected(Exception):
    """A file the render would refuse; the text says why, in the pipeline's words."""


def new_job_id() -> str:
    return str(uuid.uuid4())


def folder(settings, job_id: str) -> JobFolder | None:
    try:
        return JobFolder(settings, job_id)
    except ValueError:
        return None


def find(settings, job_id: str, stem: str) -> Path | None:
    """The job's file named `stem`.<ext> (photo, swatch, mask, mask-input), or None."""
    jobdir = folder(settings, job_id)
    return None if jobdir is None else jobdir.find(stem)


def result_file(ctx, job: Job) -> Path | None:
    """The result on this box's disk (local storage), else None (Supabase: the browser uses result_url)."""
    if job.status != JobStatus.COMPLETED:
        return None
    from appliance.storage import object_path

    try:
        return ctx.storage.resolve(object_path(job.job_id, job.user_id, job.project_id))
    except ValueError:
        return None


def origin(settings, job_id: str) -> dict[str, Any]:
    jobdir = folder(settings, job_id)
    return {} if jobdir is None else jobdir.origin()


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
        if what == PHOTO:
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
    name = JobFolder(settings, job_id).replace_image(stem, info["kind"], data)
    return str(InputRef.upload(name)), info


# What the console says when the job store refuses a job (disk full, locked, unreachable): nothing is lost.
STORE_BUSY = "The job store cannot take a job right now (see the server log); your files are kept. Try again in a moment."


def submit(ctx, job_id: str, *, photo: str, texture: str, options: dict, mask: str | None = None,
           made_from: dict | None = None, surfaces: tuple = ()) -> Job:
    """Enqueue a job whose inputs lie in its folder (stored references: "upload:<file>", "#RRGGBB"; `surfaces`:
    service.SurfaceSpec each). Raises QueueFull, StoreUnavailable (the folder stays, for another try) and pipeline InputError for
    bad options."""
    from pipeline.options import RenderOptions

    spec = JobSpec(image=InputRef.parse(photo), texture=InputRef.parse(texture),
                   mask=None if mask is None else InputRef.parse(mask), options=RenderOptions.from_mapping(options),
                   surfaces=tuple(surfaces))
    return ctx.service.submit(spec, job_id=job_id, made_from=made_from)[0]


def photo_size(settings, job_id: str) -> tuple[int, int] | None:
    """(width, height) of the job's photo, upright: the size a paint mask must have."""
    from PIL import Image

    from pipeline.images import upright_size

    mask = find(settings, job_id, MASK)
    path = mask or find(settings, job_id, PHOTO)
    if path is None:
        return None
    with Image.open(path) as img:
        return img.size if mask is not None else upright_size(img)  # the pipeline's mask is upright already


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


# --- variants and the swatch library -------------------------------------------------------------------------

def family(ctx, job_id: str, limit: int = 48) -> list[Job]:
    """Every job made from the same photo as `job_id`: up the origin chain to the first job, then down the jobs
    made from each (retries, mask fixes, variants), oldest first."""
    settings, store = ctx.settings, ctx.store
    root, seen = job_id, {job_id}
    for _ in range(limit):
        parent = origin(settings, root).get("parent")
        if not parent or parent in seen or store.get(parent) is None:
            break
        root = parent
        seen.add(root)
    ordered, todo, found = [], [root], {root}
    while todo and len(ordered) < limit:
        current = todo.pop(0)
        job = store.get(current)
        if job is not None:
            ordered.append(job)
        jobdir = folder(settings, current)
        for _, child in jobdir.derived() if jobdir is not None else ():
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(ordered, key=lambda j: j.created_at)


def parts(settings, job_id: str) -> dict[str, Path]:
    """The house parts the parser found on this job's photo ({surface: part mask}): the job's own, else those of
    the job it was made from (a mask fix is rendered without the parser)."""
    current = job_id
    for _ in range(20):
        jobdir = folder(settings, current)
        found = {} if jobdir is None else jobdir.parts()
        parent = origin(settings, current).get("parent")
        if found or not parent:
            return found
        current = parent
    return {}


def remember_swatch(settings, job_id: str, name: str, width_m: float | None = None):
    """Keep the job's swatch in the library (once per file); returns the entry, or None without a swatch."""
    from appliance.fetch import image_kind
    from appliance.swatches import SwatchLibrary

    path = find(settings, job_id, SWATCH)
    if path is None:
        return None
    data = path.read_bytes()
    return SwatchLibrary(settings).add(data, image_kind(data[:16]) or path.suffix.lstrip("."), name, width_m)


def library_upload(settings, data: bytes, name: str, width_m: float | None = None):
    """A swatch uploaded to the library, checked the way the render checks a swatch (UploadRejected)."""
    from appliance.swatches import SwatchLibrary

    info = check_upload(settings, SWATCH, data)
    return SwatchLibrary(settings).add(data, info["kind"], name, width_m)


def library_thumbnail(settings, swatch_id: str) -> Path | None:
    from appliance.swatches import SwatchLibrary

    library = SwatchLibrary(settings)
    entry = library.get(swatch_id)
    source = None if entry is None else library.file(entry)
    if source is None:
        return None
    cached = library.path / f".thumb-{swatch_id}.jpg"
    if not cached.is_file():
        _small_to(source, cached, (200, 200))
    return cached


# --- derived images (cached in the job's folder as dot-files; pruned with it) -------------------------------

def overlay(settings, job_id: str, surface: str | None = None) -> Path | None:
    """The paint mask (of the wall, or of an extra `surface`) as a tinted, half-transparent PNG to lay over the
    photo."""
    import numpy as np
    from PIL import Image

    jobdir = folder(settings, job_id)
    mask = None if jobdir is None else jobdir.mask(surface)
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
        jobdir.write(cached.name, buffer.getvalue())
    return cached


def swatch_thumbnail(settings, job_id: str) -> Path | None:
    """A small JPEG of the job's swatch (the material column, the variants grid), or None before it is fetched."""
    source = find(settings, job_id, SWATCH)
    return None if source is None else _small(JobFolder(settings, job_id), source, ".thumb-swatch.jpg", SWATCH_THUMB)


def side_by_side(ctx, job: Job) -> Path | None:
    """Before | after in one PNG at the photo's size (for the client), cached; None without a local result."""
    from PIL import Image, ImageDraw, ImageOps

    result, photo = result_file(ctx, job), find(ctx.settings, job.job_id, PHOTO)
    if result is None or photo is None:
        return None
    jobdir = JobFolder(ctx.settings, job.job_id)
    cached = jobdir.file(".before-after.png")
    if not cached.is_file():
        with Image.open(photo) as a, Image.open(result) as b:
            after = b.convert("RGB")
            before = ImageOps.exif_transpose(a).convert("RGB").resize(after.size)
        gap = max(8, after.width // 100)
        sheet = Image.new("RGB", (after.width * 2 + gap, after.height), (255, 255, 255))
        sheet.paste(before, (0, 0))
        sheet.paste(after, (after.width + gap, 0))
        draw = ImageDraw.Draw(sheet)
        for x, text in ((0, "Before"), (after.width + gap, "After")):
            draw.rectangle((x + 8, 8, x + 8 + 8 * len(text) + 12, 30), fill=(0, 0, 0))
            draw.text((x + 14, 13), text, fill=(255, 255, 255))
        buffer = io.BytesIO()
        sheet.save(buffer, "PNG", compress_level=3)
        jobdir.write(cached.name, buffer.getvalue())
    return cached


def _small(jobdir: JobFolder, source: Path, name: str, size: tuple[int, int]) -> Path:
    cached = jobdir.file(name)
    if not cached.is_file():
        _small_to(source, cached, size)
    return cached


def _small_to(source: Path, target: Path, size: tuple[int, int]) -> None:
    from PIL import Image, ImageOps

    from appliance.atomic import write_atomic

    with Image.open(source) as img:
        img.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at a reduced scale
        small = ImageOps.exif_transpose(img).convert("RGB")
        small.thumbnail(size)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=82)
    write_atomic(target, buffer.getvalue())


def thumbnail(ctx, job: Job) -> Path | None:
    """A small JPEG of the result (when finished here), else of the photo."""
    settings = ctx.settings
    source, name = result_file(ctx, job), ".thumb-result.jpg"
    if source is None:
        source, name = find(settings, job.job_id, PHOTO), ".thumb-photo.jpg"
    if source is None:
        return None
    return _small(JobFolder(settings, job.job_id), source, name, THUMB)
