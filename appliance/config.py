"""config.toml + environment -> one typed, validated Settings object.

Every key is checked at start: an unknown key, a wrong type or an out-of-range value raises ConfigError with a
message that names the key (`queue.depth`, or the environment variable that set it). Paths written relative in the
file are relative to the file's folder. See config.toml.example for every key; appliance/config_keys.py defines
each key's parser and environment variable.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config_keys import SCHEMA, SECTIONS, ConfigError  # noqa: F401  (ConfigError re-exported)

APP_NAME = "render-appliance"


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
