"""Material variants and the swatch library: the library on disk (no browser), then in a real browser against a real
`render-appliance serve`: "Try another material" keeps the photo (and a corrected mask) and changes only the
material, the job page shows the photo's variants with their materials and compares any two, the Swatches page
keeps, reuses and deletes swatches."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

from appliance.jobs import JobStore
from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH

from console_fixtures import box, browser, drop_file, page, photos, shot, tid  # noqa: F401

OTHER_SWATCH = "textures/stone_ashlar_sand_sh3d_stoneWall.jpg"


def _bytes(shared_dir, name: str) -> bytes:
    return (shared_dir / "data" / name).read_bytes()


def test_swatch_library_keeps_each_file_once(tmp_path, shared_dir):
    from appliance.config import Settings
    from appliance.swatches import SwatchLibrary

    library = SwatchLibrary(Settings(data_dir=tmp_path, model_dir=tmp_path))
    data = _bytes(shared_dir, SWATCH)
    first = library.add(data, "jpeg", "Orange\nbrick\x00")
    assert first.name == "Orange brick" and first.file_name.endswith(".jpg") and first.width_m is None
    again = library.add(data, "jpeg", "", 0.6)  # the same bytes: one entry, the width learnt, the name kept
    assert again.swatch_id == first.swatch_id and again.name == "Orange brick" and again.width_m == 0.6
    library.add(_bytes(shared_dir, OTHER_SWATCH), "jpeg", "Sand stone")
    assert [e.name for e in library.list()] == ["Sand stone", "Orange brick"]
    assert library.update(first.swatch_id, name="Clay brick", width_m=None).name == "Clay brick"
    assert library.get("../../etc/passwd") is None and library.get(first.swatch_id[:-1] + "g") is None
    assert library.delete(first.swatch_id) and not library.delete(first.swatch_id)
    assert [e.name for e in library.list()] == ["Sand stone"]
    assert len(list(library.path.glob("*.jpg"))) == 1


def _submit(box, photos, **extra) -> str:
    r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _job_dir(box, job_id: str):
    return box.data_dir / "jobs" / job_id


def _origin(box, job_id: str) -> dict:
    return json.loads((_job_dir(box, job_id) / "origin.json").read_text())


def _names(page) -> list[str]:
    return page.evaluate(f"[...document.querySelectorAll('{tid('swatch-name')}')].map(i => i.value)")


def _new_job(page, old: str) -> str:
    page.wait_for_url(lambda url: "/jobs/" in url and old not in url)
    page.locator(tid("job-status")).get_by_text("Completed").wait_for(timeout=40_000)
    return page.url.rsplit("/", 1)[-1]


def test_try_another_material_keeps_the_photo_and_compares_variants(box, photos, page, shared_dir):
    box.drain()
    first = _submit(box, photos)
    assert box.wait(first)["status"] == "completed"
    page.goto(f"{box.base}/jobs/{first}")
    page.locator(tid("try-material")).click()
    page.wait_for_url(f"{box.base}/jobs/{first}/material")
    assert "library is empty" in page.locator(tid("library-picks")).inner_text()
    # A new swatch, uploaded here: it joins the library and is the material of the variant.
    drop_file(page, tid("upload-variant-swatch"), _bytes(shared_dir, OTHER_SWATCH), "sand-stone.jpg", "image/jpeg")
    page.locator(tid("variant-choice")).get_by_text("sand-stone").wait_for()
    shot(page, "variant-material-picker")
    page.locator(tid("render-variant")).click()
    stone = _new_job(page, first)
    store = JobStore(box.data_dir / "jobs.db")
    parent, job = store.get(first), store.get(stone)
    assert job.image_url == "upload:photo.jpg" and job.texture_url == "upload:swatch.jpg"
    assert _origin(box, stone) == {"kind": "variant", "parent": first}
    assert os.path.samefile(_job_dir(box, stone) / "photo.jpg", _job_dir(box, first) / "photo.jpg")  # not re-sent
    assert (_job_dir(box, stone) / "swatch.jpg").read_bytes() == _bytes(shared_dir, OTHER_SWATCH)
    assert job.options == parent.options and job.mask_url is None
    assert "Variant of" in page.content()
    # A paint colour, from the variant: same photo again.
    page.locator(tid("try-material")).click()
    page.locator(tid("variant-colour")).fill("#6B7B8G")
    page.locator(tid("variant-error")).get_by_text("not a paint colour").wait_for()
    assert page.locator(tid("render-variant")).is_disabled()
    page.locator(tid("variant-colour")).fill("#6b7b8c")
    page.locator(tid("variant-choice")).get_by_text("Paint colour #6B7B8C").wait_for()
    page.locator(tid("render-variant")).click()
    paint = _new_job(page, stone)
    assert store.get(paint).texture_url == "#6B7B8C" and store.get(paint).image_url == "upload:photo.jpg"
    # The job page: the photo's three renders, each with its material; this one compared with another.
    tiles = page.locator(f"{tid('variants')} {tid('variant')}")
    tiles.nth(2).wait_for()
    assert tiles.count() == 3
    texts = [tiles.nth(i).inner_text() for i in range(3)]
    assert SWATCH.rsplit("/", 1)[-1] in texts[0] and "swatch.jpg" in texts[1] and "#6B7B8C" in texts[2], texts
    compare = page.locator(tid("variant-compare"))
    compare.wait_for()
    assert compare.locator(".ba-tag-before").inner_text() == "paint #6B7B8C"
    page.wait_for_function("[...document.querySelectorAll('[data-testid=\"variant-compare\"] img')].every("
                           "i => i.complete && i.naturalWidth > 0)")
    shot(page, "job-variants", full_page=True)
    tiles.nth(0).click()  # any two: now the stone variant and the first render
    page.wait_for_function("document.querySelector('[data-testid=\"variant-compare\"] .ba-tag-before').innerText"
                           " === 'swatch.jpg'")
    assert SWATCH.rsplit("/", 1)[-1] == compare.locator(".ba-tag-after").inner_text()


def test_a_variant_keeps_the_corrected_mask(box, photos, page):
    job_id = _submit(box, photos)
    assert box.wait(job_id)["status"] == "completed"
    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[h // 3: h // 2, w // 4: 3 * w // 4] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    r = box.http.post(f"/console/jobs/{job_id}/mask", content=buffer.getvalue())
    assert r.status_code == 201, r.text
    fixed = r.json()["job_id"]
    assert box.wait(fixed)["status"] == "completed"
    page.goto(f"{box.base}/jobs/{fixed}/material")
    page.locator(".swatch-dot").first.click()
    page.locator(tid("render-variant")).click()
    variant = _new_job(page, fixed)
    job = JobStore(box.data_dir / "jobs.db").get(variant)
    assert job.mask_url == "upload:mask-input.png" and job.backends["segment"] == "client-mask"
    assert (_job_dir(box, variant) / "mask-input.png").read_bytes() == buffer.getvalue()
    kept = np.asarray(Image.open(_job_dir(box, variant) / "mask.png"))
    assert kept[int(h * 0.4), w // 2] == 255 and kept[int(h * 0.8), w // 2] == 0
    # Another surface only: the roof in a colour; the walls keep their material and the corrected mask.
    page.locator(tid("try-material")).click()
    page.locator(tid("variant-surface")).get_by_text("Roof").click()
    page.locator(".swatch-dot").nth(7).click()
    page.locator(tid("variant-choice")).get_by_text("Roof →").wait_for()
    page.locator(tid("render-variant")).click()
    roof = _new_job(page, variant)
    walls, roofed = JobStore(box.data_dir / "jobs.db").get(variant), JobStore(box.data_dir / "jobs.db").get(roof)
    assert roofed.texture_url == walls.texture_url and roofed.mask_url == "upload:mask-input.png"
    assert [(e["surface"], e["texture_url"]) for e in roofed.surfaces] == [("roof", "#2F2F33")]
    page.locator(f"{tid('variant')}[data-job='{roof}']").get_by_text("Roof #2F2F33").wait_for()


def test_swatch_library_page(box, photos, page, shared_dir):
    page.goto(box.base + "/swatches")
    cards = page.locator(tid("swatch-card"))
    cards.first.wait_for()
    before = cards.count()  # the swatch uploaded for a variant in the test above
    assert "sand-stone" in _names(page)
    page.locator(tid("new-swatch-name")).fill("Red clay brick")
    page.locator(tid("new-swatch-width")).fill("0.6")
    drop_file(page, tid("upload-library"), _bytes(shared_dir, "textures/brick_red_small_sh3d_smallRedBricks.jpg"),
              "red.jpg", "image/jpeg")
    page.locator(f"{tid('swatch-card')}:has-text('0.6 m wide')").wait_for()
    assert cards.count() == before + 1
    drop_file(page, tid("upload-library"), b"not an image at all", "notes.jpg", "image/jpeg")
    page.locator(tid("library-error")).get_by_text("not a PNG, JPEG").wait_for()
    # The API jobs' swatch, kept from the recent jobs.
    page.locator(tid("import-recent")).click()
    page.locator(".q-notification").get_by_text("1 swatch(es) added").wait_for()
    page.wait_for_function(f"[...document.querySelectorAll('{tid('swatch-name')}')].some(i => i.value === "
                           f"'{SWATCH.rsplit('/', 1)[-1][:-4]}')")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "swatches")
    # Use it: a test render starts with it (and its real width).
    red = page.locator(f"{tid('swatch-card')}:has-text('0.6 m wide')")
    red.locator(tid("use-swatch")).click()
    page.wait_for_url(lambda url: "/test-render?swatch=" in url)
    page.locator(tid("file-swatch")).get_by_text("Red clay brick").wait_for()
    assert page.locator(f"{tid('swatch-width')}").input_value() == "0.6"
    # Delete (confirmed).
    page.goto(box.base + "/swatches")
    red = page.locator(f"{tid('swatch-card')}:has-text('0.6 m wide')")
    red.locator(tid("delete-swatch")).click()
    page.locator(tid("confirm-yes")).click()
    red.wait_for(state="detached")
    assert cards.count() == before + 1  # the brick from the recent jobs stays


def _service_ctx(tmp_path):
    from appliance.config import Settings
    from appliance.context import AppContext
    from appliance.queue import RenderQueue
    from appliance.service import JobService
    from appliance.storage.local import LocalStorage

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    ctx = AppContext(settings=settings, store=store, queue=queue,
                     storage=LocalStorage(settings.results_dir, "http://box"))
    return ctx, JobService(settings, store, queue)


def test_variant_changes_only_the_materials_it_names(tmp_path, shared_dir):
    from appliance.refs import InputRef
    from ui import jobfiles

    ctx, service = _service_ctx(tmp_path)
    job_id = jobfiles.new_job_id()
    photo, _ = jobfiles.store_upload(ctx.settings, job_id, "photo", _bytes(shared_dir, SMALL_HOUSE))
    swatch, _ = jobfiles.store_upload(ctx.settings, job_id, "swatch", _bytes(shared_dir, SWATCH))
    job = jobfiles.submit(ctx, job_id, photo=photo, texture=swatch, options={"real_world_scale": 12,
                                                                             "swatch_width_m": 0.5})
    # The wall in a paint colour, the roof given one: photo and options carried, the swatch width dropped.
    made = service.variant(job, {"wall": InputRef.parse("#112233"), "roof": InputRef.parse("#445566")},
                           options={"swatch_width_m": None})
    assert made.texture_url == "#112233" and made.image_url == "upload:photo.jpg"
    assert made.options["real_world_scale"] == 12 and made.options["swatch_width_m"] is None
    assert [(s["surface"], s["texture_url"]) for s in made.surfaces] == [("roof", "#445566")]
    # From that variant: only the roof changes; the wall keeps its colour.
    again = service.variant(made, {"roof": InputRef.parse("#778899")})
    assert again.texture_url == "#112233" and [s["texture_url"] for s in again.surfaces] == ["#778899"]
    with_error = None
    try:
        service.variant(made, {"windows": InputRef.parse("#000000")})
    except ValueError as exc:
        with_error = str(exc)
    assert with_error and "windows" in with_error
    family = [j.job_id for j in jobfiles.family(ctx, again.job_id)]
    assert family == [job.job_id, made.job_id, again.job_id]


def test_bulk_retry_skips_canceled_and_already_retried_and_cancel_all_counts(tmp_path):
    from appliance.jobs import FAILED

    ctx, service = _service_ctx(tmp_path)
    store = ctx.store

    def job(colour: str):
        from appliance.service import JobSpec
        from appliance.refs import InputRef

        return service.submit(JobSpec(image=InputRef.parse("http://photos.example/h.jpg"),
                                      texture=InputRef.parse(colour)))[0]

    broken, canceled, waiting = job("#111111"), job("#222222"), job("#333333")
    owner = "test/1"
    assert store.claim(broken.job_id, owner, 30) and store.fail(broken.job_id, owner, "download_failed", "404")
    service.cancel(canceled.job_id)
    first = service.retry_failed()
    assert len(first.made) == 1 and store.get(first.made[0]).texture_url == "#111111"
    assert service.retry_failed().made == []  # retried once already; the canceled job is left alone
    assert store.get(broken.job_id).status == FAILED
    assert service.cancel_queued() == 2  # the waiting job and the retry
    assert store.get(waiting.job_id).error_code == "canceled" and not store.queued_ids()
