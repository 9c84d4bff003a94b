"""Real parts for the service tests: a photo server, the appliance started through its CLI, polling helpers,
and a real Pipeline with a deliberately slow geometry stage (for cancel / timeout / kill -9 tests).

The server runs `python -m appliance.cli --config <tmp>/config.toml serve` in a subprocess on 127.0.0.1 with an
ephemeral port, real SQLite files in a tmp folder, and a real consumer process.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SMALL_HOUSE = "houses/house_126.jpg"  # 640x427: fast
SMALL_HOUSE_SIZE = (640, 427)
SWATCH = "textures/brick_orange_sh3d_smallBricks.jpg"
# Cluster mode's servers, started by scripts/services.sh (eval "$(scripts/services.sh)"); tests that need them skip
# when these are unset.
POSTGRES_URL = os.environ.get("RENDER_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("RENDER_TEST_REDIS_URL")
NO_POSTGRES = "RENDER_TEST_POSTGRES_URL is not set (start PostgreSQL with: eval \"$(scripts/services.sh)\")"
NO_REDIS = "RENDER_TEST_REDIS_URL is not set (start Redis with: eval \"$(scripts/services.sh)\")"


# --- photos over real HTTP ---------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@contextlib.contextmanager
def photo_server(data_dir: Path, extra_dir: Path) -> Iterator[str]:
    """Serve data_dir/houses, data_dir/textures and the files of extra_dir at http://127.0.0.1:PORT/."""
    root = extra_dir / "www"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("houses", "textures"):
        link = root / name
        if not link.exists():
            link.symlink_to(data_dir / name)
    for item in extra_dir.iterdir():
        if item.is_file() and not (root / item.name).exists():
            (root / item.name).symlink_to(item)
    with static_server(root) as url:
        yield url


@contextlib.contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on 127.0.0.1:<ephemeral>: one origin per server."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


# --- PostgreSQL / Redis: a private schema / database per test ----------------------------------------------

@contextlib.contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema in the test database; yields a URL whose connections use it (search_path), drops it after."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextlib.contextmanager
def redis_database(base_url: str) -> Iterator[str]:
    """A Redis database (1..15) that no other test run holds (a marker key set with NX), emptied before and after."""
    import redis

    root = base_url.rsplit("/", 1)[0] if base_url.rsplit("/", 1)[-1].isdigit() else base_url.rstrip("/")
    token = uuid.uuid4().hex
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{root}/{db}")
        if client.set("render-test:owner", token, nx=True, ex=900):
            break
        client.close()
    else:
        raise RuntimeError(f"every Redis database of {root} is held by another test run")
    try:
        for key in client.scan_iter("huey*"):
            client.delete(key)
        yield f"{root}/{db}"
    finally:
        client.flushdb()
        client.close()


# --- the appliance ------------------------------------------------------------------------------------------

def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RENDER_", "SUPABASE_", "NICEGUI_", "PYTEST_")) and k != "AI_FORCE_CPU"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                    else []))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (a killed pytest leaves no server behind;
    the server's worker follows its server by itself)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Appliance:
    """`render-appliance serve` (or `worker`) in a subprocess."""

    def __init__(self, config: Path, port: int, log_path: Path, *, command: str = "serve",
                 env: dict[str, str] | None = None, api_key: str | None = None, args: tuple[str, ...] = ()):
        self.config, self.port, self.log_path, self.command, self.args = config, port, log_path, command, args
        self.env = _clean_env(env)
        self.base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base, timeout=10, headers=headers, trust_env=False)
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True, timeout: float = 120) -> "Appliance":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "--config", str(self.config),
                                      self.command, *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120) -> dict:
        """Until /readyz says 200 (models, store, queue, storage and worker usable)."""
        return self._wait_for("/readyz", timeout)

    def wait_alive(self, timeout: float = 120) -> dict:
        """Until /healthz answers 200: the HTTP side is up (for boxes that are never ready, e.g. without a worker)."""
        return self._wait_for("/healthz", timeout)

    def _wait_for(self, path: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = self.http.get(path)
                last = r.json()
                if r.status_code == 200:
                    return last
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{path} not 200 after {timeout} s: {last}\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def worker_pid(self) -> int:
        pid = self.http.get("/readyz").json()["checks"]["worker"].get("supervised_pid")
        assert pid, "no supervised worker"
        return pid

    def kill9(self) -> None:
        """SIGKILL the server process only (its worker notices the orphaning and exits by itself)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of this session only
        self.http.close()

    # --- API helpers ---
    def submit(self, body: dict, **kwargs) -> httpx.Response:
        return self.http.post("/render/jobs", json=body, **kwargs)

    def job(self, job_id: str) -> dict:
        r = self.http.get(f"/render/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, timeout: float = 60, until=lambda j: j["status"] in ("completed", "failed")) -> dict:
        deadline = time.monotonic() + timeout
        job: dict = {}
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job} after {timeout} s\n{self.log_tail()}")

    def drain(self, timeout: float = 120) -> None:
        """Wait until no job is queued or running (tests sharing a server start from an idle queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            checks = self.http.get("/readyz").json()["checks"]
            if checks["job_store"].get("active_jobs") == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"queue not drained after {timeout} s")


# --- a real pipeline with a slow stage (loaded in the worker via [worker] pipeline = "...") ------------------

class SlowGeometry:
    """The real geometry estimator, after a pause: gives tests a window while a job is 'running'."""

    def __init__(self, inner: Any, delay: float):
        self.inner, self.delay = inner, delay
        self.name = f"slow({delay:g}s)+{getattr(inner, 'name', 'geometry')}"

    def estimate(self, image, mask):
        time.sleep(self.delay)
        return self.inner.estimate(image, mask)


def slow_pipeline(settings):
    """worker.pipeline = "service_fixtures:slow_pipeline" (delay from env RENDER_TEST_GEOMETRY_DELAY)."""
    from pipeline.backends import from_settings

    base = from_settings(settings)  # what the worker builds by default
    base.geometry = SlowGeometry(base.geometry, float(os.environ.get("RENDER_TEST_GEOMETRY_DELAY", "2.0")))
    pause = float(os.environ.get("RENDER_TEST_STAGE_PAUSE", "0"))
    if pause:  # each stage lasts at least this long: longer than one read of a live event stream (200 ms)
        run = base.run

        def paused_run(*args, progress=None, **kwargs):
            def report(stage, fraction):
                if progress is not None:
                    progress(stage, fraction)
                if fraction == 0.0:
                    time.sleep(pause)
            return run(*args, progress=report, **kwargs)

        base.run = paused_run
    return base
