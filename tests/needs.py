"""What a test needs from the machine (chromium, npm, playwright): missing, it is a skip on a workstation and a
failure in CI (`CI=true`), where a silent skip would hide that the browser tests never ran."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this test must run, not be skipped", pytrace=False)
    pytest.skip(reason)


def need_executable(path: str | os.PathLike, hint: str) -> None:
    if not os.access(path, os.X_OK):
        unavailable(f"{path} is missing ({hint})")
