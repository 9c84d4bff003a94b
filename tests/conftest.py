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
