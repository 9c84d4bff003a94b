"""The studio's browser client end to end: the Vite demo page of clients/react (built here with `npm run build`,
VITE_RENDER_API_URL pointing at a real appliance) is served from its own origin and, in Debian's chromium driven by
Playwright, calls the appliance directly (no proxy): it submits a real job with renderApi.js, shows its progress
and the finished render. The same page served from an origin missing from cors_origins is refused by the browser.

Needs npm (installs clients/react's lock file with `npm ci` when node_modules is missing) and chromium
(/usr/bin/chromium, or $CHROMIUM); skipped with the reason when either is missing. The Node tests of the client
itself run with `(cd clients/react && npm ci && npm test)`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from needs import need_executable, unavailable
from service_fixtures import (
    SMALL_HOUSE,
    SMALL_HOUSE_SIZE,
    SWATCH,
    Appliance,
    static_server,
    free_port,
    photo_server,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "react"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
GEOMETRY_DELAY = 1.0  # seconds: the page gets to show a few progress steps



def _npm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    done = subprocess.run(["npm", *args], check=False, cwd=CLIENT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_dir, model_dir):
    """The page's two origins, the appliance (allowing only the first), and the photo server."""
    if shutil.which("npm") is None:
        unavailable("npm is not installed (needed to build clients/react/demo)")
    need_executable(CHROMIUM, "set $CHROMIUM")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright (python) is not installed")
    tmp = tmp_path_factory.mktemp("react")
    dist = tmp / "dist"
    dist.mkdir()
    with contextlib.ExitStack() as stack:
        allowed = stack.enter_context(static_server(dist))
        refused = stack.enter_context(static_server(dist))
        photos = stack.enter_context(photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")))
        port = free_port()
        api = f"http://127.0.0.1:{port}"

        if not (CLIENT / "node_modules" / ".package-lock.json").exists():
            _npm("ci", "--no-audit", "--no-fund")
        _npm("run", "build", "--", "--outDir", str(dist), env={"VITE_RENDER_API_URL": api})
        assert (dist / "index.html").exists()

        config = write_config(tmp / "config.toml", {
            "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
            "server": {"port": port, "cors_origins": [allowed]},
            "queue": {"depth": 3},
            "fetch": {"allow_networks": ["127.0.0.1"]},
            "worker": {"pipeline": "service_fixtures:slow_pipeline", "lease_seconds": 10},
        })
        app = Appliance(config, port, tmp / "server.log", env={"RENDER_TEST_GEOMETRY_DELAY": str(GEOMETRY_DELAY),
                                                                   # each stage outlasts an event stream's 200 ms read
                                                                   "RENDER_TEST_STAGE_PAUSE": "0.4"})
        stack.callback(app.close)
        app.start()
        yield {"allowed": allowed, "refused": refused, "photos": photos, "app": app, "api": api,
               "jobs_db": tmp / "data" / "jobs.db"}


@pytest.fixture(scope="module")
def browser(setup):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()


def _open(browser, origin: str, setup: dict):
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.goto(f"{origin}/index.html?image={setup['photos']}/{SMALL_HOUSE}&texture={setup['photos']}/{SWATCH}")
    assert page.locator("#api").inner_text() == setup["api"]  # VITE_RENDER_API_URL, baked in by the build
    return page, console


def _job_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0]


def test_page_on_an_allowed_origin_renders_and_shows_progress(setup, browser):
    page, console = _open(browser, setup["allowed"], setup)
    page.click("#render")
    page.wait_for_selector("#status[data-state=completed], #status[data-state=failed]", timeout=60000)
    assert page.locator("#status").get_attribute("data-state") == "completed", (
        page.locator("#error").inner_text(), console, setup["app"].log_tail())
    events = page.locator("#events li").all_inner_texts()
    stages = [e.split()[0] for e in events if not e.startswith(("job ", "retry"))]
    assert "geometry" in stages and stages[-1] == "completed", events
    assert len(set(stages)) >= 3, events  # e.g. queued/segment, geometry, completed: progress was shown
    assert page.locator("#progress").evaluate("el => el.value") == 1
    src = page.locator("#result").get_attribute("src")
    assert src.startswith(f"{setup['api']}/results/renders/"), src
    size = page.locator("#result").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert tuple(size) == SMALL_HOUSE_SIZE
    page.close()


def test_page_shows_stage_words_and_says_clearly_when_the_user_cancels(setup, browser):
    page, _ = _open(browser, setup["allowed"], setup)
    page.click("#render")
    page.wait_for_selector("#stage[data-stage=geometry]", timeout=60000)
    assert page.locator("#stage").inner_text() == "Measuring the walls"  # words, not the API's stage names
    job_id = page.locator("#events li").first.inner_text().split()[-1]
    page.click("#cancel")
    page.wait_for_selector("#status[data-state=canceled]", timeout=10000)
    assert page.locator("#stage").inner_text() == "Canceled"
    notice = page.locator("#error")
    assert notice.get_attribute("data-kind") == "notice" and notice.get_attribute("data-code") == "canceled"
    assert "Render canceled" in notice.inner_text() and "aborted" not in notice.inner_text()
    assert page.locator("#result").is_hidden() and page.locator("#render").is_enabled()
    job = setup["app"].wait(job_id)  # the appliance stopped it too
    assert job["status"] == "failed" and job["error_code"] == "canceled", job
    page.close()


def test_same_page_on_another_origin_is_refused_by_cors(setup, browser):
    before = _job_count(setup["jobs_db"])
    page, console = _open(browser, setup["refused"], setup)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.click("#render")
    page.wait_for_selector("#status[data-state=failed]", timeout=30000)
    assert page.locator("#error").get_attribute("data-code") == "network_error"
    assert "cors_origins" in page.locator("#error").inner_text()
    assert any("CORS policy" in line for line in console), console
    assert any(url.endswith("/render/jobs") for url in failed), failed
    assert page.locator("#result").is_hidden()
    assert _job_count(setup["jobs_db"]) == before  # the preflight was refused: no job was ever created
    page.close()
