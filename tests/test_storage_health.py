"""The result storage's health, as POST and /readyz see it: a real `render-appliance serve` (API only) against the
Supabase Storage contract double. While the storage check fails, no job is accepted (a render whose result cannot
be stored is refused up front); /readyz answers quickly even when Storage hangs."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from appliance.cached_check import CachedCheck
from service_fixtures import Appliance, free_port, write_config
from supabase_storage_server import running_storage_server

GOOD = {"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc"}


def test_cached_check_never_holds_a_caller_for_a_hanging_check():
    release = threading.Event()
    answers = iter([None, "boom"])

    def check():
        reason = next(answers, "boom")
        if reason == "boom":
            release.wait(10)  # hangs
        return reason

    cached = CachedCheck("storage", check, ttl=0.2, patience=0.5)
    assert cached.problem() is None  # the first answer, waited for
    time.sleep(0.3)  # stale: the next call starts the (hanging) re-check and returns the last answer at once
    started = time.monotonic()
    assert cached.problem() is None
    time.sleep(0.7)
    assert "has not answered" in cached.problem()
    assert time.monotonic() - started < 3  # never held by the hanging check (it hangs until released below)
    release.set()


@pytest.fixture(scope="module")
def storage():
    with running_storage_server(buckets={"project-images": {"public": True, "allowed_mime_types": ["image/png"]}}) as s:
        yield s


@pytest.fixture(scope="module")
def api(tmp_path_factory, storage):
    tmp = tmp_path_factory.mktemp("storage-health")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(tmp / "models")},
        "server": {"port": port},
        "queue": {"depth": 10_000},  # no worker: every accepted job stays queued
        "worker": {"enabled": False},
    })
    app = Appliance(config, port, tmp / "server.log",
                    env={"SUPABASE_URL": storage.url, "SUPABASE_SERVICE_ROLE_KEY": storage.service_key})
    app.start(wait_ready=False).wait_alive()
    yield app
    app.close()


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_post_is_refused_while_the_storage_check_fails(api, storage):
    assert api.submit(GOOD).status_code == 201
    storage.buckets["project-images"].public = False  # public-URL mode on a private bucket: dead result URLs
    try:
        refused = until(lambda: (r := api.submit(GOOD)).status_code == 503 and r)
        assert refused.json()["error"] == "storage_unavailable" and int(refused.headers["Retry-After"]) > 0
        check = api.http.get("/readyz").json()["checks"]["storage"]
        assert not check["ok"] and "not public" in check["reason"], check
    finally:
        storage.buckets["project-images"].public = True
    until(lambda: api.submit(GOOD).status_code == 201)


def test_an_idempotent_retry_gets_its_first_job_while_the_storage_check_fails(api, storage):
    """The same Idempotency-Key and payload return the first job (Idempotent-Replayed) even while new jobs are
    refused; another payload under that key stays 409."""
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = api.submit(GOOD, headers=key)
    assert first.status_code == 201, first.text
    storage.buckets["project-images"].public = False
    try:
        until(lambda: api.submit(GOOD).status_code == 503)
        again = api.submit(GOOD, headers=key)
        assert again.status_code == 201, again.text
        assert again.json()["job_id"] == first.json()["job_id"] and again.headers["Idempotent-Replayed"] == "true"
        other = api.submit({**GOOD, "texture_url": "#010203"}, headers=key)
        assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict", other.text
    finally:
        storage.buckets["project-images"].public = True
    until(lambda: api.submit(GOOD).status_code == 201)


def test_readyz_answers_quickly_while_storage_hangs(api, storage):
    storage.stall_next(50, 8.0)  # every Storage request held 8 s
    try:
        took, check = [], {}
        deadline = time.monotonic() + 15  # the check re-runs every 5 s; it counts as failed 1.5 s into a hang
        while time.monotonic() < deadline:
            started = time.monotonic()
            check = api.http.get("/readyz").json()["checks"]["storage"]
            took.append(time.monotonic() - started)
            if not check["ok"]:
                break
            time.sleep(0.3)
        assert max(took) < 2.0, took
        assert not check["ok"] and "has not answered" in check["reason"], check
    finally:
        storage.stall_next(0, 0)
