"""/docs and /redoc work on a box without internet: their HTML names no external host, their assets come from the
appliance, and Swagger UI renders the job operations in chromium with every non-local request blocked."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from console_fixtures import CHROMIUM, launch, new_page
from needs import need_executable
from service_fixtures import Appliance, free_port, write_config

OPERATIONS = ("/render/jobs", "/render/jobs/{job_id}", "/render/jobs/{job_id}/cancel")


@pytest.fixture(scope="module")
def api(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("docs")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "worker": {"enabled": False},  # the doc pages need no worker
    })
    app = Appliance(config, port, tmp / "server.log").start(wait_ready=False)
    app.wait_alive(60)
    yield app
    app.close()


def _referenced(html: str) -> list[str]:
    """Every URL the page loads or links to (src=, href=, url: '...' in the inline script)."""
    return re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_name_no_external_host(api, page):
    r = api.http.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert not re.search(r"https?://", r.text), "the page names an external host"
    refs = [a or b for a, b in _referenced(r.text)]
    assert refs, "the page loads nothing?"
    for ref in refs:
        assert not urlsplit(ref).netloc and ref.startswith("/"), ref
        asset = api.http.get(ref)
        assert asset.status_code == 200 and asset.content, ref
    if page == "/docs":
        assert any(ref.endswith("swagger-ui-bundle.js") for ref in refs)
    else:
        assert any(ref.endswith("redoc.standalone.js") for ref in refs)


def test_swagger_ui_renders_the_operations_offline(api):
    need_executable(CHROMIUM, "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def local_only(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # the box has no internet: anything else would fail there
            refused.append(route.request.url)
            route.abort()

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = new_page(browser, errors)
            page.route("**/*", local_only)
            page.goto(f"{api.base}/docs")
            page.locator(".opblock").first.wait_for()
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert not refused, refused
    assert not errors, errors
    assert "Render appliance API" in title
    shown = {p.replace("\u200b", "").strip() for p in paths}
    for op in OPERATIONS:
        assert op in shown, (op, shown)


def test_http_error_names_are_defined_once_and_documented():
    """The API's error names live in appliance.domain.HttpError: no route spells one as its own string literal
    (a typo there would answer a name no client knows), and the README documents each."""
    import ast

    from appliance.domain import HttpError

    names = {e.value for e in HttpError}
    root = Path(__file__).resolve().parent.parent
    for module in ("appliance/api.py", "appliance/events.py"):
        tree = ast.parse((root / module).read_text())
        spelled = [(node.lineno, node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and node.value in names]
        assert not spelled, (module, spelled)
    readme = (root / "README.md").read_text()
    assert not [n for n in names if n not in readme], sorted(n for n in names if n not in readme)
