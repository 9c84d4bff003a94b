"""API benchmark on loopback: POST /render/jobs and GET /render/jobs/{id} next to a constant route (/healthz) of the
same app, in the same run, and idle pickup latency (submit -> the worker marks the job started).

    .venv/bin/python -m bench.api [--n 2000] [--concurrency 8] [--pickups 20] [--model-dir DIR]
                                  [--phases http,pickup,events,listing] [--events 200] [--jobs 10000]
                                  [--database-url postgresql://...]

Phase 1 starts `render-appliance serve` with its worker disabled (jobs stay queued: the HTTP path alone is
measured, no render competes for the CPU). Phase 2 starts a fresh appliance with its worker and a local photo
server, lets the worker go idle, submits one small job at a time and reads `started_at - created_at` (both stamped
by the appliance). Targets: GET <= 1.5x the constant route; POST p50 <= 5 ms; pickup <= 100 ms.

Phase 3 (events) follows one job's GET /render/jobs/{id}/events stream while this process plays the worker: it
claims the job in the appliance's own job store and writes `--events` stage/progress changes at random 30-80 ms
intervals, stamping each write; the latency is the event's arrival minus that stamp (one clock). Phase 4 (listing)
fills the job store with `--jobs` jobs (100 users, 500 projects, a tenth failed, the 20 newest queued, the rest completed) and times
GET /render/jobs: the first page, each filter, and a page deep in the cursor chain. Targets: event latency
max <= 250 ms (streams read the store every 200 ms); listing p50 <= 10 ms. With --database-url the job store is that PostgreSQL database (a fresh schema).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config  # noqa: E402

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def sequential(client: httpx.Client, n: int, request) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        r = request(client, i)
        times.append(time.perf_counter() - start)
        if r.status_code >= 400:
            raise RuntimeError(f"{r.status_code}: {r.text}")
    return times


async def throughput(base: str, n: int, concurrency: int, method: str, path_of, body_of) -> float:
    """Requests per second with `concurrency` keep-alive connections."""
    counter = iter(range(n))

    async def run(client: httpx.AsyncClient) -> None:
        for i in counter:
            r = await client.request(method, path_of(i), json=body_of(i) if body_of else None)
            if r.status_code >= 400:
                raise RuntimeError(f"{r.status_code}: {r.text}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, trust_env=False, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(run(client) for _ in range(concurrency)))
        return n / (time.perf_counter() - start)


def install_models(model_dir: str | None, tmp: Path) -> Path:
    if model_dir:
        return Path(model_dir)
    from pipeline.models import install_from

    dest = tmp / "models"
    install_from(SHARED / "models", dest, log=lambda _m: None)
    return dest


def phase_http(tmp: Path, models: Path, n: int, concurrency: int) -> list[tuple]:
    port = free_port()
    config = write_config(tmp / "http.toml", {
        "paths": {"data_dir": str(tmp / "http-data"), "model_dir": str(models)},
        "server": {"port": port}, "queue": {"depth": 10 * n + 100}, "worker": {"enabled": False}})
    app = Appliance(config, port, tmp / "http-server.log").start(wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        while True:  # /readyz is 503 without a worker: wait for the port instead
            try:
                if app.http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(app.log_tail())
            time.sleep(0.1)
        body = {"image_url": "https://photos.example.com/house.jpg", "texture_url": "#B04A3A",
                "options": {"real_world_scale": 20}}
        client = httpx.Client(base_url=app.base, trust_env=False, timeout=30)
        job_id = client.post("/render/jobs", json=body).json()["job_id"]
        routes = {
            "GET /healthz (constant)": (lambda c, i: c.get("/healthz"), "GET", lambda i: "/healthz", None),
            "GET /render/jobs/{id}": (lambda c, i: c.get(f"/render/jobs/{job_id}"), "GET",
                                      lambda i: f"/render/jobs/{job_id}", None),
            "POST /render/jobs": (lambda c, i: c.post("/render/jobs", json=body), "POST",
                                  lambda i: "/render/jobs", lambda i: body),
        }
        for _, (req, *_rest) in routes.items():  # warm-up
            sequential(client, 200, req)
        rows = []
        for name, (req, method, path_of, body_of) in routes.items():
            times = sequential(client, n, req)
            rps = asyncio.run(throughput(app.base, n, concurrency, method, path_of, body_of))
            rows.append((name, percentile(times, 50) * 1e3, percentile(times, 99) * 1e3, 1 / statistics.mean(times),
                         rps))
        client.close()
        return rows
    finally:
        app.close()


def phase_pickup(tmp: Path, models: Path, count: int) -> list[float]:
    port = free_port()
    extra = tmp / "photos"
    extra.mkdir(exist_ok=True)
    with photo_server(SHARED / "data", extra) as photos:
        config = write_config(tmp / "pickup.toml", {
            "paths": {"data_dir": str(tmp / "pickup-data"), "model_dir": str(models)},
            "server": {"port": port}, "fetch": {"allow_networks": ["127.0.0.1"]}})
        app = Appliance(config, port, tmp / "pickup-server.log").start()
        try:
            latencies = []
            for i in range(count):
                time.sleep(1.0)  # let the consumer go idle (its polling at rest is what is measured)
                r = app.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"#{i:06X}"})
                job_id = r.json()["job_id"]
                app.wait(job_id, timeout=60, until=lambda j: j.get("started_at") is not None)
                job = app.wait(job_id, timeout=60)
                created = datetime.fromisoformat(job["created_at"]).timestamp()
                started = datetime.fromisoformat(job["started_at"]).timestamp()
                latencies.append(started - created)
            return latencies
        finally:
            app.close()


def _up(app: Appliance) -> None:
    deadline = time.monotonic() + 60
    while True:  # /readyz is 503 without a worker: wait for the port instead
        try:
            if app.http.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(app.log_tail())
        time.sleep(0.1)


BENCH_KEY = "bench-api-key"


def phase_events_listing(tmp: Path, models: Path, events: int, jobs: int, database_url: str | None,
                         phases: set[str]) -> dict:
    """The job store is shared with the appliance (worker disabled): this process writes what a worker would."""
    import json
    import random
    import threading
    import uuid

    from appliance.jobs import JobStore

    port = free_port()
    data = tmp / "events-data"
    config = write_config(tmp / "events.toml", {
        "paths": {"data_dir": str(data), "model_dir": str(models)}, "server": {"port": port, "api_key": BENCH_KEY},
        "queue": {"depth": 1000}, "worker": {"enabled": False},
        "cluster": {"database_url": database_url}})  # the listing needs an API key
    app = Appliance(config, port, tmp / "events-server.log", api_key=BENCH_KEY).start(wait_ready=False)
    auth = {"Authorization": f"Bearer {BENCH_KEY}"}
    out: dict = {}
    try:
        _up(app)
        store = JobStore(database_url or data / "jobs.db")
        body = {"image_url": "https://photos.example.com/house.jpg", "texture_url": "#B04A3A"}
        if "events" in phases:
            job_id = app.submit(body).json()["job_id"]
            assert store.claim(job_id, "bench", 3600)
            arrived: dict[float, float] = {}
            opened = threading.Event()

            def follow() -> None:
                with httpx.Client(base_url=app.base, trust_env=False, timeout=120, headers=auth) as client:
                    with client.stream("GET", f"/render/jobs/{job_id}/events") as r:
                        opened.set()
                        for line in r.iter_lines():
                            if line.startswith("data:"):
                                view = json.loads(line[5:])
                                arrived[round(view.get("progress", 1.0), 3)] = time.time()

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            opened.wait(10)
            time.sleep(0.3)
            sent = {}
            for i in range(events):
                time.sleep(random.uniform(0.03, 0.08))
                progress = round((i + 1) / (events + 2), 3)
                sent[progress] = time.time()
                store.set_stage(job_id, "bench", "segment", progress)
            time.sleep(0.3)
            store.complete(job_id, "bench", result_url="http://box/results/x.png")
            reader.join(10)
            out["events"] = [(arrived[p] - t) * 1e3 for p, t in sent.items() if p in arrived]
            out["events_missed"] = len(sent) - len(out["events"])
        if "listing" in phases:
            users = [str(uuid.uuid4()) for _ in range(100)]
            projects = [(users[i % 100], str(uuid.uuid4())) for i in range(500)]
            start = time.perf_counter()
            for i in range(jobs):
                user, project = projects[i % 500]
                job, _ = store.create(job_id=str(uuid.uuid4()), image_url=body["image_url"], texture_url="#B04A3A",
                                      mask_url=None, options={}, project_id=project, user_id=user,
                                      idempotency_key=None, request_hash=None, queue_depth=10 * jobs + 100)
                if i < jobs - 20:  # at most queue.depth (20) jobs wait at any time: the rest have finished
                    store.claim(job.job_id, "bench", 3600)
                    if i % 10 == 1:
                        store.fail(job.job_id, "bench", "download_failed", "HTTP 404")
                    else:
                        store.complete(job.job_id, "bench", result_url="http://box/results/x.png",
                                       timings={"segment": 0.25, "geometry": 0.03, "project": 0.03, "total": 0.32},
                                       backends={"segment": "embedded", "geometry": "embedded"}, warnings=[])
            out["fill_s"] = time.perf_counter() - start
            client = httpx.Client(base_url=app.base, trust_env=False, timeout=30, headers=auth)
            cursor = None
            for _ in range(50):  # the cursor 50 pages (1000 jobs) deep
                cursor = client.get("/render/jobs", params={"limit": 20, **({"cursor": cursor} if cursor else {})}
                                    ).json()["next_cursor"]
            queries = {"first page (limit 20)": {"limit": 20}, "limit 100": {"limit": 100},
                       "project_id": {"project_id": projects[7][1]}, "user_id": {"user_id": users[3]},
                       "status=failed": {"status": "failed"}, "page 51 (cursor)": {"limit": 20, "cursor": cursor}}
            rows = [("GET /healthz (reference)", *(lambda t: (percentile(t, 50) * 1e3, percentile(t, 99) * 1e3))(
                sequential(client, 300, lambda c, i: c.get("/healthz"))))]
            for name, params in queries.items():
                times = sequential(client, 300, lambda c, i, p=params: c.get("/render/jobs", params=p))
                rows.append((name, percentile(times, 50) * 1e3, percentile(times, 99) * 1e3))
            out["listing"] = rows
            client.close()
        store.close()
        return out
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per route and measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="connections for the requests/s column")
    parser.add_argument("--pickups", type=int, default=20, help="jobs for the pickup latency")
    parser.add_argument("--model-dir", help="installed models (default: installed from the shared folder)")
    parser.add_argument("--phases", default="http,pickup,events,listing", help="which phases to run")
    parser.add_argument("--events", type=int, default=200, help="stage changes for the event latency")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the store for the listing")
    parser.add_argument("--database-url", help="events and listing on this PostgreSQL database (a fresh schema)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        models = install_models(args.model_dir, tmp)
        rows = phase_http(tmp, models, args.n, args.concurrency) if "http" in phases else None
        pickups = phase_pickup(tmp, models, args.pickups) if "pickup" in phases else None
        database_url = None
        if args.database_url:
            from service_fixtures import postgres_schema

            database_url = stack.enter_context(postgres_schema(args.database_url))
        more = phase_events_listing(tmp, models, args.events, args.jobs, database_url, phases) \
            if phases & {"events", "listing"} else {}

    store_name = "PostgreSQL" if args.database_url else "SQLite"
    if "events" in more:
        ev = more["events"]
        print(f"\nSSE event latency (store write -> event received), {store_name}, n={len(ev)} "
              f"(missed {more['events_missed']}): p50 {percentile(ev, 50):.1f} ms  p95 {percentile(ev, 95):.1f} ms  "
              f"max {max(ev):.1f} ms   target max <= 250 ms (one 200 ms read + delivery): "
              f"{'OK' if max(ev) <= 250 else 'MISSED'}")
    if "listing" in more:
        print(f"\nGET /render/jobs at {args.jobs} jobs, {store_name} (filled in {more['fill_s']:.1f} s), "
              "300 sequential requests each")
        print(f"{'query':<26} {'p50 ms':>8} {'p99 ms':>8}")
        for name, p50, p99 in more["listing"]:
            print(f"{name:<26} {p50:8.2f} {p99:8.2f}")
        worst = max(p50 for name, p50, _ in more["listing"] if not name.startswith("GET /healthz"))
        print(f"  worst p50 = {worst:.2f} ms  (<= 10 ms)   {'OK' if worst <= 10 else 'MISSED'}")
    if rows is None or pickups is None:
        return

    print(f"\nloopback, {os.cpu_count()} CPUs, n={args.n} sequential on one keep-alive connection; "
          f"req/s (c={args.concurrency}) with {args.concurrency} connections\n")
    conc = f"req/s (c={args.concurrency})"
    print(f"{'route':<26} {'p50 ms':>8} {'p99 ms':>8} {'req/s (c=1)':>12} {conc:>12}")
    for name, p50, p99, rps1, rpsc in rows:
        print(f"{name:<26} {p50:8.2f} {p99:8.2f} {rps1:12.0f} {rpsc:12.0f}")
    const, get, post = rows
    pick_ms = [p * 1e3 for p in pickups]
    print(f"\n{'idle pickup (submit->started)':<30} p50 {percentile(pick_ms, 50):6.1f} ms   "
          f"p99 {percentile(pick_ms, 99):6.1f} ms   max {max(pick_ms):6.1f} ms   (n={len(pick_ms)})")
    print("\ntargets:")
    ratio = get[1] / const[1]
    print(f"  GET p50 / constant p50 = {ratio:.2f}  (<= 1.5)   {'OK' if ratio <= 1.5 else 'MISSED'}")
    print(f"  POST p50 = {post[1]:.2f} ms  (<= 5 ms)        {'OK' if post[1] <= 5 else 'MISSED'}")
    p50 = percentile(pick_ms, 50)
    print(f"  pickup p50 = {p50:.1f} ms  (<= 100 ms)    {'OK' if p50 <= 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
