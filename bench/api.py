"""API benchmark on loopback: POST /render/jobs and GET /render/jobs/{id} next to a constant route (/healthz) of the
same app, in the same run, and idle pickup latency (submit -> the worker marks the job started).

    .venv/bin/python -m bench.api [--n 2000] [--concurrency 8] [--pickups 20] [--model-dir DIR]

Phase 1 starts `render-appliance serve` with its worker disabled (jobs stay queued: the HTTP path alone is
measured, no render competes for the CPU). Phase 2 starts a fresh appliance with its worker and a local photo
server, lets the worker go idle, submits one small job at a time and reads `started_at - created_at` (both stamped
by the appliance). Targets: GET <= 1.5x the constant route; POST p50 <= 5 ms; pickup <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per route and measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="connections for the requests/s column")
    parser.add_argument("--pickups", type=int, default=20, help="jobs for the pickup latency")
    parser.add_argument("--model-dir", help="installed models (default: installed from the shared folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        models = install_models(args.model_dir, tmp)
        rows = phase_http(tmp, models, args.n, args.concurrency)
        pickups = phase_pickup(tmp, models, args.pickups)

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
