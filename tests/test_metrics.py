"""GET /metrics: a real scrape of a real `render-appliance serve`, parsed with prometheus_client's own parser.

What the worker process counts (jobs by final status, stage and job durations, bytes) reaches the serving
process's scrape (multiprocess mode); queue figures come from the job store; a killed worker counts a restart; a
restart of the appliance starts from empty metric files; the token rules hold."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config

API_KEY, METRICS_TOKEN = "api-key-m", "metrics-token-m"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("metrics")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, "api_key": API_KEY, "metrics_token": METRICS_TOKEN},
        "fetch": {"allow_networks": ["127.0.0.1"]},
        "worker": {"lease_seconds": 10},
    })
    app = Appliance(config, port, tmp / "server.log", api_key=API_KEY).start()
    yield app
    app.close()


def scrape(svc, token=METRICS_TOKEN) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{svc.base}/metrics", headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_scrape_counts_jobs_bytes_stages_and_restarts(svc, photos):
    ok = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99"}).json()["job_id"]
    bad = svc.submit({"image_url": f"{photos}/houses/missing.jpg", "texture_url": "#7A8B99"}).json()["job_id"]
    assert svc.wait(ok, 120)["status"] == "completed"
    assert svc.wait(bad, 60)["error_code"] == "download_failed"

    m = scrape(svc)
    assert value(m, "render_jobs_finished_total", status="completed", error_code="") == 1
    assert value(m, "render_jobs_finished_total", status="failed", error_code="download_failed") == 1
    assert value(m, "render_job_duration_seconds_count", status="completed") == 1
    assert value(m, "render_job_duration_seconds_count", status="failed") == 1
    photo_bytes = os.path.getsize(svc_photo_path(photos))
    assert value(m, "render_download_bytes_total", input="image_url") == photo_bytes
    assert value(m, "render_download_failures_total", input="image_url") == 1
    assert value(m, "render_upload_bytes_total") > 10_000
    timings = svc.job(ok)["timings"]
    for stage in ("segment", "geometry", "project"):
        assert value(m, "render_stage_duration_seconds_count", stage=stage) == 1
        assert value(m, "render_stage_duration_seconds_sum", stage=stage) == pytest.approx(timings[stage], abs=1e-3)
    assert value(m, "render_queue_depth") == 0 and value(m, "render_jobs_running") == 0
    assert value(m, "render_queue_oldest_wait_seconds") == 0
    assert value(m, "render_worker_restarts_total", reason="exit") == 0

    pid = svc.worker_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while value(scrape(svc), "render_worker_restarts_total", reason="exit") != 1:
        assert time.monotonic() < deadline, svc.log_tail()
        time.sleep(0.2)
    svc.wait_ready()
    # The killed process's counters stay in the sums (counters never go down).
    assert value(scrape(svc), "render_jobs_finished_total", status="completed", error_code="") == 1


def svc_photo_path(photos_base: str):
    from conftest import DATA

    return DATA / SMALL_HOUSE


def test_metrics_token_rules_and_fresh_files_after_restart(svc):
    assert scrape(svc, API_KEY)  # the API key is accepted too
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(f"{svc.base}/metrics", headers=headers, trust_env=False)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    svc.stop()
    svc.start()
    m = scrape(svc)
    assert value(m, "render_jobs_finished_total", status="completed", error_code="") == 0
    assert value(m, "render_worker_restarts_total", reason="exit") == 0
