"""The configuration's keys: for each `section.key`, the Settings attribute it sets, the parser that checks it, and
the environment variable that overrides it (SCHEMA), with the parsers themselves. A parser takes (key, raw) and
returns the typed value or raises ConfigError with a message naming the key. appliance/config.py loads the file and
the environment through this table."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Callable


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


# --- parsing helpers: each takes (key, raw) and returns the typed value or raises ConfigError naming key ---

def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


def _number(kind: type, low: float | None = None, high: float | None = None, *, optional: bool = False,
            low_open: bool = False) -> Callable[[str, Any], Any]:
    def parse(key: str, raw: Any) -> Any:
        if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off"))):
            return None
        if isinstance(raw, bool):
            raise ConfigError(f"{key}: expected a number, got {raw!r}")
        try:
            value = kind(raw) if not isinstance(raw, str) else kind(raw.strip())
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
        if kind is int and isinstance(raw, float) and raw != int(raw):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ConfigError(f"{key}: must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{key}: must be <= {high:g}, got {value!r}")
        return value
    return parse


def _text(optional: bool = False) -> Callable[[str, Any], Any]:
    def parse(key: str, raw: Any) -> Any:
        if optional and (raw is None or (isinstance(raw, str) and not raw.strip())):
            return None
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}")
        return raw.strip()
    return parse


def _path(key: str, raw: Any) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{key}: expected a folder path, got {raw!r}")
    return Path(os.path.expandvars(raw.strip())).expanduser()


def _optional_path(key: str, raw: Any) -> Path | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return _path(key, raw)


def _str_list(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):  # environment form: comma-separated
        raw = [part for part in (p.strip() for p in raw.split(",")) if part]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"{key}: expected a list of strings, got {raw!r}")
    return tuple(x.strip() for x in raw if x.strip())


def _origins(key: str, raw: Any) -> tuple[str, ...]:
    origins = _str_list(key, raw)
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{key}: '{origin}' is not an origin (write it like https://app.example.com)")
    return tuple(o.rstrip("/") for o in origins)


def _networks(key: str, raw: Any) -> tuple[str, ...]:
    nets = _str_list(key, raw)
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: '{net}' is not an IP network (write it like 10.0.0.0/8 or 127.0.0.1)") \
                from None
    return nets


def _url(optional: bool = True) -> Callable[[str, Any], Any]:
    def parse(key: str, raw: Any) -> Any:
        value = _text(optional)(key, raw)
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{key}: expected an http(s) URL, got {raw!r}")
        return value.rstrip("/")
    return parse


def _webhook_secret(key: str, raw: Any) -> str | None:
    """A Standard Webhooks secret: "whsec_" + base64 (the prefix optional), at least 24 bytes once decoded."""
    import base64
    import binascii

    value = _text(True)(key, raw)
    if value is None:
        return None
    try:
        body = value.removeprefix("whsec_")
        size = len(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))
    except (binascii.Error, ValueError):
        size = -1
    if size < 24:
        raise ConfigError(f"{key}: expected 'whsec_' + base64 of at least 24 random bytes (make one with: python -c "
                          "\"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32))"
                          ".decode())\")")
    return value


def _device(key: str, raw: Any) -> str | None:
    value = _text(True)(key, raw)
    if value is None or value == "auto":
        return None
    if value != "cpu" and not (value.startswith("cuda") and (value == "cuda" or value[5:].isdigit())):
        raise ConfigError(f"{key}: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {raw!r}")
    return value


def _factory(key: str, raw: Any) -> str | None:
    value = _text(True)(key, raw)
    if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
        raise ConfigError(f"{key}: expected 'package.module:callable', got {raw!r}")
    return value


def _service_url(*schemes: str) -> Callable[[str, Any], Any]:
    def parse(key: str, raw: Any) -> Any:
        value = _text(True)(key, raw)
        if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise ConfigError(f"{key}: expected a {' or '.join(s + '://' for s in schemes)} URL, got {raw!r}")
        return value
    return parse


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        value = _text()(key, raw)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")
        return value
    return parse


# (section, key) -> (Settings attribute, parser, environment variable or None)
SCHEMA: dict[tuple[str, str], tuple[str, Callable[[str, Any], Any], str | None]] = {
    ("paths", "model_dir"): ("model_dir", _path, "RENDER_MODEL_DIR"),
    ("paths", "data_dir"): ("data_dir", _path, "RENDER_DATA_DIR"),
    ("server", "host"): ("host", _text(), "RENDER_HOST"),
    ("server", "port"): ("port", _number(int, 0, 65535), "RENDER_PORT"),
    ("server", "public_base_url"): ("public_base_url", _url(), "RENDER_PUBLIC_BASE_URL"),
    ("server", "cors_origins"): ("cors_origins", _origins, "RENDER_CORS_ORIGINS"),
    ("server", "api_key"): ("api_key", _text(True), "RENDER_API_KEY"),
    ("server", "console_password"): ("console_password", _text(True), "RENDER_CONSOLE_PASSWORD"),
    ("server", "events_max_streams"): ("events_max_streams", _number(int, 0, 100_000), None),
    ("server", "events_max_stream_seconds"): ("events_max_stream_seconds", _number(float, 1, 86_400), None),
    ("server", "metrics_token"): ("metrics_token", _text(True), "RENDER_METRICS_TOKEN"),
    # at most Pillow's own decompression-bomb refusal (2 x its default MAX_IMAGE_PIXELS, ~179 MP), which we leave as
    # it is: a higher setting could never be honoured
    ("render", "max_pixels"): ("max_pixels", _number(int, 65_536, 178_000_000), "RENDER_MAX_PIXELS"),
    ("render", "stage_timeout_seconds"): ("stage_timeout", _number(float, 0, 86_400, optional=True, low_open=True),
                                          "RENDER_STAGE_TIMEOUT"),
    ("render", "job_timeout_seconds"): ("job_timeout", _number(float, 0, 86_400, low_open=True),
                                        "RENDER_JOB_TIMEOUT"),
    ("render", "force_cpu"): ("force_cpu", _bool, "AI_FORCE_CPU"),
    ("render", "segment_backend"): ("segment_backend", _choice("auto", "embedded", "gpu"), "RENDER_SEGMENT_BACKEND"),
    ("render", "geometry_backend"): ("geometry_backend", _choice("auto", "embedded", "gpu"),
                                     "RENDER_GEOMETRY_BACKEND"),
    ("render", "refine_backend"): ("refine_backend", _choice("auto", "none", "gpu"), "RENDER_REFINE_BACKEND"),
    ("store", "busy_timeout_seconds"): ("store_busy_timeout", _number(float, 0, 600, low_open=True), None),
    ("store", "min_free_mb"): ("min_free_mb", _number(int, 0, 10_000_000), "RENDER_MIN_FREE_MB"),
    ("queue", "depth"): ("queue_depth", _number(int, 1, 100_000), "RENDER_QUEUE_DEPTH"),
    ("queue", "max_attempts"): ("max_attempts", _number(int, 1, 100), "RENDER_MAX_ATTEMPTS"),
    ("queue", "retention_hours"): ("retention_hours", _number(float, 0, 100_000, low_open=True),
                                   "RENDER_RETENTION_HOURS"),
    ("fetch", "allow_networks"): ("fetch_allow_networks", _networks, "RENDER_FETCH_ALLOW_NETWORKS"),
    ("fetch", "max_bytes"): ("fetch_max_bytes", _number(int, 1024, 2_000_000_000), "RENDER_FETCH_MAX_BYTES"),
    ("fetch", "connect_timeout"): ("fetch_connect_timeout", _number(float, 0, 600, low_open=True), None),
    ("fetch", "read_timeout"): ("fetch_read_timeout", _number(float, 0, 3600, low_open=True), None),
    ("fetch", "total_timeout_seconds"): ("fetch_total_timeout", _number(float, 0, 3600, low_open=True), None),
    ("storage", "supabase_url"): ("supabase_url", _url(), "SUPABASE_URL"),
    ("storage", "supabase_service_role_key"): ("supabase_key", _text(True), "SUPABASE_SERVICE_ROLE_KEY"),
    ("storage", "bucket"): ("supabase_bucket", _text(), "SUPABASE_BUCKET"),
    ("storage", "signed_url_seconds"): ("supabase_signed_url_seconds", _number(int, 1, 10 * 365 * 86_400,
                                                                               optional=True),
                                        "SUPABASE_SIGNED_URL_SECONDS"),
    ("storage", "upload_retry_seconds"): ("upload_retry_seconds", _number(float, 0, 3600), None),
    ("storage", "upload_retry_delay_seconds"): ("upload_retry_delay", _number(float, 0, 86_400), None),
    ("storage", "max_upload_mb"): ("max_upload_mb", _number(float, 0, 1_000_000, low_open=True), None),
    ("webhooks", "secret"): ("webhook_secret", _webhook_secret, "RENDER_WEBHOOK_SECRET"),
    ("webhooks", "retry_hours"): ("webhook_retry_hours", _number(float, 0, 24 * 30, low_open=True),
                                  "RENDER_WEBHOOK_RETRY_HOURS"),
    ("webhooks", "base_delay_seconds"): ("webhook_base_delay", _number(float, 0.01, 3600), None),
    ("webhooks", "max_delay_seconds"): ("webhook_max_delay", _number(float, 0.01, 86_400), None),
    ("webhooks", "timeout_seconds"): ("webhook_timeout", _number(float, 0.1, 120), None),
    ("webhooks", "allow_networks"): ("webhook_allow_networks", _networks, "RENDER_WEBHOOK_ALLOW_NETWORKS"),
    ("worker", "enabled"): ("worker_enabled", _bool, "RENDER_WORKER_ENABLED"),
    ("worker", "prefetch_jobs"): ("prefetch_jobs", _number(int, 0, 16), None),
    ("worker", "device"): ("worker_device", _device, "RENDER_DEVICE"),
    ("worker", "threads"): ("worker_threads", _number(int, 1, 256), "RENDER_WORKER_THREADS"),
    ("worker", "poll_interval_seconds"): ("poll_interval", _number(float, 0.001, 10), "RENDER_POLL_INTERVAL"),
    ("worker", "lease_seconds"): ("lease_seconds", _number(float, 1, 3600), "RENDER_LEASE_SECONDS"),
    ("worker", "pipeline"): ("worker_pipeline", _factory, "RENDER_WORKER_PIPELINE"),
    ("worker", "maintenance_interval_seconds"): ("maintenance_interval", _number(float, 0.5, 86_400),
                                                 "RENDER_MAINTENANCE_INTERVAL"),
    ("worker", "name"): ("worker_name", _text(True), "RENDER_WORKER_NAME"),
    ("cluster", "database_url"): ("database_url", _service_url("postgresql", "postgres"), "RENDER_DATABASE_URL"),
    ("cluster", "queue_url"): ("queue_url", _service_url("redis", "rediss"), "RENDER_QUEUE_URL"),
    ("cluster", "shared_data_dir"): ("shared_data_dir", _bool, "RENDER_SHARED_DATA_DIR"),
    ("learning", "collect_client_masks"): ("collect_client_masks", _bool, "RENDER_COLLECT_CLIENT_MASKS"),
    ("learning", "recipe_data_dir"): ("learning_recipe_dir", _optional_path, "RENDER_LEARNING_RECIPE_DIR"),
    ("learning", "finetune_epochs"): ("finetune_epochs", _number(int, 1, 10_000), "RENDER_FINETUNE_EPOCHS"),
}
SECTIONS = sorted({section for section, _ in SCHEMA})
