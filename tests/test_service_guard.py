"""API key, SSRF refusal, and a standalone consumer (`render-appliance worker`) beside a `serve` without one."""

from __future__ import annotations

import uuid

import pytest

from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config

KEY = "test-key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("guard")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, "api_key": KEY},
        "worker": {"enabled": False},  # no allow-list: loopback and private networks are refused
    })
    server = Appliance(config, port, tmp / "server.log", api_key=KEY).start(wait_ready=False)
    worker = Appliance(config, port, tmp / "worker.log", command="worker").start(wait_ready=False)
    try:
        server.wait_ready(120)
    except Exception:
        print(worker.log_tail())
        raise
    yield server
    worker.close()
    server.close()


def test_api_key_required_on_render_routes(svc, photos):
    anonymous = svc.http.post("/render/jobs", json={"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc"},
                              headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    wrong = svc.http.post("/render/jobs", json={"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc"},
                          headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert svc.http.get(f"/render/jobs/{uuid.uuid4()}", headers={"Authorization": ""}).status_code == 401
    assert svc.http.post(f"/render/jobs/{uuid.uuid4()}/cancel", headers={"Authorization": ""}).status_code == 401
    ok = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#aabbcc"})
    assert ok.status_code == 201, ok.text
    assert svc.http.get("/healthz", headers={"Authorization": ""}).status_code == 200  # probes need no key


def test_readyz_details_need_the_api_key(svc):
    anonymous = svc.http.get("/readyz", headers={"Authorization": ""})
    assert anonymous.status_code == 200
    checks = anonymous.json()["checks"]
    assert set(checks) >= {"job_store", "storage", "worker"}
    assert all(check == {"ok": True} for check in checks.values()), checks  # no pids, paths, database URL
    detailed = svc.http.get("/readyz").json()["checks"]
    assert "backend" in detailed["job_store"] and "workers" in detailed["worker"]


def test_loopback_photo_refused_without_allow_list(svc, photos):
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#aabbcc"})
    job = svc.wait(r.json()["job_id"], timeout=60)
    assert job["status"] == "failed" and job["error_code"] == "download_failed", job
    assert "127.0.0.1" in job["error_message"] or "loopback" in job["error_message"], job


def test_standalone_worker_did_the_work(svc):
    worker = svc.http.get("/readyz").json()["checks"]["worker"]
    assert worker["ok"] and "supervised_pid" not in worker  # serve runs no worker here
    assert [w["state"] for w in worker["workers"]] == ["ready"]


def test_sigterm_stops_serve_and_its_worker_cleanly(tmp_path, model_dir):
    """A service manager's stop (SIGTERM) ends `serve` promptly, without a shutdown error, and takes the worker along."""
    import signal

    from appliance.worker import pid_alive

    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "paths": {"data_dir": str(tmp_path / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
    })
    server = Appliance(config, port, tmp_path / "server.log").start()
    worker_pid = server.worker_pid()
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit here.
    assert server.proc.wait(20) in (0, -signal.SIGTERM), server.log_tail()
    log = server.log_tail(200)
    assert "Traceback" not in log and "shutdown failed" not in log.lower(), log
    assert not pid_alive(worker_pid), f"worker {worker_pid} outlived serve"
