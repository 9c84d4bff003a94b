"""config.toml + environment -> one typed, validated Settings object.

Every key is checked at start: an unknown key, a wrong type or an out-of-range value raises ConfigError with a
message that names the key (`queue.depth`, or the environment variable that set it). Paths written relative in the
file are relative to the file's folder. See config.toml.example for every key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

APP_NAME = "render-appliance"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def default_data_dir() -> Path:
    """A per-user data folder (never inside the install folder): $XDG_DATA_HOME/render-appliance."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def install_dir() -> Path | None:
    """The folder of the frozen binary (PyInstaller: sys.executable's folder; for onefile the folder of the
    onefile itself, not its temporary unpack folder); None when running from source."""
    import sys

    if not getattr(sys, "frozen", False):
        return None
    return Path(sys.executable).resolve().parent


def default_model_dir() -> Path:
    """A frozen binary uses a `models/` folder next to itself when there is one (shipped beside the binary,
    read-only is fine); otherwise, and from source, the per-user data folder's models/."""
    here = install_dir()
    if here is not None and (here / "models").is_dir():
        return here / "models"
    return default_data_dir() / "models"


def default_config_path(env: "os._Environ[str] | dict[str, str]") -> Path | None:
    """Without --config: $RENDER_CONFIG, else ./config.toml; a frozen binary then also tries config.toml next to
    itself and in the user data folder ($XDG_DATA_HOME/render-appliance/config.toml)."""
    if env.get("RENDER_CONFIG"):
        return Path(env["RENDER_CONFIG"])
    candidates = [Path("config.toml")]
    here = install_dir()
    if here is not None:
        base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        candidates += [here / "config.toml", Path(base) / APP_NAME / "config.toml"]
    return next((c for c in candidates if c.is_file()), None)


@dataclass(frozen=True)
class Settings:
    # [paths]
    model_dir: Path = field(default_factory=default_model_dir)
    data_dir: Path = field(default_factory=default_data_dir)
    # [server]
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = ""  # "" -> http://{host}:{port}
    cors_origins: tuple[str, ...] = ()
    api_key: str | None = None
    console_password: str | None = None  # operator console login; required for the console once api_key is set
    events_max_streams: int = 32  # live event streams open at once (each reads the store 5 times a second)
    events_max_stream_seconds: float = 3600.0  # a stream ends after this; the client reconnects or polls
    metrics_token: str | None = None  # bearer token for GET /metrics (the api_key is accepted too)
    # [render]
    max_pixels: int = 40_000_000
    stage_timeout: float | None = None  # seconds per stage; None = the pipeline's defaults
    job_timeout: float = 1800.0  # seconds for a whole attempt (download + render + upload)
    force_cpu: bool = False
    segment_backend: str = "auto"  # auto | embedded | gpu  (auto: the GPU set when installed)
    geometry_backend: str = "auto"  # auto | embedded | gpu
    refine_backend: str = "auto"  # auto | none | gpu  (none: refinement requests fail with pipeline_error)
    # [queue]
    queue_depth: int = 20  # jobs queued or running; beyond it POST answers 503 queue_full
    max_attempts: int = 3
    retention_hours: float = 48.0
    # [fetch]
    fetch_allow_networks: tuple[str, ...] = ()  # e.g. ("10.0.0.0/8",): private networks the worker may fetch from
    fetch_max_bytes: int = 25_000_000
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 20.0
    fetch_total_timeout: float = 60.0  # seconds per file in all, however slowly its bytes come
    # [storage]
    supabase_url: str | None = None
    supabase_key: str | None = None
    supabase_bucket: str = "project-images"
    supabase_signed_url_seconds: int | None = None
    upload_retry_seconds: float = 90.0  # an upload is retried (5xx, network) with back-off this long
    upload_retry_delay: float = 60.0  # a render whose upload failed is kept; its next upload attempt this much later
    max_upload_mb: float = 50.0  # the Storage server's standard upload limit (UPLOAD_FILE_SIZE_LIMIT_STANDARD)
    # [webhooks] (appliance/webhooks.py)
    webhook_secret: str | None = None  # signs deliveries; unset: POST /render/jobs refuses webhook_url
    webhook_retry_hours: float = 24.0  # a delivery is retried for this long after its event, then given up
    webhook_base_delay: float = 5.0  # seconds before the first retry; doubled each time (with jitter)
    webhook_max_delay: float = 3600.0  # the longest wait between two attempts
    webhook_timeout: float = 10.0  # seconds for one delivery attempt
    webhook_allow_networks: tuple[str, ...] = ()  # private networks receivers may be on (SSRF guard)
    # [worker]
    worker_enabled: bool = True  # `serve` starts and supervises one consumer process
    worker_device: str | None = None  # "cpu", "cuda", "cuda:0", ...; None = auto (CUDA when present, not force_cpu)
    worker_threads: int = 2  # CPU threads the embedded models use
    poll_interval: float = 0.05  # seconds between queue polls of an idle consumer (pickup latency)
    lease_seconds: float = 30.0  # a running job's lease; renewed every lease/3 by a heartbeat
    maintenance_interval: float = 60.0  # seconds between housekeeping runs (lease reaping, retention)
    worker_pipeline: str | None = None  # "module:callable" building the Pipeline; None = the embedded model set
    prefetch_jobs: int = 2  # queued jobs whose inputs are downloaded ahead while one renders (0: off)
    worker_name: str | None = None  # this machine's name in worker slots / leases; None = the host name
    # [store]
    store_busy_timeout: float = 10.0  # seconds a write waits for a locked SQLite store before 503 store_unavailable
    min_free_mb: int = 200  # free space the data folder needs; below it /readyz fails and POST answers 503
    # [cluster] (both set: several machines share one queue and one job store; unset: the embedded SQLite files)
    database_url: str | None = None  # postgresql://user:password@host:5432/db
    queue_url: str | None = None  # redis://host:6379/0
    shared_data_dir: bool = False  # cluster without Supabase: data_dir is one folder shared by every machine
    # [learning] (appliance/learning.py, appliance/finetune.py)
    collect_client_masks: bool = False  # API jobs with a mask_url become training examples too
    learning_recipe_dir: Path | None = None  # the recipe's data (houses-train/, facades-hslu/) mixed into fine-tunes
    finetune_epochs: int = 20
    config_path: Path | None = None

    # Derived locations inside data_dir.
    @property
    def jobs_db(self) -> Path | str:
        """The job store: the SQLite file, or cluster.database_url."""
        return self.database_url or self.data_dir / "jobs.db"

    @property
    def queue_db(self) -> Path | str:
        """The Huey queue: the SQLite file, or cluster.queue_url."""
        return self.queue_url or self.data_dir / "queue.db"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def metrics_dir(self) -> Path:
        """prometheus_client's multiprocess files of one `serve` (host and port: a shared data folder may hold
        several); emptied at each start."""
        import socket

        return self.data_dir / "metrics" / f"{socket.gethostname()}-{self.port}"

    def job_dir(self, job_id: str) -> Path:
        """A job's own files (its inputs as the worker used them, the paint mask); pruned with the job."""
        if not job_id or not all(c.isalnum() or c == "-" for c in job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.jobs_dir / job_id

    @property
    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def job_files_shared(self) -> bool:
        """Can every worker read this box's job folders? Not with a Redis queue (workers on other machines)
        unless paths.data_dir is one shared folder (cluster.shared_data_dir)."""
        return not self.queue_url or self.shared_data_dir

    @property
    def uses_supabase(self) -> bool:
        return bool(self.supabase_url and self.supabase_key)

    def backend_choices(self) -> dict[str, str]:
        """Keyword arguments for pipeline.backends.build_pipeline: the backend per stage."""
        return {"segment": self.segment_backend, "geometry": self.geometry_backend, "refine": self.refine_backend}

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


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


def load_settings(path: str | os.PathLike | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read `path` (TOML), then apply environment overrides. Raises ConfigError.

    Without `path`: $RENDER_CONFIG, else ./config.toml when it exists (a frozen binary then tries config.toml
    next to itself, then in the user data folder), else the defaults."""
    env = os.environ if env is None else env
    if path is None:
        path = default_config_path(env)
    values: dict[str, Any] = {}
    base: Path | None = None
    if path is not None:
        cfg_path = Path(path).expanduser()
        try:
            with cfg_path.open("rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {cfg_path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {cfg_path} is not valid TOML: {exc}") from None
        base = cfg_path.resolve().parent
        values["config_path"] = cfg_path.resolve()
        for section, table in doc.items():
            if section not in SECTIONS:
                raise ConfigError(f"{section}: unknown section (known: {', '.join(SECTIONS)})")
            if not isinstance(table, dict):
                raise ConfigError(f"{section}: expected a [{section}] table")
            for key, raw in table.items():
                entry = SCHEMA.get((section, key))
                if entry is None:
                    known = ", ".join(k for s, k in SCHEMA if s == section)
                    raise ConfigError(f"{section}.{key}: unknown key (known in [{section}]: {known})")
                attr, parse, _ = entry
                values[attr] = parse(f"{section}.{key}", raw)

    for (section, key), (attr, parse, var) in SCHEMA.items():
        if var and env.get(var) is not None and env.get(var) != "":
            values[attr] = parse(f"{var} (environment, overrides {section}.{key})", env[var])

    for attr in ("model_dir", "data_dir", "learning_recipe_dir"):
        if values.get(attr) is not None and not values[attr].is_absolute():
            values[attr] = ((base or Path.cwd()) / values[attr]).resolve()
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if bool(s.supabase_url) != bool(s.supabase_key):
        missing = "storage.supabase_service_role_key (SUPABASE_SERVICE_ROLE_KEY)" if s.supabase_url \
            else "storage.supabase_url (SUPABASE_URL)"
        raise ConfigError(f"{missing}: Supabase storage needs both the URL and the service-role key")
    if s.queue_url and not (s.uses_supabase or s.shared_data_dir):  # workers may run on other machines
        raise ConfigError("cluster.shared_data_dir: with a Redis queue results must reach every machine: configure "
                          "[storage] Supabase, or put paths.data_dir on a shared folder and set shared_data_dir = true")
    if s.data_dir.exists() and not s.data_dir.is_dir():
        raise ConfigError(f"paths.data_dir: {s.data_dir} exists and is not a folder")
    if s.lease_seconds < 3 * s.poll_interval:
        raise ConfigError("worker.lease_seconds: must be well above worker.poll_interval_seconds")
