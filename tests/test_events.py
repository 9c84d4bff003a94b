"""GET /render/jobs/{id}/events through a real HTTP client against a real `render-appliance serve` (the real
pipeline, its geometry stage paused so that a second job waits): queue position while waiting, the stages in
order, one final event with the poll body, then the end of the stream; the API key and CORS rules apply."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config

KEY = "events-key"
ORIGIN = "http://app.example.test"
DELAY = 0.6  # geometry pause: a second job waits in the queue meanwhile


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp("events")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, "api_key": KEY, "cors_origins": [ORIGIN]},
        "fetch": {"allow_networks": ["127.0.0.1"]},
        "worker": {"pipeline": "service_fixtures:slow_pipeline", "lease_seconds": 10},
    })
    app = Appliance(config, port, tmp / "server.log", api_key=KEY,
                    env={"RENDER_TEST_GEOMETRY_DELAY": str(DELAY),
                         # every stage outlasts a stream's 200 ms read, so each one is seen (not coalesced)
                         "RENDER_TEST_STAGE_PAUSE": "0.5"}).start()
    yield app
    app.close()


def read_events(response: httpx.Response) -> list[tuple[str, dict, float]]:
    """(event, data, arrival time) of each event of an SSE response, until the server ends the stream."""
    events, name, data = [], "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((name, json.loads("\n".join(data)), time.monotonic()))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def test_stream_follows_a_queued_job_to_completion(svc, photos):
    body = {"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99"}
    first = svc.submit(body).json()["job_id"]
    svc.wait(first, 60, until=lambda j: j.get("stage") not in (None, "queued"))
    second = svc.submit(body).json()["job_id"]
    with svc.http.stream("GET", f"/render/jobs/{second}/events", timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r)
    names = [e[0] for e in events]
    assert names[-1] == "completed" and names.count("completed") == 1 and set(names[:-1]) == {"progress"}, names
    assert events[0][1]["stage"] == "queued" and events[0][1]["queue_position"] == 0  # the first job runs
    stages = [e[1]["stage"] for e in events[:-1]]
    order = ["queued", "starting", "downloading", "segment", "geometry", "project", "uploading"]
    seen = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert [s for s in order if s in seen] == seen, seen  # never backwards
    assert {"queued", "segment", "geometry", "project"} <= set(seen), seen
    progress = [e[1]["progress"] for e in events[:-1]]
    assert progress == sorted(progress)
    final = events[-1][1]
    assert final == svc.job(second) and final["result_url"]
    assert len({json.dumps(e[1], sort_keys=True) for e in events}) == len(events)  # only changes are sent
    assert svc.job(first)["status"] == "completed"

    # A finished job: one final event at once, then the end.
    with svc.http.stream("GET", f"/render/jobs/{first}/events") as r:
        assert [e[0] for e in read_events(r)] == ["completed"]


def test_stream_refusals_and_cors(svc):
    r = svc.http.get("/render/jobs/00000000-0000-4000-8000-000000000000/events")
    assert r.status_code == 404 and r.json() == {"error": "job_not_found"}
    anonymous = httpx.get(f"{svc.base}/render/jobs/x/events", trust_env=False)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    preflight = httpx.options(f"{svc.base}/render/jobs/x/events", trust_env=False, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{svc.base}/render/jobs/x/events", trust_env=False, headers={
        "Origin": "http://evil.example.test", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers
    job = svc.submit({"image_url": "http://127.0.0.1:9/none.jpg", "texture_url": "#010203"}).json()["job_id"]
    with svc.http.stream("GET", f"/render/jobs/{job}/events", headers={"Origin": ORIGIN}) as r:
        assert r.headers["access-control-allow-origin"] == ORIGIN
        events = read_events(r)
    assert events[-1][0] == "failed" and events[-1][1]["error_code"] == "download_failed"


def test_streams_are_capped_and_end_after_their_lifetime(tmp_path, model_dir):
    """Each open stream reads the store 5 times a second: over server.events_max_streams a new one is refused with
    503 too_many_streams and a Retry-After, and a stream ends by itself after server.events_max_stream_seconds
    (freeing its place; an EventSource reconnects)."""
    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "paths": {"data_dir": str(tmp_path / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, "api_key": KEY, "events_max_streams": 1, "events_max_stream_seconds": 2},
        "worker": {"enabled": False},  # the job stays queued: its stream would never end by itself
    })
    app = Appliance(config, port, tmp_path / "server.log", api_key=KEY).start(wait_ready=False)  # no worker: not ready
    try:
        app.wait_alive(60)
        job = app.submit({"image_url": "http://127.0.0.1:9/none.jpg", "texture_url": "#010203"}).json()["job_id"]
        started = time.monotonic()
        with app.http.stream("GET", f"/render/jobs/{job}/events", timeout=10) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            head = [next(lines)]
            while head[-1] != "":  # the first event, whole: the stream is open and counted
                head.append(next(lines))
            assert "event: progress" in head, head
            second = app.http.get(f"/render/jobs/{job}/events", timeout=10)
            assert second.status_code == 503 and second.json()["error"] == "too_many_streams", second.text
            assert int(second.headers["retry-after"]) > 0
            rest = list(lines)  # ends at its lifetime
        events = [line for line in rest if line.startswith("event:")]
        lasted = time.monotonic() - started
        assert 1.5 < lasted < 6 and events == [], (lasted, rest)  # nothing changed: no event, then the end
        with app.http.stream("GET", f"/render/jobs/{job}/events", timeout=10) as again:
            assert again.status_code == 200  # its place was freed
    finally:
        app.close()
