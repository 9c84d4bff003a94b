"""Jobs survive: cancel while running, kill -9 of the worker, kill -9 of the whole server, and retention.

The worker runs a real Pipeline whose geometry stage pauses first (tests/service_fixtures.py: slow_pipeline), so
that a job is reliably 'running' when the test strikes. Everything else is real: CLI-started server, consumer
process, SQLite files, HTTP photo server."""

from __future__ import annotations

import io
import os
import signal
import time
import urllib.parse

import pytest
from PIL import Image

from appliance.worker import pid_alive
from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH, Appliance, free_port, photo_server, write_config

DELAY = 2.0


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="module")
def box(tmp_path_factory, model_dir):
    """A mutable holder: the kill -9 test replaces the server with a restarted one on the same data folder."""
    tmp = tmp_path_factory.mktemp("recovery")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "queue": {"depth": 10, "max_attempts": 3, "retention_hours": 0.0015},  # 5.4 s
        "fetch": {"allow_networks": ["127.0.0.1"]},
        "worker": {"pipeline": "service_fixtures:slow_pipeline", "lease_seconds": 6,
                   "maintenance_interval_seconds": 1},
    })
    holder = {"tmp": tmp, "make": lambda: Appliance(config, port, tmp / "server.log",
                                                     env={"RENDER_TEST_GEOMETRY_DELAY": str(DELAY)})}
    holder["svc"] = holder["make"]().start()
    yield holder
    holder["svc"].close()


def _submit_and_wait_running(svc, photos, **extra):
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    svc.wait(job_id, timeout=30, until=lambda j: j.get("stage") == "geometry" or j["status"] != "processing")
    return job_id


def test_cancel_running_job_between_stages(box, photos):
    svc = box["svc"]
    job_id = _submit_and_wait_running(svc, photos)
    r = svc.http.post(f"/render/jobs/{job_id}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "processing" and r.json()["cancel_requested"] is True
    job = svc.wait(job_id, timeout=DELAY + 20)
    assert job["status"] == "failed" and job["error_code"] == "canceled", job
    assert job["started_at"] is not None and "result_url" not in job


def test_kill9_worker_mid_render_job_completes(box, photos):
    svc = box["svc"]
    job_id = _submit_and_wait_running(svc, photos)
    old = svc.worker_pid()
    os.kill(old, signal.SIGKILL)
    job = svc.wait(job_id, timeout=90)
    assert job["status"] == "completed", job
    assert job["attempts"] == 2  # the killed attempt counted
    ready = svc.wait_ready(60)
    assert ready["checks"]["worker"]["supervised_pid"] != old and ready["checks"]["worker"]["restarts"] >= 1
    image = Image.open(io.BytesIO(svc.http.get(job["result_url"]).content))
    assert image.size == SMALL_HOUSE_SIZE


def test_kill9_server_restart_job_completes(box, photos):
    svc = box["svc"]
    job_id = _submit_and_wait_running(svc, photos, texture_url="#7A8B9C")
    worker = svc.worker_pid()
    svc.kill9()
    deadline = time.monotonic() + 10
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(worker), "the orphaned worker kept running"
    svc.http.close()
    box["svc"] = svc = box["make"]().start()
    job = svc.wait(job_id, timeout=90)
    assert job["status"] == "completed", job
    assert svc.http.get(job["result_url"]).status_code == 200


def test_retention_prunes_jobs_and_local_results(box, photos):
    svc = box["svc"]
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#556677"})
    job = svc.wait(r.json()["job_id"], timeout=60)
    assert job["status"] == "completed", job
    url = job["result_url"]
    relative = urllib.parse.unquote(urllib.parse.urlparse(url).path.removeprefix("/results/"))
    path = box["tmp"] / "data" / "results" / relative
    assert path.is_file() and svc.http.get(url).status_code == 200
    deadline = time.monotonic() + 30  # retention 5.4 s, housekeeping every second
    while time.monotonic() < deadline and svc.http.get(f"/render/jobs/{job['job_id']}").status_code != 404:
        time.sleep(0.2)
    assert svc.http.get(f"/render/jobs/{job['job_id']}").status_code == 404
    assert not path.exists()
    assert svc.http.get(url).status_code == 404
