"""Pipeline busy share with a full queue and slow photo servers, prefetch on vs off.

    .venv/bin/python -m bench.prefetch [--jobs 8] [--latency 1.0] [--render 2.0]

An in-process worker (real job store, queue, local storage, fetch with its SSRF guard) drains `--jobs` queued jobs
whose photo and paint mask come from a local server that waits `--latency` seconds before each answer. The
pipeline is the real embedded projection with a client mask (no segmentation model) plus a pause of `--render`
seconds standing for a GPU render. Busy share = time inside the pipeline / wall time from the first claim to the
last completion (1.0 = the GPU never waits for a download).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE  # noqa: E402
from test_fetch import Reply, jpeg, serve  # noqa: E402

SHARED = ROOT.parent / "shared"


def run(jobs: int, latency: float, render: float, prefetch: int) -> tuple[float, float]:
    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry

    busy: list[float] = []

    class GpuLike(Pipeline):
        def run(self, *args, **kwargs):
            started = time.monotonic()
            try:
                time.sleep(render)
                return super().run(*args, **kwargs)
            finally:
                busy.append(time.monotonic() - started)

    photo = (SHARED / "data" / SMALL_HOUSE).read_bytes()
    out = io.BytesIO()
    Image.fromarray(np.full(SMALL_HOUSE_SIZE[::-1], 255, np.uint8)).save(out, "PNG")
    with tempfile.TemporaryDirectory() as tmp, serve() as srv:
        settings = Settings(data_dir=Path(tmp) / "data", model_dir=Path(tmp) / "models",
                            fetch_allow_networks=("127.0.0.1/32",), prefetch_jobs=prefetch, queue_depth=1000)
        store = JobStore(settings.jobs_db)
        worker = Worker(settings, store, RenderQueue(settings.queue_db),
                        LocalStorage(settings.results_dir, "http://x"), GpuLike(None, LineGeometry()))
        ids = []
        for i in range(jobs):
            srv.routes[f"/h{i}.jpg"] = jpeg(photo, delay=latency)
            srv.routes[f"/m{i}.png"] = Reply(200, {"Content-Type": "image/png"}, out.getvalue(), delay=latency)
            job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{srv.base}/h{i}.jpg", texture_url="#AA3322",
                                  mask_url=f"{srv.base}/m{i}.png", options={}, project_id=None, user_id=None,
                                  idempotency_key=None, request_hash=None, queue_depth=1000)
            ids.append(job.job_id)
        started = time.monotonic()
        for job_id in ids:
            worker.process(job_id)
        wall = time.monotonic() - started
        worker.shutdown()
        assert all(store.get(i).status == "completed" for i in ids)
    return sum(busy) / wall, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--render", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{args.jobs} jobs, photo and mask servers answering after {args.latency:g} s, render {args.render:g} s "
          f"+ projection\n")
    print("| prefetch_jobs | pipeline busy share | wall s |\n|---:|---:|---:|")
    for prefetch in (0, 2):
        share, wall = run(args.jobs, args.latency, args.render, prefetch)
        print(f"| {prefetch} | {share:.0%} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
