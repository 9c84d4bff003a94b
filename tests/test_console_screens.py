"""Every console page at the two screen sizes operators use (1366x768 laptops, 1920x1080 desktops), in a real
browser against a real appliance with jobs in every state: screenshots go to test-artifacts/console/screens/ to
be looked at, and each page is checked for what breaks a layout (content wider than the window, a script error,
an image that did not load)."""

from __future__ import annotations

import pytest

from service_fixtures import SMALL_HOUSE, SWATCH

from console_fixtures import ARTIFACTS, box, browser, photos  # noqa: F401

SIZES = [(1366, 768), (1920, 1080)]


@pytest.fixture(scope="module")
def jobs(box, photos):
    """A completed swatch job with a paint variant, a failed job, a canceled one."""
    def submit(**extra) -> str:
        r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra})
        assert r.status_code == 201, r.text
        return r.json()["job_id"]

    box.drain()
    done = submit(project_id="3f0c6a52-8a8e-4f59-9d7e-5d1c2b1a0e11", user_id="7d2e9b10-4c3a-4b6f-8e21-0a9c8f7b6d54")
    paint = submit(texture_url="#6B7B8C")
    failed = submit(image_url=f"{photos}/houses/no_such_house.jpg")
    for job_id in (done, paint, failed):
        box.wait(job_id)
    running = submit()
    waiting = submit(texture_url="#3E4A3D")
    assert box.http.post(f"/render/jobs/{waiting}/cancel").status_code == 200
    box.wait(running)
    return {"done": done, "paint": paint, "failed": failed, "canceled": waiting}


PAGES = [
    ("queue", "/", "[data-testid=jobs] tbody tr"),
    ("job-completed", "/jobs/{done}", "[data-testid=compare]"),
    ("job-failed", "/jobs/{failed}", "[data-testid=error-text]"),
    ("job-canceled", "/jobs/{canceled}", "[data-testid=error-text]"),
    ("mask-editor", "/jobs/{done}/mask", "[data-testid=mask-editor][data-ready='1']"),
    ("try-material", "/jobs/{done}/material", "[data-testid=render-variant]"),
    ("test-render", "/test-render", "[data-testid=upload-photo]"),
    ("swatches", "/swatches", "[data-testid=upload-library]"),
    ("learning", "/learning", ".console-page"),
    ("no-such-job", "/jobs/00000000-0000-4000-8000-000000000000", ".page-title"),
]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_page_at_both_sizes(box, browser, jobs, size):
    width, height = size
    folder = ARTIFACTS / "screens"
    folder.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        for name, path, ready in PAGES:
            page.goto(box.base + path.format(**jobs))
            page.locator(ready).first.wait_for()
            page.wait_for_timeout(600)  # the first refresh tick, images, transitions
            page.wait_for_function("[...document.images].every(i => i.complete)")
            page.screenshot(path=str(folder / f"{name}-{width}x{height}.png"))
            page.screenshot(path=str(folder / f"{name}-{width}x{height}-full.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}x{height}: {overflow} px wider than the window"
            broken = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth === 0 && "
                                   "i.style.visibility !== 'hidden').map(i => i.src)")
            assert not broken, f"{name}: images that did not load: {broken}"
        assert not errors, errors
    finally:
        page.close()
