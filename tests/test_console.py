"""The operator console in a real browser (Debian chromium via Playwright) against a real `render-appliance serve`
(subprocess, real consumer, SQLite files, the embedded pipeline with a slowed geometry stage so that stages can be
watched). Screenshots of every page go to test-artifacts/console/. Plus unit tests of the upload path (no browser).
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from appliance.jobs import COMPLETED, FAILED, JobStore
from appliance.refs import UPLOAD_PREFIX as UPLOAD_REF, upload_name
from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH, Appliance, free_port, write_config

from console_fixtures import (MAX_BYTES, box, browser, drop_file, launch, new_page, page, photos, shot,  # noqa: F401
                             stroke, tid, watch)


# --- unit tests of the upload path (no server, no browser) ----------------------------------------------------

def _ctx(tmp_path: Path):
    from appliance.config import Settings
    from appliance.context import AppContext
    from appliance.queue import RenderQueue
    from appliance.storage.local import LocalStorage

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", retention_hours=1.0)
    return AppContext(settings=settings, store=JobStore(settings.jobs_db), queue=RenderQueue(settings.queue_db),
                      storage=LocalStorage(settings.results_dir, "http://box"))


def _png(size: tuple[int, int], colour=(200, 180, 160), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_upload_reference_is_internal_only():
    from appliance.schemas import validate_request

    for ref in ("upload:photo.png", "upload:../jobs.db", "file:///etc/passwd"):
        _, problems = validate_request({"image_url": ref, "texture_url": ref, "mask_url": ref})
        assert {"image_url", "texture_url", "mask_url"} <= set(problems), (ref, problems)
    assert upload_name("upload:photo.png") == "photo.png"
    for bad in ("upload:../x.png", "upload:a/b.png", "upload:.hidden", "upload:", "http://x/upload:a.png", None):
        assert upload_name(bad) is None, bad


def test_uploaded_inputs_are_checked_kept_and_read_from_disk(tmp_path, shared_dir):
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry
    from ui import jobfiles

    ctx = _ctx(tmp_path)
    settings = ctx.settings
    job_id = jobfiles.new_job_id()
    # Refused the way the render refuses them, with the pipeline's words.
    with pytest.raises(jobfiles.UploadRejected, match="not a PNG, JPEG"):
        jobfiles.store_upload(settings, job_id, "photo", b"hello, not an image")
    with pytest.raises(jobfiles.UploadRejected, match="too small"):
        jobfiles.store_upload(settings, job_id, "photo", _png((120, 80)))
    with pytest.raises(jobfiles.UploadRejected, match="over the limit"):
        jobfiles.store_upload(settings.with_overrides(fetch_max_bytes=1024), job_id, "photo",
                              (shared_dir / "data" / SMALL_HOUSE).read_bytes())
    photo, info = jobfiles.store_upload(settings, job_id, "photo", (shared_dir / "data" / SMALL_HOUSE).read_bytes())
    swatch, _ = jobfiles.store_upload(settings, job_id, "swatch", (shared_dir / "data" / SWATCH).read_bytes())
    assert photo == "upload:photo.jpg" and swatch == "upload:swatch.jpg" and (info["width"], info["height"]) == \
        SMALL_HOUSE_SIZE
    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[120:300, 80:560] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    (settings.job_dir(job_id) / "mask-input.png").write_bytes(buffer.getvalue())

    job = jobfiles.submit(ctx, job_id, photo=photo, texture=swatch, mask=UPLOAD_REF + "mask-input.png",
                          options={"real_world_scale": 12}, made_from={"kind": "test render"})
    assert job.image_url == "upload:photo.jpg" and ctx.queue.pending_job_ids() == {job_id}
    worker = Worker(settings, ctx.store, ctx.queue, ctx.storage, Pipeline(None, LineGeometry()))
    worker.process(job_id)  # no HTTP anywhere: the worker reads the job's folder
    done = ctx.store.get(job_id)
    assert done.status == COMPLETED, done
    assert done.backends["segment"] == "client-mask"
    kept = Image.open(settings.job_dir(job_id) / "mask.png")
    assert kept.size == (w, h) and np.asarray(kept)[200, 300] == 255 and np.asarray(kept)[10, 10] == 0

    # Retry: a new job with the same inputs, linked into its own folder.
    again = ctx.service.retry(done)
    assert again.image_url == "upload:photo.jpg" and again.mask_url == "upload:mask-input.png"
    assert (settings.job_dir(again.job_id) / "photo.jpg").read_bytes() == \
        (settings.job_dir(job_id) / "photo.jpg").read_bytes()
    assert jobfiles.origin(settings, again.job_id) == {"kind": "retry", "parent": job_id}

    # A missing upload fails the job clearly (download_failed), never reaching for the network.
    (settings.job_dir(again.job_id) / "photo.jpg").unlink()
    worker.process(again.job_id)
    lost = ctx.store.get(again.job_id)
    assert lost.status == FAILED and lost.error_code == "download_failed" and "photo.jpg" in lost.error_message

    # Retention prunes the job folders with the jobs, and folders that never became a job.
    orphan = settings.job_dir(jobfiles.new_job_id())
    orphan.mkdir(parents=True)
    assert worker.prune(now=time.time() + 2 * 3600) == 2
    assert not settings.job_dir(job_id).exists() and not settings.job_dir(again.job_id).exists()
    assert not orphan.exists()


# --- the appliance and the browser ----------------------------------------------------------------------------

def _submit(box, photos, **extra) -> str:
    r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _store(box) -> JobStore:
    return JobStore(box.data_dir / "jobs.db")


def _shared(shared_dir: Path, name: str) -> bytes:
    return (shared_dir / "data" / name).read_bytes()


def test_queue_page_is_live(box, photos, page):
    box.drain()
    first, second = _submit(box, photos), _submit(box, photos, texture_url="#6B7B8C")
    page.goto(box.base + "/")
    page.locator(tid("now-stage")).wait_for()  # the running job: stage, bar, elapsed
    rows = page.locator(f"{tid('jobs')} tbody tr")
    assert page.locator(tid("jobs")).get_by_text(first[:8]).count() == 1
    assert page.locator(tid("worker-state")).inner_text() == "Ready"
    assert "CPU" in page.locator(tid("worker")).inner_text()
    assert "slots in use" in page.locator(tid("depth")).inner_text()
    page.wait_for_function("document.querySelector('[data-testid=\"jobs\"]').innerText.includes('in line') || "
                           "document.querySelectorAll('[data-testid=\"jobs\"] .chip-running').length > 0")
    shot(page, "queue-live")
    # Without a reload, both end up completed.
    page.locator(f"{tid('jobs')} tbody tr:has-text('{second[:8]}') .chip-completed").wait_for(timeout=30_000)
    page.locator(f"{tid('jobs')} tbody tr:has-text('{first[:8]}') .chip-completed").wait_for()
    page.locator(tid("filter-completed")).click()
    page.wait_for_function("!document.querySelector('[data-testid=\"jobs\"]').innerText.includes('Waiting')")
    assert rows.count() >= 2
    assert "Completed" in page.locator(tid("filter-completed")).inner_text()
    shot(page, "queue-completed-filter")


def test_test_render_drag_and_drop_follows_the_job(box, page, shared_dir):
    page.goto(box.base + "/test-render")
    shot(page, "test-render-empty")
    drop_file(page, tid("upload-photo"), _shared(shared_dir, SMALL_HOUSE), "house.jpg", "image/jpeg")
    page.locator(tid("file-photo")).get_by_text("640×427").wait_for()
    drop_file(page, tid("upload-swatch"), _shared(shared_dir, SWATCH), "bricks.jpg", "image/jpeg")
    page.locator(tid("file-swatch")).get_by_text("bricks.jpg").wait_for()
    shot(page, "test-render-ready")
    page.locator(tid("submit")).click()
    page.locator(tid("stage-track")).wait_for()
    stages = watch(page, lambda: page.evaluate(
        "(document.querySelector('[data-testid=\"stage-track\"] .step-now') || {dataset: {}}).dataset.stage || null"),
        until=lambda: page.locator(tid("compare")).count() > 0, timeout=60)
    order = ["queued", "downloading", "segment", "geometry", "project", "uploading"]
    assert "geometry" in stages and len(stages) >= 2 and stages == sorted(stages, key=order.index), stages
    page.locator(f"{tid('compare')} img.ba-after").wait_for()
    page.wait_for_function("document.querySelector('.ba-after').complete && "
                           "document.querySelector('.ba-after').naturalWidth > 0")
    # The operator who looked away is told: a toast (and a chime where the browser allows sound).
    page.locator(".q-notification").get_by_text("Test render finished").wait_for()
    assert page.evaluate("window.__chimes") == 1
    shot(page, "test-render-done")
    # The before/after slider follows a drag.
    slider = page.locator(".ba-slider")
    slider.scroll_into_view_if_needed()
    box_ = slider.bounding_box()
    stroke(page, box_, [(0.5, 0.5), (0.2, 0.5)])
    assert 15 <= float(slider.get_attribute("aria-valuenow")) <= 25
    # Stored through the same job path: inputs are internal references read from disk.
    job = _store(box).list_jobs(limit=1)[0]
    assert job.status == COMPLETED and job.image_url == "upload:photo.jpg" and job.texture_url == "upload:swatch.jpg"


def test_test_render_refuses_bad_files_clearly(box, page, shared_dir):
    page.goto(box.base + "/test-render")
    drop_file(page, tid("upload-photo"), b"just some notes, not a picture", "notes.txt", "text/plain")
    page.locator(tid("error-photo")).get_by_text("not a PNG, JPEG").wait_for()
    drop_file(page, tid("upload-photo"), _png((120, 80)), "tiny.png", "image/png")
    page.locator(tid("error-photo")).get_by_text("too small").wait_for()
    drop_file(page, tid("upload-swatch"), b"\xff\xd8\xff" + bytes(MAX_BYTES + 10), "huge.jpg", "image/jpeg")
    page.locator(tid("error-swatch")).get_by_text("over the limit of 2 MB").wait_for()
    assert page.locator(tid("submit")).is_disabled()
    shot(page, "test-render-errors")
    # A paint colour instead of a swatch.
    drop_file(page, tid("upload-photo"), _shared(shared_dir, SMALL_HOUSE), "house.jpg", "image/jpeg")
    page.locator(tid("file-photo")).get_by_text("house.jpg").wait_for()
    page.get_by_text("Paint colour", exact=True).first.click()
    assert page.locator(tid("submit")).is_enabled()
    shot(page, "test-render-paint")


def test_failed_job_shows_its_error(box, photos, page):
    job_id = _submit(box, photos, image_url=f"{photos}/houses/no_such_house.jpg")
    assert box.wait(job_id)["status"] == "failed"
    page.goto(f"{box.base}/jobs/{job_id}")
    error = page.locator(tid("error-text"))
    error.wait_for()
    assert "HTTP 404" in error.inner_text() and "image_url" in error.inner_text()
    assert page.locator(tid("job-status")).inner_text() == "Failed"
    assert page.locator(tid("retry")).is_visible()
    shot(page, "job-failed")


def test_cancel_a_waiting_job(box, photos, page):
    box.drain()
    ahead = [_submit(box, photos, texture_url=c) for c in ("#AA3322", "#3322AA", "#2233AA")]
    waiting = _submit(box, photos, texture_url="#22AA33")
    page.goto(f"{box.base}/jobs/{ahead[0]}")  # a running job's page, live
    page.locator(tid("stage-track")).wait_for()
    try:
        page.locator(f"{tid('stage-track')} .step-now[data-stage='geometry']").wait_for(timeout=4000)
        page.wait_for_function("[...document.images].every(i => i.complete)")
        shot(page, "job-running")
    except PlaywrightTimeout:  # a slow machine: it went past the stage; the live updates are checked elsewhere
        pass
    page.goto(f"{box.base}/jobs/{waiting}")
    page.locator(tid("progress-text")).get_by_text("Waiting for the worker").wait_for()
    shot(page, "job-waiting")
    page.locator(tid("cancel")).click()
    page.locator(tid("job-status")).get_by_text("Canceled").wait_for()
    assert "canceled by request before it started" in page.locator(tid("error-text")).inner_text()
    job = box.job(waiting)
    assert job["error_code"] == "canceled" and job["started_at"] is None
    shot(page, "job-canceled")
    for job_id in ahead:
        assert box.wait(job_id)["status"] == "completed"


def test_completed_job_page_download_and_retry(box, photos, page):
    job_id = _submit(box, photos, user_id=str(uuid.uuid4()), project_id=str(uuid.uuid4()))
    assert box.wait(job_id)["status"] == "completed"
    page.goto(f"{box.base}/jobs/{job_id}")
    page.locator(tid("compare")).wait_for()
    for name in ("inputs", "timings", "options"):
        assert page.locator(tid(name)).is_visible()
    assert "Finding walls" in page.locator(tid("timings")).inner_text()
    assert "24 repeats" in page.locator(tid("options")).inner_text()
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "job-completed")
    shot(page, "job-completed-full", full_page=True)
    with page.expect_download() as download:
        page.locator(tid("download")).click()
    assert download.value.suggested_filename == f"render-{job_id[:8]}.png"
    assert Image.open(download.value.path()).size == SMALL_HOUSE_SIZE
    # Before and after side by side, for the client: the photo on the left, the render on the right.
    with page.expect_download() as download:
        page.locator(tid("download-before-after")).click()
    assert download.value.suggested_filename == f"before-after-{job_id[:8]}.png"
    sheet = np.asarray(Image.open(download.value.path()).convert("RGB")).astype(int)
    w, h = SMALL_HOUSE_SIZE
    assert sheet.shape[0] == h and 2 * w < sheet.shape[1] <= 2 * w + 20
    photo = np.asarray(Image.open(box.data_dir / "jobs" / job_id / "photo.jpg").convert("RGB")).astype(int)
    render = np.asarray(Image.open(download.value.path()).convert("RGB")).astype(int)[:, -w:]
    assert np.abs(sheet[40:, :w] - photo[40:]).mean() < 3  # left: the photo (below the label)
    assert np.abs(render[40:] - photo[40:]).mean() > 3  # right: the re-clad render, not the photo again
    # Full screen: the render over the whole window, zoomed with the buttons, the wheel and a double-click.
    page.locator(tid("fullscreen")).click()
    view = page.locator(tid("zoom-view"))
    page.wait_for_function("document.querySelector('[data-testid=\"zoom-view\"]')?.dataset.zoom === '1.00'")
    page.wait_for_timeout(400)  # the dialog's opening transition
    shot(page, "job-fullscreen")
    shown = view.locator("img").bounding_box()
    assert shown["width"] > 1300 and shown["height"] > 650, shown  # the window, less the bar
    page.locator(tid("full-zoom-in")).click()
    page.locator(tid("full-zoom-in")).click()
    page.wait_for_function("document.querySelector('[data-testid=\"zoom-view\"]').dataset.zoom === '1.56'")
    page.locator(tid("full-fit")).click()
    box_ = view.bounding_box()
    page.mouse.dblclick(box_["x"] + box_["width"] * 0.3, box_["y"] + box_["height"] * 0.5)
    page.wait_for_function("document.querySelector('[data-testid=\"zoom-view\"]').dataset.zoom === '3.00'")
    shot(page, "job-fullscreen-zoomed")
    page.locator(tid("full-which")).get_by_text("Photo").click()
    page.wait_for_function("document.querySelector('[data-testid=\"zoom-view\"] img').src.includes('/photo') && "
                           "document.querySelector('[data-testid=\"zoom-view\"]').dataset.zoom === '1.00'")
    page.locator(tid("full-close")).click()
    view.wait_for(state="detached")
    page.locator(tid("retry")).click()
    page.wait_for_url(lambda url: "/jobs/" in url and job_id not in url)
    page.locator(tid("job-status")).get_by_text("Completed").wait_for(timeout=30_000)
    assert "Retry of" in page.content()
    new = _store(box).get(page.url.rsplit("/", 1)[-1])
    assert new.image_url == "upload:photo.jpg" and new.project_id is not None


def test_mask_fix_paints_and_rerenders(box, photos, page):
    job_id = _submit(box, photos)
    assert box.wait(job_id)["status"] == "completed"
    page.goto(f"{box.base}/jobs/{job_id}")
    page.locator(tid("fix-mask")).click()
    editor = page.locator(f"{tid('mask-editor')}[data-ready='1']")
    editor.wait_for()
    area = editor.bounding_box()
    page.locator(tid("brush-mode")).get_by_text("Erase").click()
    stroke(page, area, [(0.02, 0.1), (0.98, 0.1), (0.98, 0.3), (0.02, 0.3), (0.02, 0.5), (0.98, 0.5)])
    page.locator(tid("brush-mode")).get_by_text("Paint").click()
    stroke(page, area, [(0.1, 0.8), (0.9, 0.8), (0.9, 0.9), (0.1, 0.9)])
    page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] * 0.65)
    shot(page, "mask-editor")
    page.locator(tid("rerender")).click()
    page.wait_for_url(lambda url: "/jobs/" in url and job_id not in url and not url.endswith("/mask"))
    page.locator(tid("job-status")).get_by_text("Completed").wait_for(timeout=30_000)
    assert "Mask fix of" in page.content()
    new_id = page.url.rsplit("/", 1)[-1]
    new = _store(box).get(new_id)
    assert new.mask_url == "upload:mask-input.png" and new.backends["segment"] == "client-mask"
    mask = np.asarray(Image.open(box.data_dir / "jobs" / new_id / "mask.png"))
    h, w = mask.shape
    assert mask[int(h * 0.8), int(w * 0.5)] == 255  # painted
    assert mask[int(h * 0.3), int(w * 0.5)] == 0  # erased
    page.locator(tid("compare")).wait_for()
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "job-mask-fixed")


def test_open_console_answers_only_this_box(box):
    assert httpx.get(box.base + "/", headers={"Host": "evil.example"}, trust_env=False).status_code == 403
    assert httpx.get(box.base + "/", trust_env=False).status_code == 200
    job = _store(box).list_jobs(limit=1)[0].job_id
    r = httpx.post(f"{box.base}/console/jobs/{job}/mask", content=_png((640, 427)),
                   headers={"Origin": "http://evil.example"}, trust_env=False)
    assert r.status_code == 403


def test_password_sign_in_when_an_api_key_is_set(tmp_path, browser):
    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "paths": {"data_dir": str(tmp_path / "data")},
        "server": {"port": port, "api_key": "api-secret", "console_password": "open sesame"},
        "worker": {"enabled": False},
    })
    svc = Appliance(config, port, tmp_path / "server.log", api_key="api-secret").start(wait_ready=False)
    try:
        svc.wait_alive(60)
        anonymous = httpx.Client(base_url=svc.base, trust_env=False)
        assert anonymous.get(f"/console/files/{uuid.uuid4()}/photo").status_code == 401
        assert anonymous.post("/render/jobs", json={}).status_code == 401
        page = new_page(browser)
        page.goto(svc.base + "/test-render")
        assert "/login" in page.url
        page.locator(tid('password')).fill("wrong")
        page.locator(tid("sign-in")).click()
        page.get_by_text("not the operator password").wait_for()
        shot(page, "login")
        page.locator(tid('password')).fill("open sesame")
        page.locator(tid('password')).press("Enter")
        page.wait_for_url(svc.base + "/test-render")
        page.get_by_text("Drop the house photo here").wait_for()
        page.close()
    finally:
        svc.close()
