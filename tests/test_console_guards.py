"""The console's refusals lose nothing and never answer 500: a bad snap stroke, a refused "Change surfaces" (the
operator's uploads stay for another try), the refinement switch following the API's rule, and derived.json under
concurrent retries. Real job store, queue and job folders; the snap route's own handler."""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.jobs import JobStore, QueueFull, StoreUnavailable
from service_fixtures import SMALL_HOUSE, SWATCH


def _ctx(tmp_path, **settings):
    from appliance.config import Settings
    from appliance.context import AppContext
    from appliance.queue import RenderQueue
    from appliance.service import JobService
    from appliance.storage.local import LocalStorage

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", **settings)
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    ctx = AppContext(settings=settings, store=store, queue=queue,
                     storage=LocalStorage(settings.results_dir, "http://box"))
    return ctx, JobService(settings, store, queue)


def _uploaded_job(ctx, shared_dir):
    from ui import jobfiles

    job_id = jobfiles.new_job_id()
    photo, _ = jobfiles.store_upload(ctx.settings, job_id, "photo", (shared_dir / "data" / SMALL_HOUSE).read_bytes())
    swatch, _ = jobfiles.store_upload(ctx.settings, job_id, "swatch", (shared_dir / "data" / SWATCH).read_bytes())
    return jobfiles.submit(ctx, job_id, photo=photo, texture=swatch, options={})


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says width x height (8-bit grey) and carries a few bytes of pixels: only a header reader can
    judge it; decoding it fails (truncated) or, for a real one that size, takes width*height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_snap_refuses_a_bomb_or_oversized_stroke_from_its_header(tmp_path, shared_dir):
    import json

    from ui.pages import _snap

    ctx, _ = _ctx(tmp_path)
    job = _uploaded_job(ctx, shared_dir)
    # Far over Pillow's own bomb limit: Pillow refuses it at open (DecompressionBombError), which must be a 400.
    bomb = _snap(ctx, job.job_id, _png_header(30_000, 30_000))
    assert bomb.status_code == 400, bomb.body
    body = json.loads(bomb.body)
    assert body["error"] == "validation_failed" and "megapixels" in body["message"], body
    # Larger than the photo but under every image limit: refused from the header (a stroke may be no larger than
    # the photo), before its pixels are decoded: the message is about its size, not about the truncated data.
    big = json.loads(_snap(ctx, job.job_id, _png_header(6000, 6000)).body)
    assert big["error"] == "validation_failed" and "megapixels" in big["message"], big
    assert "truncated" not in big["message"] and "not a readable image" not in big["message"], big
    # Not an image at all: a clear 400 as well.
    junk = _snap(ctx, job.job_id, b"not a png")
    assert junk.status_code == 400 and "stroke" in json.loads(junk.body)["message"]


def test_a_refused_surfaces_change_keeps_the_operators_uploads(tmp_path, shared_dir):
    """The test-render draft (job_id=draft) holds the surface swatches the operator uploaded: a full queue or an
    unavailable store refuses the job and the draft stays whole, so "try again in a moment" works."""
    from appliance.jobdir import SWATCH as SWATCH_STEM, JobFolder, surface_stem
    from appliance.refs import InputRef
    from appliance.service import JobService, SurfaceSpec
    from ui import jobfiles

    ctx, service = _ctx(tmp_path, queue_depth=1)
    base = _uploaded_job(ctx, shared_dir)  # the queue is now full
    draft = jobfiles.new_job_id()
    roof, _ = jobfiles.store_upload(ctx.settings, draft, surface_stem(SWATCH_STEM, "roof"),
                                    (shared_dir / "data" / SWATCH).read_bytes())
    kept = JobFolder(ctx.settings, draft).file(InputRef.parse(roof).file_name)
    surfaces = [SurfaceSpec("roof", InputRef.parse(roof))]
    with pytest.raises(QueueFull):
        service.with_surfaces(base, surfaces, job_id=draft)
    assert kept.is_file(), "the refused job deleted the operator's upload"
    # The store refuses (too little space left): the same, and a clear message in the console.
    full_disk = JobService(replace(ctx.settings, min_free_mb=10 ** 12, queue_depth=10), ctx.store, ctx.queue)
    with pytest.raises(StoreUnavailable):
        full_disk.with_surfaces(base, surfaces, job_id=draft)
    assert kept.is_file()
    # A retry's folder (a fresh id) is the call's own: a refusal leaves nothing behind.
    before = {p.name for p in ctx.settings.job_dir(base.job_id).parent.iterdir()}
    with pytest.raises(StoreUnavailable):
        full_disk.retry(base)
    assert {p.name for p in ctx.settings.job_dir(base.job_id).parent.iterdir()} == before
    room = JobService(replace(ctx.settings, queue_depth=10), ctx.store, ctx.queue)
    made = room.with_surfaces(base, surfaces, job_id=draft)  # the operator's second try
    assert made.job_id == draft and [s["texture_url"] for s in made.surfaces] == [roof]
    assert kept.is_file()


def test_the_refinement_switch_and_the_api_follow_one_rule(tmp_path):
    """A worker that stopped beating long ago does not count: its refiner cannot run the job."""
    from appliance.refs import InputRef
    from appliance.service import JobSpec, has_refiner
    from pipeline.options import RenderOptions
    from ui.test_render import _has_refiner

    ctx, service = _ctx(tmp_path)
    spec = JobSpec(image=InputRef.parse("http://photos.example/h.jpg"), texture=InputRef.parse("#111111"),
                   options=RenderOptions.from_mapping({"enable_refinement": True}))
    assert has_refiner(ctx.store, ctx.settings) is None and _has_refiner(ctx) and service.refusal(spec) is None
    now = time.time()
    ctx.store.worker_beat("gpu-old", 11, "cuda:0", "idle", now)
    ctx.store.worker_info("gpu-old", 11, {"models": {"refine": "sdxl"}})
    ctx.store.worker_beat("cpu", 12, "cpu", "idle", now)
    ctx.store.worker_info("cpu", 12, {"models": {"refine": "none"}})
    assert has_refiner(ctx.store, ctx.settings) is True and _has_refiner(ctx) and service.refusal(spec) is None
    with sqlite3.connect(ctx.settings.jobs_db) as db:  # the GPU worker died an hour ago
        db.execute("UPDATE render_workers SET heartbeat_at = ? WHERE name = 'gpu-old'", (now - 3600,))
    assert has_refiner(ctx.store, ctx.settings) is False
    assert not _has_refiner(ctx) and service.refusal(spec) is not None


def test_concurrent_derivations_keep_every_entry(tmp_path):
    from appliance.config import Settings
    from appliance.jobdir import JobFolder

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    folder = JobFolder(settings, "0" * 32)
    threads, each = 8, 25
    start = threading.Barrier(threads)

    def add(n: int) -> None:
        start.wait()
        for i in range(each):
            JobFolder(settings, folder.job_id).add_derived("retry", f"{n}-{i}")

    workers = [threading.Thread(target=add, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    entries = folder.derived()
    assert len(entries) == threads * each and len(set(entries)) == threads * each
    assert not [p for p in Path(folder.path).iterdir() if p.name.endswith(".tmp")]


def test_two_bulk_retries_at_once_retry_each_job_once(tmp_path):
    from appliance.jobdir import JobFolder
    from appliance.refs import InputRef
    from appliance.service import JobSpec

    ctx, service = _ctx(tmp_path, queue_depth=100)
    failed = []
    for n in range(30):
        job = service.submit(JobSpec(image=InputRef.parse("http://photos.example/h.jpg"),
                                     texture=InputRef.parse(f"#0000{n:02d}")))[0]
        assert ctx.store.claim(job.job_id, "test/1", 30) and ctx.store.fail(job.job_id, "test/1", "download_failed", "x")
        failed.append(job.job_id)
    start = threading.Barrier(2)
    made: list[str] = []

    def bulk() -> None:
        start.wait()
        made.extend(service.retry_failed().made)

    runs = [threading.Thread(target=bulk) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert len(made) == len(failed), made
    for job_id in failed:
        assert [k for k, _ in JobFolder(ctx.settings, job_id).derived()] == ["retry"]


def test_snap_takes_a_stroke_of_the_upright_photo(tmp_path):
    """A phone photo stored sideways with an EXIF turn: the editor shows it upright, and so is its stroke."""
    import io

    import numpy as np
    from PIL import Image

    from pipeline.errors import InputError
    from ui.mask_snap import snap_png

    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to show
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (180, 80, 50)).save(photo, exif=exif)

    def stroke(w: int, h: int) -> bytes:
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[10:20, 10:20] = 255
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
        return buffer.getvalue()

    region = Image.open(io.BytesIO(snap_png(photo, stroke(48, 64))))
    assert region.size == (48, 64) and np.asarray(region)[15, 15] == 255
    with pytest.raises(InputError, match="64x48"):
        snap_png(photo, stroke(64, 48))


def test_a_mask_fix_the_store_refuses_is_a_clear_503(tmp_path, shared_dir):
    """The mask editor shows the message and keeps the painted mask; no half-made job folder stays behind."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from appliance.context import AppContext
    from ui import jobfiles
    from ui.pages import _remask

    ctx, _ = _ctx(tmp_path)
    job = _uploaded_job(ctx, shared_dir)
    w, h = jobfiles.photo_size(ctx.settings, job.job_id)
    buffer = io.BytesIO()
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(buffer, "PNG")
    full_disk = AppContext(settings=replace(ctx.settings, min_free_mb=10 ** 12), store=ctx.store, queue=ctx.queue,
                           storage=ctx.storage)
    folders = {p.name for p in ctx.settings.job_dir(job.job_id).parent.iterdir()}
    answer = _remask(full_disk, job, buffer.getvalue())
    assert answer.status_code == 503, answer.body
    assert json.loads(answer.body) == {"error": "store_unavailable", "message": jobfiles.STORE_BUSY}
    assert {p.name for p in ctx.settings.job_dir(job.job_id).parent.iterdir()} == folders
    assert _remask(ctx, job, buffer.getvalue()).status_code == 201  # room again: the same mask goes through
