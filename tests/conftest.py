"""Shared fixtures: where the shared data lives, and a model folder installed the real way (`models pull --from`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared folder not found at {SHARED}; set RENDER_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, shared_dir) -> Path:
    """A model folder filled through the same installer a studio uses offline."""
    from pipeline.models import install_from

    dest = tmp_path_factory.mktemp("models")
    install_from(shared_dir / "models", dest, log=lambda _msg: None)
    return dest


# The slow tests (about two thirds of the suite's time): real browsers, processes killed and restarted, and the
# quality floors scored over shared photo sets. `pytest -m "not slow"` is the quick loop while editing; CI and
# scripts/test.sh run everything.
SLOW_MODULES = {
    # chromium (Playwright)
    "test_console", "test_console_mask", "test_console_queue", "test_console_screens", "test_console_surfaces",
    "test_console_variants", "test_docs", "test_learning", "test_react_client",
    # kill -9 and restarts of real processes
    "test_cluster", "test_metrics", "test_service_recovery", "test_webhooks",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES or "quality" in item.name:
            item.add_marker(pytest.mark.slow)
