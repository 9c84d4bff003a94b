"""Hostile and broken requests against a real `render-appliance serve` (API only, no worker): every one answers in
the documented error shape, none answers 500, and the server keeps serving afterwards."""

from __future__ import annotations

import socket
import uuid

import pytest

from service_fixtures import Appliance, free_port, write_config

GOOD = {"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(tmp / "models")},
        "server": {"port": port},
        "worker": {"enabled": False},  # accepted jobs just wait: these tests are about the HTTP edge
    })
    app = Appliance(config, port, tmp / "server.log").start(wait_ready=False)
    app.wait_alive()
    yield app
    app.close()


def post(api, content: bytes, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"content-type": content_type}
    return api.http.post("/render/jobs", content=content, headers=headers)


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_not_sent_as_json_is_415_and_makes_no_job(api, content_type):
    import json

    before = api.http.get("/readyz").json()["checks"]["job_store"]["active_jobs"]
    r = post(api, json.dumps(GOOD).encode(), content_type)
    assert r.status_code == 415, r.text
    assert r.json()["error"] == "unsupported_media_type"
    assert api.http.get("/readyz").json()["checks"]["job_store"]["active_jobs"] == before


def test_json_content_types_are_accepted(api):
    import json

    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        r = post(api, json.dumps({**GOOD, "user_id": str(uuid.uuid4())}).encode(), content_type)
        assert r.status_code == 201, (content_type, r.text)


def test_a_bodyless_cancel_needs_no_content_type(api):
    r = api.http.post(f"/render/jobs/{uuid.uuid4()}/cancel")
    assert r.status_code == 404 and r.json() == {"error": "job_not_found"}


@pytest.mark.parametrize("raw, reason", [
    (b"[" * 5000 + b"]" * 5000, "nested deeper"),
    (b"[" * 60000, "nested deeper"),  # deeper than the parser's own recursion limit, unterminated
    (b'{"options": ' + b'{"a": ' * 20 + b"1" + b"}" * 21, "nested deeper"),
    (b'{"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc", "\\ud800": 1}', "not valid Unicode"),
    (b'{"image_url": "http://example.com/\\udfff.jpg", "texture_url": "#aabbcc"}', "not valid Unicode"),
    (b'{"image_url": "http://example.com/a.jpg", "texture_url": "\xff\xfe"}', "not valid JSON"),
    (b"{nope", "not valid JSON"),
    (b"NaN", None),
])
def test_malformed_bodies_are_400_in_the_documented_shape(api, raw, reason):
    r = post(api, raw)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "validation_failed" and "body" in body["details"], body
    if reason:
        assert reason in body["details"]["body"], body


def test_an_oversized_body_is_400(api):
    r = post(api, b'{"image_url": "' + b"a" * 100_000 + b'"}')
    assert r.status_code == 400 and "larger than" in r.json()["details"]["body"]


def test_long_and_odd_result_names_are_404_not_500(api):
    for path in ("a" * 300 + ".png", "renders/" + "b" * 300 + "/c.png", "x" * 5000, "%ED%A0%80.png", "..%2f..%2fetc"):
        r = api.http.get(f"/results/{path}")
        assert r.status_code == 404, (path[:20], r.status_code, r.text[:200])


def test_headers_are_bounded(api):
    # A request whose headers exceed the bound is refused before it reaches the app; the server stays up.
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.split(b" ")[1] in (b"400", b"431"), answer[:100]
    assert api.http.get("/healthz").status_code == 200
    # Ordinary headers (a long bearer token, cookies) still pass.
    assert api.http.get("/healthz", headers={"X-Token": "t" * 4000}).status_code == 200
