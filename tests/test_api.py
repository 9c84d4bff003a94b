"""The job API end to end: a real `render-appliance serve` (subprocess), a real consumer, real SQLite files, photos
from a real local HTTP server, the real embedded pipeline. One server is shared by the tests of this module.

Every test runs twice: with the embedded SQLite job store (the default) and with the PostgreSQL job store
(cluster.database_url; skipped when RENDER_TEST_POSTGRES_URL is unset) -- the same test bodies."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from PIL import Image

from service_fixtures import (NO_POSTGRES, POSTGRES_URL, SMALL_HOUSE, SMALL_HOUSE_SIZE, SWATCH, Appliance, free_port,
                              photo_server, postgres_schema, write_config)

ALLOWED_ORIGIN = "http://app.example.test"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    extra = tmp_path_factory.mktemp("photos")
    Image.new("RGB", (120, 80), (200, 180, 160)).save(extra / "tiny.png")
    with photo_server(shared_dir / "data", extra) as base:
        yield base


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request):
    """The job store the server uses: None = the embedded SQLite file; else a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir, photos, database_url):
    tmp = tmp_path_factory.mktemp("svc")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, "cors_origins": [ALLOWED_ORIGIN]},
        "queue": {"depth": 3},
        "fetch": {"allow_networks": ["127.0.0.1"]},
        "worker": {"lease_seconds": 10},
        "cluster": {"database_url": database_url},
    })
    app = Appliance(config, port, tmp / "server.log").start()
    if database_url:
        assert not (tmp / "data" / "jobs.db").exists()  # the SQLite job store is not used
    yield app
    app.close()


@pytest.fixture
def idle(svc):
    svc.drain()
    yield svc
    svc.drain()


def body(photos, **extra):
    return {"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra}


def test_health_ready_and_openapi(svc):
    assert svc.http.get("/healthz").json() == {"status": "ok"}
    ready = svc.http.get("/readyz").json()
    assert ready["status"] == "ready" and all(c["ok"] for c in ready["checks"].values()), ready
    assert svc.http.get("/docs").status_code == 200
    spec = svc.http.get("/openapi.json").json()
    for path in ("/render/jobs", "/render/jobs/{job_id}", "/render/jobs/{job_id}/cancel", "/healthz", "/readyz"):
        assert path in spec["paths"]
    schema = spec["paths"]["/render/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:  # the request model, published under components/schemas
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert "#RRGGBB" in schema["properties"]["texture_url"]["description"]


def test_happy_path_swatch_to_result_png(idle, photos):
    user, project = str(uuid.uuid4()), str(uuid.uuid4())
    r = idle.submit(body(photos, user_id=user, project_id=project, options={"real_world_scale": 16}))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "processing" and set(created) == {"job_id", "status", "poll_url"}
    assert created["poll_url"].endswith(f"/render/jobs/{created['job_id']}")
    seen_stages = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = idle.job(created["job_id"])
        if job["status"] != "processing":
            break
        assert 0.0 <= job["progress"] <= 1.0
        seen_stages.add(job["stage"])
        time.sleep(0.02)
    assert job["status"] == "completed", job
    assert job["project_id"] == project and job["user_id"] == user
    assert set(job["timings"]) >= {"segment", "geometry", "project"}
    assert f"renders/{user}/{project}-{created['job_id']}.png" in job["result_url"]
    png = idle.http.get(job["result_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and image.size == SMALL_HOUSE_SIZE
    assert seen_stages & {"queued", "starting", "downloading", "segment", "geometry", "project", "uploading"}


def test_happy_path_paint_colour(idle, photos):
    r = idle.submit(body(photos, texture_url="#b04a3a"))
    assert r.status_code == 201, r.text
    job = idle.wait(r.json()["job_id"])
    assert job["status"] == "completed", job
    image = Image.open(io.BytesIO(idle.http.get(job["result_url"]).content))
    assert image.size == SMALL_HOUSE_SIZE


@pytest.mark.parametrize("payload, field", [
    ({"texture_url": "#aabbcc"}, "image_url"),
    ({"image_url": "ftp://example.com/a.jpg", "texture_url": "#aabbcc"}, "image_url"),
    ({"image_url": "http://user:pw@example.com/a.jpg", "texture_url": "#aabbcc"}, "image_url"),
    ({"image_url": "http://example.com/a.jpg"}, "texture_url"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#abc"}, "texture_url"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "not a url"}, "texture_url"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "mask_url": 7}, "mask_url"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "project_id": str(uuid.uuid4())},
     "user_id"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "user_id": "42"}, "user_id"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "user_id": str(uuid.uuid4()),
      "project_id": "p-1"}, "project_id"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "options": {"speed": 3}}, "options.speed"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "options": {"real_world_scale": 0}},
     "options.real_world_scale"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "options": {"stage_timeout_seconds": -1}},
     "options.stage_timeout_seconds"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "options": []}, "options"),
    ({"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "colour": "red"}, "colour"),
    (["not", "an", "object"], "body"),
])
def test_validation_failed_400(svc, payload, field):
    r = svc.submit(payload)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "validation_failed"
    assert field in r.json()["details"], r.json()


def test_non_json_body_400(svc):
    r = svc.http.post("/render/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "validation_failed", "details": {"body": "not valid JSON"}}


def test_unknown_job_404(svc):
    for r in (svc.http.get(f"/render/jobs/{uuid.uuid4()}"), svc.http.post(f"/render/jobs/{uuid.uuid4()}/cancel")):
        assert r.status_code == 404 and r.json()["error"] == "job_not_found"


def _fails_with(svc, payload, code, timeout=60):
    r = svc.submit(payload)
    assert r.status_code == 201, r.text
    job = svc.wait(r.json()["job_id"], timeout=timeout)
    assert job["status"] == "failed", job
    assert job["error_code"] == code, job
    assert job["error_message"]
    return job


def test_download_failed_on_missing_photo(idle, photos):
    job = _fails_with(idle, body(photos, image_url=f"{photos}/houses/no_such_house.jpg"), "download_failed")
    assert "404" in job["error_message"]


def test_validation_failed_on_tiny_photo(idle, photos):
    job = _fails_with(idle, body(photos, image_url=f"{photos}/tiny.png"), "validation_failed")
    assert "too small" in job["error_message"]


def test_refinement_refused_at_post_without_a_refiner(idle, photos):
    """The only live worker runs the embedded set (no refiner): refused up front, no job made."""
    before = idle.http.get("/readyz").json()["checks"]["job_store"]["active_jobs"]
    r = idle.submit(body(photos, options={"enable_refinement": True}))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "validation_failed"
    assert "refinement" in r.json()["details"]["options.enable_refinement"]
    assert idle.http.get("/readyz").json()["checks"]["job_store"]["active_jobs"] == before
    assert idle.submit(body(photos, options={"enable_refinement": False})).status_code == 201


def test_a_waiting_job_store_read_stalls_no_other_request(svc, database_url):
    """PostgreSQL reads are network round trips that can wait on locks: GET /render/jobs/{id} must not hold the
    event loop meanwhile (/healthz answers at once)."""
    if database_url is None:
        pytest.skip("SQLite reads in WAL mode never wait; they are served on the event loop")
    import threading

    import httpx
    import psycopg

    answers: dict[str, object] = {}

    def get(name: str, path: str) -> None:
        with httpx.Client(base_url=svc.base, timeout=30, trust_env=False) as client:
            started = time.monotonic()
            answers[name] = client.get(path).status_code
            answers[name + "_s"] = time.monotonic() - started

    with psycopg.connect(database_url) as conn:  # a transaction holding the table (as a long migration or backup)
        conn.execute("LOCK TABLE render_jobs IN ACCESS EXCLUSIVE MODE")
        slow = threading.Thread(target=get, args=("job", f"/render/jobs/{uuid.uuid4()}"))
        slow.start()
        time.sleep(0.5)  # the read is waiting on the lock now
        fast = threading.Thread(target=get, args=("health", "/healthz"))
        fast.start()
        fast.join(3.0)
        conn.rollback()
    slow.join(30)
    fast.join(30)
    assert answers["job"] == 404 and answers["health"] == 200, answers
    assert answers["health_s"] < 2.5, answers  # not held until the lock went (about 3 s)


def test_timeout_when_stage_limit_is_tiny(idle, photos):
    job = _fails_with(idle, body(photos, options={"stage_timeout_seconds": 0.001}), "timeout")
    assert "time limit" in job["error_message"]
    # The worker carries on with the next job.
    r = idle.submit(body(photos, texture_url="#336699"))
    assert idle.wait(r.json()["job_id"])["status"] == "completed"


def test_idempotency_key_same_job_and_conflict(idle, photos):
    key = f"retry-{uuid.uuid4()}"
    first = idle.submit(body(photos, texture_url="#112233"), headers={"Idempotency-Key": key})
    again = idle.submit(body(photos, texture_url="#112233"), headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 201
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = idle.submit(body(photos, texture_url="#445566"), headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    fresh = idle.submit(body(photos, texture_url="#112233"), headers={"Idempotency-Key": key + "-2"})
    assert fresh.json()["job_id"] != first.json()["job_id"]
    for r in (first, fresh):
        assert idle.wait(r.json()["job_id"])["status"] == "completed"


def test_cancel_queued_job_at_once(idle, photos):
    running = idle.submit(body(photos)).json()["job_id"]
    queued = idle.submit(body(photos, texture_url="#998877")).json()["job_id"]
    assert idle.job(queued)["status"] == "processing"
    r = idle.http.post(f"/render/jobs/{queued}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and r.json()["error_code"] == "canceled"
    job = idle.job(queued)
    assert job["status"] == "failed" and job["error_code"] == "canceled" and job["started_at"] is None
    assert idle.http.post(f"/render/jobs/{queued}/cancel").status_code == 200  # idempotent
    assert idle.wait(running)["status"] == "completed"
    assert idle.http.post(f"/render/jobs/{running}/cancel").status_code == 409
    time.sleep(0.5)
    assert idle.job(queued)["error_code"] == "canceled"  # the worker never picked it up


def test_queue_position_and_queue_full(idle, photos):
    accepted = [idle.submit(body(photos, texture_url=f"#0000{i:02X}")) for i in range(3)]
    assert [r.status_code for r in accepted] == [201, 201, 201]
    last = idle.job(accepted[-1].json()["job_id"])
    assert last["status"] == "processing" and last["queue_position"] >= 1
    full = idle.submit(body(photos))
    assert full.status_code == 503, full.text
    assert full.json()["error"] == "queue_full"
    assert int(full.headers["Retry-After"]) >= 1
    for r in accepted:
        assert idle.wait(r.json()["job_id"])["status"] == "completed"
    assert idle.submit(body(photos, texture_url="#123456")).status_code == 201  # room again


def test_cors_allow_list(svc):
    preflight = svc.http.options("/render/jobs", headers={"Origin": ALLOWED_ORIGIN,
                                                          "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    ok = svc.http.get(f"/render/jobs/{uuid.uuid4()}", headers={"Origin": ALLOWED_ORIGIN})
    assert ok.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = svc.http.get(f"/render/jobs/{uuid.uuid4()}", headers={"Origin": "http://evil.example.test"})
    assert "access-control-allow-origin" not in other.headers
    bad_preflight = svc.http.options("/render/jobs", headers={"Origin": "http://evil.example.test",
                                                              "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in bad_preflight.headers


def test_results_route_refuses_traversal(svc):
    for path in ("/results/../jobs.db", "/results/%2e%2e/jobs.db", "/results/renders/anonymous/nope.png",
                 "/results/"):
        r = svc.http.get(path)
        assert r.status_code == 404, path
