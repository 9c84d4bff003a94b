"""Browser helpers for the console tests: Debian's chromium driven by Playwright, real drag and drop, screenshots."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Callable

import pytest

from needs import need_executable
from service_fixtures import ROOT, Appliance, free_port, photo_server, write_config

CHROMIUM = "/usr/bin/chromium"
DELAY = 1.2  # seconds the geometry stage pauses: long enough to see stages and to cancel a waiting job
MAX_BYTES = 2_000_000  # fetch.max_bytes on the test box: the upload limit too
ARTIFACTS = ROOT / "test-artifacts" / "console"
VIEWPORT = {"width": 1366, "height": 768}


# --- fixtures (imported by the console test modules; module scope: one appliance per module) ---------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("console-photos")) as base:
        yield base


@pytest.fixture(scope="module")
def box(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("console")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "queue": {"depth": 10},
        "fetch": {"allow_networks": ["127.0.0.1"], "max_bytes": MAX_BYTES},
        "worker": {"pipeline": "service_fixtures:slow_pipeline", "lease_seconds": 10},
    })
    svc = Appliance(config, port, tmp / "server.log", env={"RENDER_TEST_GEOMETRY_DELAY": str(DELAY)}).start()
    svc.data_dir = tmp / "data"
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def browser():
    need_executable(CHROMIUM, "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, box):
    errors: list[str] = []
    p = new_page(browser, errors)
    yield p
    p.close()
    assert not errors, errors



def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])


def new_page(browser, errors: list[str] | None = None):
    """A 1366x768 page; uncaught script errors are collected in `errors`."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(20_000)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def shot(page, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.wait_for_timeout(300)  # let CSS transitions (hover, error borders) settle
    page.screenshot(path=str(path), full_page=full_page)
    return path


def drop_file(page, uploader: str, data: bytes, name: str, mime: str) -> None:
    """Drag a file onto a drop zone the way a browser does: dragenter/dragover on the zone, drop on the overlay
    it shows, with a DataTransfer holding a File."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bin = atob(b64); const bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type: mime})); return dt;
        }""", [base64.b64encode(data).decode(), name, mime])
    zone = page.locator(uploader)
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    overlay = page.locator(f"{uploader} .q-uploader__dnd")
    overlay.wait_for(state="attached")
    overlay.dispatch_event("drop", {"dataTransfer": transfer})


def watch(page, probe: Callable[[], object], until: Callable[[], bool], timeout: float = 60,
          every: float = 0.1) -> list:
    """Sample probe() until until() holds; the distinct values seen, in order."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        if until():
            return seen
        page.wait_for_timeout(every * 1000)
    raise AssertionError(f"timed out; saw {seen}")


def stroke(page, box: dict, points: list[tuple[float, float]]) -> None:
    """A mouse drag through `points` given as fractions of the element's box."""
    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(*point), steps=8)
    page.mouse.up()
