"""Smoke test of the real render-appliance binary (packaging/smoke_test.sh runs it; .ci/run runs that).

Against dist/ as built by packaging/build.sh: cold start of `--help`; `models pull --from` the shared model folder
into a temporary model folder (via a temporary config); `models status`; `render` of a shared house photo;
`worker` (starts its consumer, no restart loop, stops on SIGTERM); `serve` on a free port with the fetch allow-list
including 127.0.0.1 and a local http.server serving the shared photos: time to /healthz, POST a job, poll it to
completed, GET the PNG (decodes at the photo's size), SIGTERM: exits within 15 s and leaves no worker behind.
Finally: nothing in the install folder changed. Exit status 0 = all passed; prints a summary with timings.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RENDER_SHARED_DIR") or ROOT.parent / "shared")
PHOTO = SHARED / "data" / "houses" / "house_100.jpg"
SWATCH = SHARED / "data" / "textures" / "brick_red_small_sh3d_smallRedBricks.jpg"
SUMMARY: dict[str, str] = {}
TMP = Path(tempfile.mkdtemp(prefix="render-smoke-"))


def binary() -> Path:
    """$SMOKE_BINARY, else the onedir build dist/render-appliance/render-appliance."""
    if os.environ.get("SMOKE_BINARY"):
        return Path(os.environ["SMOKE_BINARY"]).resolve()
    return ROOT / "dist" / "render-appliance" / "render-appliance"


def step(name: str) -> None:
    print(f"\n=== {name}", flush=True)


def fail(message: str) -> None:
    print(f"SMOKE FAILED: {message} (files in {TMP})", flush=True)
    raise SystemExit(1)


def run(args: list[str], env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(a) for a in args), flush=True)
    proc = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.stdout.strip():
        print(proc.stdout.rstrip())
    if proc.stderr.strip():
        print(proc.stderr.rstrip()[-4000:])
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def children(pid: int) -> list[int]:
    """Direct and indirect child processes of pid (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out + [g for c in out for g in children(c)]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def stop(proc: subprocess.Popen, what: str, limit: float = 15.0) -> float:
    kids = children(proc.pid)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        fail(f"{what} did not exit within {limit:g} s of SIGTERM")
    took = time.monotonic() - started
    time.sleep(1.0)
    left = [k for k in kids if alive(k)]
    if left:
        for k in left:
            os.kill(k, signal.SIGKILL)
        fail(f"{what} left processes behind: {left}")
    print(f"{what}: exit {proc.returncode} {took:.1f} s after SIGTERM; {len(kids)} child process(es), none left")
    return took


def wait_for(proc: subprocess.Popen, url: str, limit: float, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if proc.poll() is not None:
            print(log.read_text()[-4000:])
            fail(f"process exited with {proc.returncode} before {url} answered")
        try:
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    print(log.read_text()[-4000:])
    fail(f"{url} did not answer 200 within {limit:g} s")


def main() -> int:
    from PIL import Image

    exe = binary()
    if not exe.is_file():
        fail(f"no binary at {exe}; run packaging/build.sh")
    install = exe.parent  # onedir: the whole folder; onefile: the folder holding the file
    before = snapshot(install)
    for path in (PHOTO, SWATCH, SHARED / "models"):
        if not path.exists():
            fail(f"{path} is missing (RENDER_SHARED_DIR={SHARED})")
    photo_size = Image.open(PHOTO).size

    tmp = TMP
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENDER_", "PYTEST", "SUPABASE", "NICEGUI"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), AI_FORCE_CPU="1")
    port = free_port()
    config = tmp / "config.toml"
    config.write_text(f'[paths]\nmodel_dir = "models"\ndata_dir = "data"\n\n[server]\nhost = "127.0.0.1"\n'
                      f'port = {port}\n\n[fetch]\nallow_networks = ["127.0.0.1"]\n\n[worker]\nthreads = 2\n')
    base = ["--config", config]
    work = tmp / "cwd"
    work.mkdir()

    step("cold start: --help")
    times = []
    for _ in range(2):
        started = time.monotonic()
        proc = run([exe, "--help"], env, work, timeout=300)
        times.append(time.monotonic() - started)
        if proc.returncode != 0 or "serve" not in proc.stdout:
            fail("--help")
    SUMMARY["--help (first / second run)"] = f"{times[0]:.2f} s / {times[1]:.2f} s"

    step("models pull --from the shared folder, models status, models list")
    started = time.monotonic()
    if run([exe, *base, "models", "pull", "--from", SHARED / "models"], env, work).returncode != 0:
        fail("models pull")
    SUMMARY["models pull --from"] = f"{time.monotonic() - started:.1f} s"
    proc = run([exe, *base, "models", "status"], env, work)
    if proc.returncode != 0 or str(tmp / "models") not in proc.stdout:
        fail("models status (expected every model ok, in the temporary model folder)")
    if run([exe, "models", "list"], env, work).returncode != 0:
        fail("models list")

    step("render")
    out = tmp / "render.png"
    started = time.monotonic()
    proc = run([exe, *base, "render", PHOTO, SWATCH, "-o", out, "--json"], env, work)
    if proc.returncode != 0:
        fail("render")
    SUMMARY["render (CLI, incl. start + model load)"] = f"{time.monotonic() - started:.1f} s"
    if Image.open(out).size != photo_size:
        fail(f"render wrote {Image.open(out).size}, photo is {photo_size}")

    step("worker: its consumer starts, stays up, stops on SIGTERM")
    wlog = tmp / "worker.log"
    with wlog.open("w") as fh:
        worker = subprocess.Popen([str(exe), *map(str, base), "worker"], env=env, cwd=work, stdout=fh,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    consumer = None
    while time.monotonic() < deadline and consumer is None:
        time.sleep(0.5)
        if worker.poll() is not None:
            print(wlog.read_text()[-4000:])
            fail(f"worker exited with {worker.returncode}")
        consumer = next(iter(children(worker.pid)), None)
    if consumer is None:
        fail("worker started no consumer process")
    time.sleep(8)  # long enough for a restart loop (or a crash of the consumer) to show
    if children(worker.pid)[:1] != [consumer] or "restarting" in wlog.read_text():
        print(wlog.read_text()[-4000:])
        fail("worker consumer restarted (restart loop?)")
    stop(worker, "worker")
    if worker.returncode != 0 or "Traceback" in wlog.read_text():
        print(wlog.read_text()[-4000:])
        fail(f"worker did not shut down cleanly (exit {worker.returncode})")

    step("serve + a job over HTTP")
    files_port = free_port()
    files = subprocess.Popen([sys.executable, "-m", "http.server", str(files_port), "--bind", "127.0.0.1",
                              "--directory", str(SHARED / "data")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    slog = tmp / "serve.log"
    try:
        with slog.open("w") as fh:
            started = time.monotonic()
            server = subprocess.Popen([str(exe), *map(str, base), "serve"], env=env, cwd=work, stdout=fh,
                                      stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        SUMMARY["serve: start -> /healthz 200"] = f"{wait_for(server, url + '/healthz', 120, slog):.2f} s"
        ready = wait_for(server, url + "/readyz", 180, slog) + float(SUMMARY["serve: start -> /healthz 200"][:-2])
        SUMMARY["serve: start -> /readyz 200 (worker loaded)"] = f"{ready:.2f} s"
        status, body = http("GET", url + "/console/static/console.css")
        if status != 200 or not body:
            fail(f"console asset: {status}")
        status, body = http("GET", url + "/")
        if status != 200 or b"<html" not in body.lower():
            fail(f"console page: {status}")
        files_url = f"http://127.0.0.1:{files_port}"
        started = time.monotonic()
        status, body = http("POST", url + "/render/jobs",
                            {"image_url": f"{files_url}/houses/{PHOTO.name}",
                             "texture_url": f"{files_url}/textures/{SWATCH.name}"})
        if status != 201:
            fail(f"POST /render/jobs: {status} {body[:500]!r}")
        job = json.loads(body)
        print(f"job {job['job_id']} submitted")
        while True:
            status, body = http("GET", url + f"/render/jobs/{job['job_id']}")
            state = json.loads(body)
            if state.get("status") in ("completed", "failed") or time.monotonic() - started > 600:
                break
            if server.poll() is not None:
                print(slog.read_text()[-4000:])
                fail("serve died during the job")
            time.sleep(0.5)
        print(json.dumps(state))
        if state.get("status") != "completed":
            print(slog.read_text()[-4000:])
            fail(f"job ended {state.get('status')}: {state.get('error_code')} {state.get('error_message')}")
        SUMMARY["job over HTTP (submit -> completed)"] = f"{time.monotonic() - started:.1f} s"
        status, png = http("GET", state["result_url"], timeout=30)
        if status != 200 or not png.startswith(b"\x89PNG"):
            fail(f"GET result: {status}")
        if Image.open(io.BytesIO(png)).size != photo_size:
            fail(f"result is {Image.open(io.BytesIO(png)).size}, photo is {photo_size}")
        print(f"result PNG {len(png)} bytes, {photo_size[0]}x{photo_size[1]}")
        if "restarting" in slog.read_text():
            print(slog.read_text()[-4000:])
            fail("the worker process restarted during serve")
        SUMMARY["serve: SIGTERM -> exit"] = f"{stop(server, 'serve'):.1f} s"
        # uvicorn re-raises the SIGTERM after its graceful shutdown: -15 is a clean exit, so read the log too.
        text = slog.read_text()
        if server.returncode not in (0, -signal.SIGTERM) or "shutdown failed" in text or "Traceback" in text:
            print(text[-4000:])
            fail(f"serve did not shut down cleanly (exit {server.returncode}; see its log above)")
    finally:
        files.terminate()
        files.wait(10)
        if "server" in locals() and server.poll() is None:
            server.kill()

    step("install folder unchanged")
    after = snapshot(install)
    changed = sorted(set(after.items()) ^ set(before.items()))
    if changed:
        fail(f"the binary wrote into its install folder: {changed[:10]}")
    print(f"{len(after)} files, none added or changed")

    step("summary")
    for key, value in SUMMARY.items():
        print(f"{key:<48} {value}")
    print("SMOKE PASSED")
    shutil.rmtree(tmp, ignore_errors=True)  # kept on failure: config, logs and outputs to look at
    return 0


if __name__ == "__main__":
    sys.exit(main())
