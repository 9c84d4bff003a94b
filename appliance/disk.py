"""Free space in the data folder: checked before a job is taken and by /readyz, so the disk never fills up under
the job store (SQLite answers "database or disk is full" only once it is too late)."""

from __future__ import annotations

import shutil
from typing import Any

MB = 1024 * 1024


def free_mb(settings: Any) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(settings.data_dir).free // MB


def low_space(settings: Any) -> str | None:
    """None when the data folder has at least store.min_free_mb free, else the reason."""
    free = free_mb(settings)
    if free < settings.min_free_mb:
        return f"only {free} MB free in the data folder (store.min_free_mb = {settings.min_free_mb})"
    return None
