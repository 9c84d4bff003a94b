"""Mask correction, fast: the edge-snapping fill on its own (synthetic photo with known regions), then every tool of
the mask editor in a real browser against a real `render-appliance serve`: lasso, polygon, zoom and pan, snap,
whole house parts from the parser, one undo across all of them, and the re-render with the result."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from appliance.jobs import JobStore
from pipeline.errors import InputError
from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH

from console_fixtures import box, browser, page, photos, shot, stroke, tid  # noqa: F401


def _synthetic(h=480, w=640):
    rng = np.random.default_rng(3)
    img = rng.normal(120, 25, (h, w, 3))
    img[120:330, 180:520] = rng.normal(0, 10, (210, 340, 3)) + [185, 75, 50]  # a brick-red panel
    img[40:440, 40:110] = rng.normal(0, 10, (400, 70, 3)) + [185, 75, 50]  # the same colour, not connected
    truth = np.zeros((h, w), bool)
    truth[120:330, 180:520] = True
    return img.clip(0, 255).astype(np.uint8), truth


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_snap_grows_a_stroke_or_a_click_to_the_edges():
    from ui.mask_snap import snap_png, snap_region

    photo, truth = _synthetic()
    h, w = truth.shape
    scribble = np.zeros_like(truth)
    scribble[200:212, 220:480] = True
    yy, xx = np.ogrid[:h, :w]
    click = (yy - 230) ** 2 + (xx - 350) ** 2 < 36
    for seeds in (scribble, click):
        region = snap_region(photo, seeds)
        assert _iou(region, truth) > 0.95, _iou(region, truth)
        assert not region[:, 40:110].any()  # the same colour elsewhere is not connected: left alone
    assert not snap_region(photo, np.zeros_like(truth)).any()
    # The route's form: PNG in (alpha = stroke), PNG out (white = region); a stroke of another size is refused.
    buffer = io.BytesIO()
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[scribble] = (255, 255, 255, 255)
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    path = io.BytesIO()
    Image.fromarray(photo).save(path, "PNG")
    path.seek(0)
    out = np.asarray(Image.open(io.BytesIO(snap_png(path, buffer.getvalue()))))
    assert _iou(out >= 128, truth) > 0.95
    small = io.BytesIO()
    Image.new("L", (10, 10)).save(small, "PNG")
    path.seek(0)
    try:
        snap_png(path, small.getvalue())
    except InputError as exc:
        assert "10x10" in str(exc)
    else:
        raise AssertionError("a stroke of the wrong size was accepted")


def _coverage(page, key: str, box_: tuple[float, float, float, float]) -> float:
    """Share of painted mask pixels inside a box given as fractions of the photo."""
    return page.evaluate("""([key, b]) => { const e = RenderConsole.editors[key];
        const x = Math.round(b[0] * e.width), y = Math.round(b[1] * e.height);
        const w = Math.max(1, Math.round((b[2] - b[0]) * e.width));
        const h = Math.max(1, Math.round((b[3] - b[1]) * e.height));
        const d = e.mctx.getImageData(x, y, w, h).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) n++;
        return n / (w * h); }""", [key, list(box_)])


def _part_coverage(page, key: str, url: str) -> tuple[float, float]:
    """(painted share inside the part, the part's share of the photo)."""
    return tuple(page.evaluate("""async ([key, url]) => { const e = RenderConsole.editors[key];
        const img = await new Promise((ok, no) => { const i = new Image(); i.onload = () => ok(i); i.onerror = no;
                                                     i.src = url; });
        const c = document.createElement('canvas'); c.width = e.width; c.height = e.height;
        const t = c.getContext('2d'); t.drawImage(img, 0, 0, e.width, e.height);
        const p = t.getImageData(0, 0, e.width, e.height).data, m = e.mctx.getImageData(0, 0, e.width, e.height).data;
        let inside = 0, painted = 0;
        for (let i = 0; i < p.length; i += 4) if (p[i] >= 128) { inside++; if (m[i + 3] >= 128) painted++; }
        return [inside ? painted / inside : 0, inside / (e.width * e.height)]; }""", [key, url]))


def test_mask_editor_tools(box, photos, page):
    box.drain()
    r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}"})
    job_id = r.json()["job_id"]
    assert box.wait(job_id)["status"] == "completed"
    folder = box.data_dir / "jobs" / job_id
    parts = sorted(p.stem.removeprefix("part-") for p in folder.glob("part-*.png"))
    assert parts and "wall" not in parts, parts  # the worker keeps the parser's house parts
    for name in parts:
        assert Image.open(folder / f"part-{name}.png").size == SMALL_HOUSE_SIZE
    page.goto(f"{box.base}/jobs/{job_id}/mask")
    editor = page.locator(f"{tid('mask-editor')}[data-ready='1']")
    editor.wait_for()
    key = job_id[:8]
    area = editor.bounding_box()
    undo = lambda: int(editor.get_attribute("data-undo") or 0)  # noqa: E731

    # Lasso, erasing: an outline around the top band empties it.
    page.locator(tid("tool")).get_by_text("Lasso").click()
    page.locator(tid("brush-mode")).get_by_text("Erase").click()
    stroke(page, area, [(0.02, 0.02), (0.98, 0.02), (0.98, 0.35), (0.02, 0.35), (0.02, 0.03)])
    assert _coverage(page, key, (0.1, 0.05, 0.9, 0.3)) == 0
    # Polygon, painting: four corners, closed by clicking the first one again.
    page.locator(tid("tool")).get_by_text("Polygon").click()
    page.locator(tid("brush-mode")).get_by_text("Paint").click()
    for fx, fy in ((0.2, 0.1), (0.5, 0.1), (0.5, 0.3), (0.2, 0.3), (0.2, 0.1)):
        page.mouse.click(area["x"] + fx * area["width"], area["y"] + fy * area["height"])
        page.wait_for_timeout(120)
    assert _coverage(page, key, (0.22, 0.12, 0.48, 0.28)) > 0.99
    assert _coverage(page, key, (0.55, 0.1, 0.9, 0.3)) == 0
    shot(page, "mask-editor-polygon")
    steps = undo()
    page.locator(tid("mask-undo")).click()  # undo reaches across tools: the polygon goes, the lasso stays
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.undo === '{steps - 1}'")
    assert _coverage(page, key, (0.22, 0.12, 0.48, 0.28)) == 0

    # Zoom in (twice, about the centre), brush a dot at the centre of the view: it lands at the photo's centre.
    page.locator(tid("tool")).get_by_text("Brush").click()
    page.locator(tid("zoom-in")).click()
    page.locator(tid("zoom-in")).click()
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.zoom === '1.56'")
    page.locator(tid("brush-mode")).get_by_text("Erase").click()
    stroke(page, area, [(0.5, 0.5), (0.5, 0.5)])
    assert _coverage(page, key, (0.495, 0.495, 0.505, 0.505)) == 0
    # Pan with Space held: the view moves, the mask does not.
    before = page.evaluate(f"RenderConsole.editors['{key}'].pan.x")
    editor.focus()
    page.keyboard.down(" ")
    stroke(page, area, [(0.5, 0.5), (0.3, 0.5)])
    page.keyboard.up(" ")
    assert page.evaluate(f"RenderConsole.editors['{key}'].pan.x") < before - 50
    shot(page, "mask-editor-zoomed")
    page.locator(tid("zoom-fit")).click()
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.zoom === '1.00'")

    # Snap: a click in the sky grows to the edges there (off the event loop on the server), painted in one step.
    page.locator(tid("tool")).get_by_text("Snap").click()
    page.locator(tid("brush-mode")).get_by_text("Paint").click()
    steps = undo()
    stroke(page, area, [(0.6, 0.12), (0.6, 0.12)])
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.snaps === '1'")
    assert undo() == steps + 1 and editor.get_attribute("data-snap-error") is None
    snapped = _coverage(page, key, (0, 0, 1, 0.35))
    assert 0.02 < snapped < 0.95, snapped  # grew beyond the click, stopped at edges

    # A whole house part: out, then in, then undone.
    part = max(parts, key=lambda n: (np.asarray(Image.open(folder / f"part-{n}.png")) >= 128).mean())
    url = f"/console/files/{job_id}/part-{part}"
    page.locator(tid(f"part-{part}-erase")).click()
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.undo === '{steps + 2}'")
    inside, share = _part_coverage(page, key, url)
    assert inside == 0 and share > 0.001, (inside, share)
    page.locator(tid(f"part-{part}-paint")).click()
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.undo === '{steps + 3}'")
    assert _part_coverage(page, key, url)[0] > 0.99
    shot(page, "mask-editor-part")
    page.locator(tid("mask-undo")).click()
    page.wait_for_function(f"document.querySelector('{tid('mask-editor')}').dataset.undo === '{steps + 2}'")
    assert _part_coverage(page, key, url)[0] == 0

    # Render with it: the new job's mask is what the editor shows.
    expected = page.evaluate(f"RenderConsole.editors['{key}'].paintedFraction()")
    page.locator(tid("rerender")).click()
    page.wait_for_url(lambda u: "/jobs/" in u and job_id not in u and not u.endswith("/mask"))
    new_id = page.url.rsplit("/", 1)[-1]
    assert box.wait(new_id)["status"] == "completed"
    given = np.asarray(Image.open(box.data_dir / "jobs" / new_id / "mask-input.png").convert("L")) >= 128
    assert abs(given.mean() - expected) < 0.002
    assert JobStore(box.data_dir / "jobs.db").get(new_id).backends["segment"] == "client-mask"
    # The mask fix was rendered without the parser: its editor offers the parts of the photo's first job.
    page.goto(f"{box.base}/jobs/{new_id}/mask")
    page.locator(tid(f"part-{part}")).wait_for()
