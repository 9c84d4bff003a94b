"""Webhooks with real parts: a real local receiver (an HTTP server) that verifies every signature with the
`standardwebhooks` library, the real job store, a real `render-appliance serve`.

- a receiver that fails twice then accepts: retries observed, the same delivery id on each, one logical delivery
  per event, the poll body showing the delivery state;
- a receiver that is down while the job completes and across a kill -9 of the appliance: delivered after the
  restart, once;
- a 4xx other than 408/429 stops the retries; the SSRF guard applies to the delivery; back-off stays in bounds."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.server
import json
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from standardwebhooks import Webhook

from appliance.config import Settings
from appliance.deliveries import Deliveries
from appliance.jobs import JobStore
from appliance.webhooks import Dispatcher, backoff, post, sign
from service_fixtures import SMALL_HOUSE, Appliance, free_port, photo_server, write_config

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Receiver:
    """A webhook receiver on 127.0.0.1:`port`: answers each delivery id with `script` in turn (then 200), checks
    each signature, keeps every request."""

    def __init__(self, port: int = 0, script: tuple[int, ...] = ()):
        self.script, self.requests, self.answers = script, [], {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = Webhook(SECRET).verify(body, headers)  # raises on a bad signature
                msg_id = headers["webhook-id"]
                n = receiver.answers.get(msg_id, 0)
                receiver.answers[msg_id] = n + 1
                status = receiver.script[n] if n < len(receiver.script) else 200
                receiver.requests.append({"headers": headers, "body": verified, "status": status,
                                          "at": time.monotonic()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def receiver(port: int = 0, script: tuple[int, ...] = ()) -> Iterator[Receiver]:
    r = Receiver(port, script)
    try:
        yield r
    finally:
        r.close()


def wait_for(check, timeout: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}\n{log()}"
        time.sleep(0.05)


# --- the dispatcher against the real store, driven tick by tick -------------------------------------------

def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(data_dir=tmp_path, webhook_secret=SECRET, webhook_base_delay=0.05, webhook_max_delay=0.2,
                    webhook_timeout=2.0, webhook_allow_networks=("127.0.0.1",), **extra)


def _finished_job(store: JobStore, url: str, events=None) -> str:
    job_id = str(uuid.uuid4())
    store.create(job_id=job_id, image_url="http://x/p.jpg", texture_url="#112233", mask_url=None, options={},
                 project_id=None, user_id=None, idempotency_key=None, request_hash=None, queue_depth=100,
                 webhook_url=url, webhook_events=events)
    assert store.claim(job_id, "w", 30)
    assert store.complete(job_id, "w", result_url="http://box/results/x.png")
    return job_id


def _view(job):
    return {"job_id": job.job_id, "status": job.status, "result_url": job.result_url}


def test_receiver_refusal_stops_retries_and_429_is_retried(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    dispatcher = Dispatcher(_settings(tmp_path), store, _view)
    with receiver(script=(410,)) as gone, receiver(script=(429, 503)) as busy:
        refused = _finished_job(store, gone.url)
        retried = _finished_job(store, busy.url)
        deadline = time.monotonic() + 20
        while len(busy.requests) < 3 and time.monotonic() < deadline:
            for d in dispatcher.deliveries.claim_due(dispatcher.owner, 30):
                dispatcher.attempt(d)
            dispatcher.deliveries.sweep(_view)
            time.sleep(0.02)
        [g] = Deliveries(store).for_job(refused)
        assert (g.state, g.attempts, g.last_status) == ("failed", 1, 410) and len(gone.requests) == 1
        [b] = Deliveries(store).for_job(retried)
        assert (b.state, b.attempts, b.last_status) == ("delivered", 3, 200)
        assert [r["status"] for r in busy.requests] == [429, 503, 200]
        assert len({r["headers"]["webhook-id"] for r in busy.requests}) == 1
        assert busy.requests[0]["body"]["event"] == "completed"
    store.close()


def test_outbox_records_each_event_once_and_prunes_finished_deliveries(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    outbox = Deliveries(store)
    job_id = _finished_job(store, "http://127.0.0.1:9/hook")
    assert outbox.sweep(_view) == 1 and outbox.sweep(_view) == 0  # the job's flag is cleared with the insert
    store._write("UPDATE render_jobs SET webhook_pending = 1 WHERE job_id = ?", (job_id,))  # a crash in between
    assert outbox.sweep(_view) == 0 and len(outbox.for_job(job_id)) == 1  # the unique key: still one
    [d] = outbox.claim_due("me", 30)
    assert outbox.record(d, "me", "delivered", status=200, error=None)
    assert outbox.prune(time.time() - 3600) == 0  # recent: kept
    assert outbox.prune(time.time() + 1) == 1 and outbox.for_job(job_id) == []
    store.close()


def test_delivery_ssrf_guard_and_backoff_bounds(tmp_path):
    with receiver() as r:
        refused = post(r.url, b"{}", {}, timeout=2.0)  # loopback, not in allow_networks
        assert refused.state == "failed" and "loopback" in refused.error and not r.requests
        ts = int(time.time())
        signed = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sign(SECRET, "msg_1", ts,
                                                                                                 b"{}")}
        allowed = post(r.url, b"{}", signed, timeout=2.0, allow_networks=("127.0.0.1",))
        assert (allowed.state, allowed.status) == ("delivered", 200) and len(r.requests) == 1
    # the Standard Webhooks reference vector (clients/react/webhookVerify.js is checked against it too)
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    # back-off: exponential, capped, jittered into [0.5, 1) of the step
    assert backoff(1, 5, 3600, rng=lambda: 0.0) == 2.5 and backoff(1, 5, 3600, rng=lambda: 0.999) < 5
    assert backoff(4, 5, 3600, rng=lambda: 0.0) == 20 and backoff(30, 5, 3600, rng=lambda: 0.0) == 1800


# --- end to end through `render-appliance serve` -----------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


def _appliance(tmp: Path, model_dir: Path) -> Appliance:
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "fetch": {"allow_networks": ["127.0.0.1"]},
        "webhooks": {"secret": SECRET, "base_delay_seconds": 0.3, "max_delay_seconds": 1.0,
                     "allow_networks": ["127.0.0.1"]},
        "worker": {"lease_seconds": 10},
    })
    return Appliance(config, port, tmp / "server.log")


def test_fails_twice_then_accepts_one_delivery_per_event(tmp_path, model_dir, photos):
    svc = _appliance(tmp_path, model_dir).start()
    try:
        with receiver(script=(500, 500)) as hook:
            r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                            "webhook_url": hook.url, "webhook_events": ["completed", "progress"]})
            assert r.status_code == 201, r.text
            job_id = r.json()["job_id"]
            done = svc.wait(job_id, 120)
            assert done["status"] == "completed"

            def delivered():
                view = svc.job(job_id)["webhook"]
                ok = [d for d in view["deliveries"] if d["event"] == "completed" and d["state"] == "delivered"]
                return view if ok and all(d["state"] != "pending" for d in view["deliveries"]) else None

            view = wait_for(delivered, 60, "completed webhook not delivered", svc.log_tail)
        assert view["events"] == ["completed", "progress"]
        by_id: dict[str, list] = {}
        for req in hook.requests:
            by_id.setdefault(req["headers"]["webhook-id"], []).append(req)
        completed = [rs for rs in by_id.values() if rs[0]["body"]["event"] == "completed"]
        assert len(completed) == 1  # one logical delivery for the event...
        assert [q["status"] for q in completed[0]] == [500, 500, 200]  # ...tried three times
        gaps = [b["at"] - a["at"] for a, b in zip(completed[0], completed[0][1:])]
        assert gaps[0] >= 0.14 and gaps[1] >= 0.29, gaps  # back-off: >= half of 0.3 s, then of 0.6 s
        body = completed[0][-1]["body"]
        assert body["delivery_id"] == completed[0][0]["headers"]["webhook-id"]
        assert body["timestamp"] and body["result_url"] == done["result_url"]
        assert {k: v for k, v in body.items() if k not in ("event", "delivery_id", "timestamp")} == \
            {k: v for k, v in svc.job(job_id).items() if k != "webhook"}  # the poll body
        [record] = [d for d in view["deliveries"] if d["event"] == "completed"]
        assert record["attempts"] == 3 and record["last_status"] == 200 and record["delivered_at"]
        progress = [rs[0]["body"]["stage"] for rs in by_id.values() if rs[0]["body"]["event"] == "progress"]
        assert progress and set(progress) <= {"starting", "downloading", "segment", "geometry", "project",
                                              "uploading"} and len(progress) == len(set(progress))
        assert all(d["state"] == "delivered" for d in view["deliveries"])
        from prometheus_client.parser import text_string_to_metric_families

        scraped = {(x.name, tuple(sorted(x.labels.items()))): x.value
                   for f in text_string_to_metric_families(svc.http.get("/metrics").text) for x in f.samples}
        outcome = lambda o: scraped.get(("render_webhook_deliveries_total",  # noqa: E731
                                         (("event", "completed"), ("outcome", o))), 0)
        assert (outcome("retry"), outcome("delivered")) == (2, 1)
        assert scraped[("render_webhook_deliveries_pending", ())] == 0

        bad = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                          "webhook_events": ["completed"]})
        assert bad.status_code == 400 and "webhook_events" in bad.json()["details"]
        bad = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                          "webhook_url": "ftp://x/y", "webhook_events": ["done"]})
        assert bad.status_code == 400 and "webhook_url" in bad.json()["details"], bad.json()
    finally:
        svc.close()


def test_receiver_down_across_an_appliance_kill_and_restart(tmp_path, model_dir, photos):
    hook_port = free_port()  # nothing listens there yet: every attempt fails to connect
    svc = _appliance(tmp_path, model_dir).start()
    try:
        url = f"http://127.0.0.1:{hook_port}/hook"
        job_id = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99",
                             "webhook_url": url}).json()["job_id"]
        assert svc.wait(job_id, 120)["status"] == "completed"
        first = wait_for(lambda: [d for d in svc.job(job_id)["webhook"]["deliveries"] if d["attempts"] >= 2], 30,
                         "no failed attempts yet", svc.log_tail)[0]
        assert first["state"] == "pending" and "connect" in first["last_error"]
        svc.kill9()
        with receiver(hook_port) as hook:
            svc.start()
            wait_for(lambda: svc.job(job_id)["webhook"]["deliveries"][0]["state"] == "delivered", 30,
                     "not delivered after the restart", svc.log_tail)
            time.sleep(1.0)  # nothing more arrives
            [d] = svc.job(job_id)["webhook"]["deliveries"]
            assert d["delivery_id"] == first["delivery_id"] and d["attempts"] > first["attempts"]
            assert [r["headers"]["webhook-id"] for r in hook.requests] == [first["delivery_id"]]
            assert hook.requests[0]["body"]["job_id"] == job_id and hook.requests[0]["body"]["event"] == "completed"
    finally:
        svc.close()



def _running_job(store: JobStore, url: str) -> str:
    """A running job that subscribed to progress, seen in a stage."""
    job_id = str(uuid.uuid4())
    store.create(job_id=job_id, image_url="http://x/p.jpg", texture_url="#112233", mask_url=None, options={},
                 project_id=None, user_id=None, idempotency_key=None, request_hash=None, queue_depth=100,
                 webhook_url=url, webhook_events=["progress", "completed"])
    assert store.claim(job_id, "w", 30) and store.set_stage(job_id, "w", "downloading", 0.0)
    time.sleep(0.002)  # distinct created_at
    return job_id


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_final_events_are_swept_before_progress_ones(tmp_path, backend):
    """Running jobs that subscribed to progress stay flagged while they run: a batch must still take the finished
    job (created and updated after them) first, then the oldest running ones. On PostgreSQL the planner is held
    to a sequential scan, the plan it picks when most of a big table matches: rows then come in heap order, where
    the finished job (updated last) is at the end."""
    if backend == "postgresql":
        from service_fixtures import NO_POSTGRES, POSTGRES_URL, postgres_schema
        if not POSTGRES_URL:
            pytest.skip(NO_POSTGRES)
        context = postgres_schema(POSTGRES_URL)
    else:
        context = contextlib.nullcontext(str(tmp_path / "jobs.db"))
    with context as where:
        if backend == "postgresql":
            where += "%20-cenable_indexscan%3Doff%20-cenable_bitmapscan%3Doff%20-cenable_indexonlyscan%3Doff"
        store = JobStore(where)
        outbox = Deliveries(store)
        running = [_running_job(store, "http://127.0.0.1:9/hook") for _ in range(6)]
        finished = _finished_job(store, "http://127.0.0.1:9/hook")
        assert outbox.sweep(_view, limit=3) == 3
        assert [d.event for d in outbox.for_job(finished)] == ["completed"]  # in the first batch of 3
        assert [len(outbox.for_job(j)) for j in running] == [1, 1, 0, 0, 0, 0]  # then the oldest running ones
        store.close()


def test_final_deliveries_are_claimed_before_older_progress_ones(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    outbox = Deliveries(store)
    for _ in range(4):
        _running_job(store, "http://127.0.0.1:9/hook")
    assert outbox.sweep(_view) == 4  # four progress deliveries, due first
    finished = _finished_job(store, "http://127.0.0.1:9/hook")
    assert outbox.sweep(_view) == 1
    [first] = outbox.claim_due("me", 30, limit=1)
    assert (first.job_id, first.event) == (finished, "completed")
    store.close()


@contextlib.contextmanager
def trickling_receiver(status: int, body_bytes: int = 100_000, every: float = 0.1, burst: int = 2000) -> Iterator[str]:
    """A receiver that reads the delivery, answers `status` with a long body, and sends that body (after `burst`
    bytes at once) one byte per `every` seconds (a misbehaving or hostile endpoint)."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(f"HTTP/1.1 {status} Whatever\r\nContent-Length: {body_bytes}\r\n"
                             f"Content-Type: text/plain\r\n\r\n".encode() + b"x" * burst)
                while not stop.wait(every):
                    conn.sendall(b"x")
            except OSError:
                pass

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


@pytest.mark.parametrize("status", [500, 200])
def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_attempts_deadline(status):
    """httpx's read timeout restarts on every byte: the attempt's total deadline ends it, and only the first KiB of
    an error answer is read (a 2xx answer's body not at all)."""
    with trickling_receiver(status) as url:
        started = time.monotonic()
        result = post(url, b"{}", {"Content-Type": "application/json"}, timeout=1.5,
                      allow_networks=("127.0.0.1",))
        took = time.monotonic() - started
    if status == 200:
        assert result.state == "delivered" and took < 1.5, (result, took)
    else:
        assert result.state == "pending" and result.status == 500 and took < 3, (result, took)
        assert result.error.startswith("HTTP 500: xxx") and len(result.error) < 300


def test_stopping_the_dispatcher_cuts_a_delivery_in_flight(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    dispatcher = Dispatcher(dataclasses.replace(_settings(tmp_path), webhook_timeout=60.0), store, _view)
    with trickling_receiver(500, every=0.5, burst=0) as url:
        _finished_job(store, url)
        dispatcher.start()
        deadline = time.monotonic() + 10
        while not dispatcher._busy and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dispatcher._busy, "the delivery never started"
        time.sleep(0.3)  # in flight: reading the trickled answer
        started = time.monotonic()
        dispatcher.stop()
        while dispatcher._busy and time.monotonic() - started < 10:
            time.sleep(0.02)
        assert not dispatcher._busy and time.monotonic() - started < 3
        [d] = Deliveries(store).for_job(store.list_jobs()[0].job_id)
        assert d.state == "pending" and "stopped" in d.last_error
    store.close()
