"""Factories: settings -> the storage, the fetch policy and the pipeline that a process needs.

The HTTP process builds storage from here without importing the worker; the consumer process builds all three.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .config import Settings


def build_storage(settings: Settings):
    """SupabaseStorage when SUPABASE_URL + key are configured, else LocalStorage under data_dir/results."""
    if settings.uses_supabase:
        from .storage.supabase import SupabaseStorage

        return SupabaseStorage(settings.supabase_url, settings.supabase_key, bucket=settings.supabase_bucket,
                               signed_url_seconds=settings.supabase_signed_url_seconds,
                               retry_seconds=settings.upload_retry_seconds,
                               max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024))
    from .storage.local import LocalStorage

    return LocalStorage(settings.results_dir, settings.base_url)


def fetch_policy(settings: Settings):
    from .fetch import FetchPolicy

    return FetchPolicy(max_bytes=settings.fetch_max_bytes, connect_timeout=settings.fetch_connect_timeout,
                       read_timeout=settings.fetch_read_timeout, total_timeout=settings.fetch_total_timeout,
                       allow_networks=settings.fetch_allow_networks)


def build_pipeline(settings: Settings):
    """The configured pipeline: worker.pipeline = "module:callable" (called with the settings), by default
    pipeline.backends.from_settings (per stage: the GPU set when installed, else the embedded CPU set)."""
    module, _, name = (settings.worker_pipeline or "pipeline.backends:from_settings").partition(":")
    return getattr(importlib.import_module(module), name)(settings)


def resolve_device(settings: Settings, device: str | None) -> str | None:
    """The consumer's device: "cpu" under force_cpu, else the flag, else the config; None = auto."""
    if settings.force_cpu:
        return "cpu"
    return device or settings.worker_device


def describe_pipeline(pipeline: Any, device: str | None, threads: int) -> dict[str, Any]:
    """What the console shows of a worker: the device it renders on and the model of each stage."""
    try:
        from pipeline.backends import chosen_backends

        models = chosen_backends(pipeline)
    except Exception:  # a custom pipeline without the usual stages
        models = {}
    label = f"CPU ({threads} threads)"
    torch = sys.modules.get("torch")  # only where the models imported it
    if torch is not None and any("cuda" in name for name in models.values()):
        try:
            index = torch.device(device).index if device and device != "cuda" else None
            index = torch.cuda.current_device() if index is None else index
            label = f"{torch.cuda.get_device_name(index)} (cuda:{index})"
        except Exception:
            label = device or "cuda"
    return {"device": label, "models": models}
