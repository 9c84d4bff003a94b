"""What survives what, measured with real processes: `render-appliance serve` with its worker, real SQLite files, a
photo server and the Supabase Storage contract double on loopback; the real embedded pipeline with a 2 s pause in
its geometry stage (so a job is reliably mid-render when the fault strikes).

    .venv/bin/python -m bench.reliability [--jobs 6]

Scenarios (each on a fresh data folder), one line each in the table it prints:
- kill -9 of `serve` (its worker follows) mid-render, then start again: every job ends completed, one result each;
- SIGTERM with jobs queued and running, then start again: the same, and jobs.db alone (no -wal) holds every job;
- a Storage outage longer than the upload retry window while a job uploads: the render is kept and uploaded by
  the next attempt (rendered once), the job completes;
- jobs.db locked by another process: POST answers 503 store_unavailable after the busy timeout, GET keeps working;
- the data folder below store.min_free_mb: POST answers 503, /readyz names the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config  # noqa: E402
from supabase_storage_server import running_storage_server  # noqa: E402

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()


def appliance(tmp: Path, model_dir: Path, env: dict | None = None, **sections) -> Appliance:
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port}, "fetch": {"allow_networks": ["127.0.0.1"]},
        "worker": {"pipeline": "service_fixtures:slow_pipeline", "lease_seconds": 6,
                   "maintenance_interval_seconds": 1},
        **sections})
    return Appliance(config, port, tmp / "server.log", env={"RENDER_TEST_GEOMETRY_DELAY": "2.0", **(env or {})})


def submit(app: Appliance, photos: str, n: int) -> list[str]:
    return [app.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"#{i:02x}8899"}).json()["job_id"]
            for i in range(n)]


def wait_all(app: Appliance, ids: list[str], timeout: float = 300) -> list[dict]:
    return [app.wait(i, timeout=timeout) for i in ids]


def kill9(tmp, model_dir, photos, n):
    app = appliance(tmp, model_dir).start()
    ids = submit(app, photos, n)
    app.wait(ids[0], timeout=60, until=lambda j: j.get("stage") == "geometry")
    app.kill9()
    time.sleep(1)
    app.http.close()
    started = time.monotonic()
    app = appliance(tmp, model_dir).start()
    jobs = wait_all(app, ids)
    took = time.monotonic() - started
    app.close()
    results = list((tmp / "data" / "results").rglob("*.png"))
    ok = sum(j["status"] == "completed" for j in jobs)
    return (f"kill -9 of serve mid-render, restart | {ok}/{n} completed, {len(results)} results, attempts "
            f"{max(j['attempts'] for j in jobs)} max | all done {took:.1f} s after the restart")


def sigterm(tmp, model_dir, photos, n):
    app = appliance(tmp, model_dir).start()
    ids = submit(app, photos, n)
    app.wait(ids[0], timeout=60, until=lambda j: j.get("stage") == "geometry")
    started = time.monotonic()
    app.stop()
    stop_s = time.monotonic() - started
    copy = tmp / "jobs-alone.db"
    shutil.copy(tmp / "data" / "jobs.db", copy)
    rows = sqlite3.connect(str(copy)).execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0]
    app.http.close()
    app = appliance(tmp, model_dir).start()
    jobs = wait_all(app, ids)
    app.close()
    ok = sum(j["status"] == "completed" for j in jobs)
    return (f"SIGTERM with {n} jobs queued/running, restart | {ok}/{n} completed; jobs.db alone holds {rows}/{n} "
            f"| stop took {stop_s:.1f} s")


def storage_outage(tmp, model_dir, photos, n):
    with running_storage_server() as bucket:
        app = appliance(tmp, model_dir, env={"SUPABASE_URL": bucket.url,
                                             "SUPABASE_SERVICE_ROLE_KEY": bucket.service_key},
                        storage={"upload_retry_seconds": 3, "upload_retry_delay_seconds": 5}).start()
        ids = submit(app, photos, 1)
        app.wait(ids[0], timeout=60, until=lambda j: j.get("stage") == "geometry")
        bucket.fail_for(12, status=503)  # a restart longer than the retry window
        started = time.monotonic()
        job = app.wait(ids[0], timeout=120)
        took = time.monotonic() - started
        app.close()
        kept = "uploading the render kept" in app.log_path.read_text()
    return (f"Storage down 12 s during the upload (retry window 3 s) | {job['status']}, attempts {job['attempts']}, "
            f"rendered once: {kept} | completed {took:.1f} s after the outage began")


def locked_store(tmp, model_dir, photos, n):
    app = appliance(tmp, model_dir, store={"busy_timeout_seconds": 2}).start()
    job_id = submit(app, photos, 1)[0]
    holder = sqlite3.connect(str(tmp / "data" / "jobs.db"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    r = app.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#112233"})
    post_s = time.monotonic() - started
    get = app.http.get(f"/render/jobs/{job_id}").status_code
    holder.execute("ROLLBACK")
    holder.close()
    after = app.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#112233"}).status_code
    app.close()
    return (f"jobs.db locked by another process | POST {r.status_code} {r.json().get('error')} after {post_s:.1f} s "
            f"(busy timeout 2 s), GET {get}; unlocked: POST {after} | no 500")


def low_disk(tmp, model_dir, photos, n):
    app = appliance(tmp, model_dir, store={"min_free_mb": 10_000_000}).start(wait_ready=False)
    app.wait_alive()
    r = app.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#112233"})
    ready = app.http.get("/readyz")
    app.close()
    reason = ready.json()["checks"]["job_store"].get("reason", "")
    return f"data folder below store.min_free_mb | POST {r.status_code} {r.json().get('error')}; /readyz {ready.status_code}: {reason}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=6)
    args = parser.parse_args()
    from pipeline.models import install_from

    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as root:
        root = Path(root)
        model_dir = root / "models"
        install_from(SHARED / "models", model_dir, log=lambda _m: None)
        extra = root / "photos"
        extra.mkdir()
        rows = []
        with photo_server(SHARED / "data", extra) as photos:
            for scenario in (kill9, sigterm, storage_outage, locked_store, low_disk):
                tmp = root / scenario.__name__
                tmp.mkdir()
                rows.append(scenario(tmp, model_dir, photos, args.jobs))
                print(rows[-1], flush=True)
        print("\n| fault | outcome | time |\n|---|---|---|")
        for row in rows:
            print("| " + row + " |")


if __name__ == "__main__":
    main()
