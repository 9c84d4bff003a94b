"""The console's surfaces in a real browser (Debian chromium via Playwright) against a real `render-appliance serve`:
the test-render page picks a material per surface, the job page shows each surface's mask and material, "Change
surfaces" makes a job with another set of surfaces from the kept photo, and a surface's mask can be fixed (the route,
and the mask editor's surface tabs)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from appliance.jobs import JobStore
from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH, Appliance, free_port, photo_server, write_config

from console_fixtures import browser, drop_file, page, shot, stroke, tid  # noqa: F401 (fixtures; own box)

ROOF = "textures/roof_slates_polyhaven_roof_slates_02.png"


@pytest.fixture(scope="module")
def box(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("console-surfaces")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "fetch": {"allow_networks": ["127.0.0.1"]},
    })
    svc = Appliance(config, port, tmp / "server.log").start()
    svc.data_dir = tmp / "data"
    yield svc
    svc.close()


def _store(box) -> JobStore:
    return JobStore(box.data_dir / "jobs.db")


def _wait_done(box, job_id: str, timeout: float = 90):
    job = box.wait(job_id, timeout=timeout)
    assert job["status"] == "completed", job
    return job


def _pick(page, surface: str, mode: str) -> None:
    page.locator(tid(f"mode-{surface}")).get_by_text(mode, exact=True).click()


def test_surfaces_from_test_render_to_job_page_and_back(box, page, shared_dir):
    data = shared_dir / "data"
    page.goto(box.base + "/test-render")
    drop_file(page, tid("upload-photo"), (data / SMALL_HOUSE).read_bytes(), "house.jpg", "image/jpeg")
    page.locator(tid("file-photo")).get_by_text("640×427").wait_for()
    drop_file(page, tid("upload-swatch"), (data / SWATCH).read_bytes(), "bricks.jpg", "image/jpeg")
    page.locator(tid("file-swatch")).get_by_text("bricks.jpg").wait_for()
    _pick(page, "roof", "Swatch")
    page.locator(f"{tid('submit')}:disabled").wait_for()  # a swatch surface without its swatch is not ready
    drop_file(page, tid("upload-swatch-roof"), (data / ROOF).read_bytes(), "slate.png", "image/png")
    page.locator(tid("file-swatch-roof")).get_by_text("slate.png").wait_for()
    page.locator(f"{tid('submit')}:enabled").wait_for()
    _pick(page, "trim", "Colour")
    _pick(page, "door", "Colour")
    page.locator(tid("colour-door")).fill("#1030A0")
    shot(page, "test-render-surfaces", full_page=True)
    page.locator(tid("submit")).click()
    page.locator(tid("open-job")).wait_for()
    job = _store(box).list_jobs(limit=1)[0]
    assert [(e["surface"], e["texture_url"]) for e in job.surfaces] == [
        ("roof", "upload:swatch-roof.png"), ("trim", "#F4F1EA"), ("door", "#1030A0")]
    done = _wait_done(box, job.job_id)
    assert "wall" in done["painted"]

    # The job page: one tile per surface, with its material and (when painted) its mask over the photo.
    page.goto(f"{box.base}/jobs/{job.job_id}")
    page.locator(tid("surfaces")).wait_for()
    for name in ("roof", "trim", "door"):
        tile = page.locator(tid(f"surface-{name}"))
        assert tile.is_visible()
        text = tile.inner_text()
        if name in done["painted"]:
            assert f"{done['painted'][name]['pixels']:,} px" in text
            assert tile.locator("img.stack-top").count() == 1
        else:
            assert "not found in the photo" in text
    assert page.locator(f"{tid('surface-roof')} img[alt='roof swatch']").count() == 1
    assert "#1030A0" in page.locator(tid("surface-door")).inner_text()
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "job-surfaces", full_page=True)

    # Change surfaces: the same photo and wall, the roof as before, no trim, a red door.
    page.locator(tid("change-surfaces")).click()
    page.wait_for_url(f"**/test-render?from={job.job_id}")
    page.locator(tid("from-job")).wait_for()
    assert not page.locator(tid("upload-photo")).is_visible()
    for name in ("roof", "trim", "door"):  # the job's own surfaces start as they were
        pressed = page.locator(tid(f"mode-{name}")).get_by_text("As before", exact=True).locator("xpath=ancestor::button")
        assert pressed.get_attribute("aria-pressed") == "true", name
    assert page.locator(tid("mode-garage_door")).get_by_text("As before").count() == 0
    _pick(page, "trim", "Photo's own")
    _pick(page, "door", "Colour")
    page.locator(tid("colour-door")).fill("#A01818")
    shot(page, "test-render-change-surfaces", full_page=True)
    page.locator(tid("submit")).click()
    page.locator(tid("summary")).wait_for()
    derived = _store(box).list_jobs(limit=1)[0]
    assert derived.job_id != job.job_id
    assert derived.image_url == "upload:photo.jpg" and derived.texture_url == "upload:swatch.jpg"
    assert [(e["surface"], e["texture_url"]) for e in derived.surfaces] == [
        ("roof", "upload:swatch-roof.png"), ("door", "#A01818")]
    folder = box.data_dir / "jobs" / derived.job_id
    assert (folder / "photo.jpg").stat().st_ino == (box.data_dir / "jobs" / job.job_id / "photo.jpg").stat().st_ino
    assert '"surfaces"' in (folder / "origin.json").read_text()
    again = _wait_done(box, derived.job_id)
    assert "trim" not in again["painted"]


def test_a_surface_mask_can_be_fixed(box, shared_dir, tmp_path):
    """POST /console/jobs/{id}/mask?surface=door: a new job whose door mask is the given one (the wall's stays)."""
    with photo_server(shared_dir / "data", tmp_path) as photos:
        r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                        "surfaces": [{"surface": "door", "texture_url": "#A01818"}]})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        _wait_done(box, job_id)
    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[250:400, 280:360] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    bad = httpx.post(f"{box.base}/console/jobs/{job_id}/mask?surface=garage_door", content=buffer.getvalue(),
                     trust_env=False)
    assert bad.status_code == 400 and "no garage_door surface" in bad.json()["message"]
    r = httpx.post(f"{box.base}/console/jobs/{job_id}/mask?surface=door", content=buffer.getvalue(),
                   trust_env=False)
    assert r.status_code == 201, r.text
    store = _store(box)
    try:
        old, new = store.get(job_id), store.get(r.json()["job_id"])
    finally:
        store.close()
    door = next(e for e in new.surfaces if e["surface"] == "door")
    assert door["mask_url"] == "upload:mask-input-door.png" and new.mask_url == old.mask_url is None
    assert new.image_url == "upload:photo.jpg"  # the photo the first job kept, not downloaded again
    done = _wait_done(box, new.job_id)  # the photo server is gone: nothing could be downloaded
    assert done["painted"]["door"]["pixels"] == int((mask > 0).sum()) and done["painted"]["door"]["mask"] == "client"


def _mask(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) >= 128


def _selected(page, surface: str) -> bool:
    return page.locator(tid(f"surface-tab-{surface}")).get_attribute("aria-selected") == "true"


def test_the_mask_editor_fixes_any_surface(box, page, shared_dir, tmp_path):
    """Wall + roof job: the editor opens on the wall, a tab switches to the roof (edits not rendered yet are
    confirmed away first), and the re-render replaces the roof's mask only. A surface the job lacks is explained."""
    with photo_server(shared_dir / "data", tmp_path) as photos:
        r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                        "surfaces": [{"surface": "roof", "texture_url": "#4A4A4F"}]})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        done = _wait_done(box, job_id)
    assert "roof" in done["painted"], done["painted"]
    old = box.data_dir / "jobs" / job_id
    wall_before, roof_before = _mask(old / "mask.png"), _mask(old / "mask-roof.png")
    assert (old / "part-roof.png").is_file()
    key = job_id[:8]
    painted = lambda: page.evaluate(f"RenderConsole.editors['{key}'].paintedFraction()")  # noqa: E731

    # The job page's roof tile links to the roof's mask.
    page.goto(f"{box.base}/jobs/{job_id}")
    assert page.locator(tid("fix-mask-roof")).get_attribute("href") == f"/jobs/{job_id}/mask?surface=roof"

    # The editor opens on the wall's mask; an edit there, then the roof tab: asked first, "keep editing" stays.
    page.goto(f"{box.base}/jobs/{job_id}/mask")
    editor = page.locator(f"{tid('mask-editor')}[data-ready='1']")
    editor.wait_for()
    assert _selected(page, "wall") and not _selected(page, "roof")
    assert abs(painted() - wall_before.mean()) < 1e-4
    assert not page.evaluate(f"RenderConsole.editors['{key}'].changed()")
    stroke(page, editor.bounding_box(), [(0.05, 0.05), (0.2, 0.05)])
    page.locator(tid("surface-tab-roof")).click()
    page.locator(tid("confirm")).wait_for()
    page.locator(tid("confirm-no")).click()
    page.locator(tid("confirm")).wait_for(state="hidden")
    assert page.url.endswith(f"/jobs/{job_id}/mask") and _selected(page, "wall")
    page.locator(tid("surface-tab-roof")).click()
    page.locator(tid("confirm-yes")).click()
    page.wait_for_url(f"**/jobs/{job_id}/mask?surface=roof")

    # The roof's own mask is in the editor, and its house part leads the parts.
    editor.wait_for()
    assert _selected(page, "roof") and not _selected(page, "wall")
    assert "roof mask" in page.locator(".page-title").inner_text()
    assert abs(painted() - roof_before.mean()) < 1e-4
    assert page.locator(f"{tid('parts')} .part-row").first.get_attribute("data-testid") == "part-roof"
    shot(page, "mask-editor-roof")
    # Edit: a polygon over the top-left of the photo, then render with it.
    area = editor.bounding_box()
    page.locator(tid("tool")).get_by_text("Polygon").click()
    for fx, fy in ((0.05, 0.05), (0.4, 0.05), (0.4, 0.3), (0.05, 0.3), (0.05, 0.05)):
        page.mouse.click(area["x"] + fx * area["width"], area["y"] + fy * area["height"])
        page.wait_for_timeout(120)
    expected = painted()
    assert expected > roof_before.mean() + 0.05
    page.locator(tid("rerender")).click()
    page.wait_for_url(lambda u: "/jobs/" in u and job_id not in u)
    new_id = page.url.rsplit("/", 1)[-1]
    store = _store(box)
    try:
        new = store.get(new_id)
    finally:
        store.close()
    roof = next(e for e in new.surfaces if e["surface"] == "roof")
    assert roof["mask_url"] == "upload:mask-input-roof.png" and roof["texture_url"] == "#4A4A4F"
    assert new.mask_url is None and new.texture_url == "#7A8B99" and new.image_url == "upload:photo.jpg"
    given = _mask(box.data_dir / "jobs" / new_id / "mask-input-roof.png")
    assert abs(given.mean() - expected) < 0.002 and (given & ~roof_before).mean() > 0.05
    again = _wait_done(box, new_id)
    assert again["painted"]["roof"]["mask"] == "client" and again["painted"]["roof"]["pixels"] == int(given.sum())
    assert np.array_equal(_mask(box.data_dir / "jobs" / new_id / "mask.png"), wall_before)  # the wall's is kept

    # A surface this job lacks, or no surface at all: said plainly, with the masks it does have.
    page.goto(f"{box.base}/jobs/{job_id}/mask?surface=door")
    assert "no front door surface" in page.locator(tid("mask-refused")).inner_text()
    assert page.locator(tid("mask-link-roof")).get_attribute("href") == f"/jobs/{job_id}/mask?surface=roof"
    page.goto(f"{box.base}/jobs/{job_id}/mask?surface=chimney")
    text = page.locator(tid("mask-refused")).inner_text()
    assert "“chimney” is not a surface" in text and "walls, roof" in text, text
    shot(page, "mask-editor-unknown-surface")
