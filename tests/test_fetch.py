"""appliance.fetch against real HTTP(S) servers on loopback addresses, serving the shared house photos."""

from __future__ import annotations

import contextlib
import datetime
import io
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

from appliance import fetch
from appliance.fetch import DownloadError, FetchPolicy, check_url_syntax, fetch_image

LOCAL = ("127.0.0.1/32",)
FAST = FetchPolicy(connect_timeout=1.0, read_timeout=1.0, allow_networks=LOCAL)


@pytest.fixture(scope="module")
def photo(shared_dir) -> bytes:
    return (shared_dir / "data" / "houses" / "house_100.jpg").read_bytes()


# --- a tiny scriptable server ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before answering
    length: bool = True  # send Content-Length
    endless: bool = False  # keep sending body chunks until the client hangs up
    trickle: float = 0.0  # seconds between single bytes of the body (a slow sender), for at most 20 s
    trickle_headers: bool = False  # the status line and headers too


class Server:
    def __init__(self, base: str) -> None:
        self.base = base
        self.routes: dict[str, Reply | Callable[[int], Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.seen_headers: list[dict[str, str]] = []
        self.sni: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        state = self.server_state
        state.hits[self.path] += 1
        state.seen_headers.append(dict(self.headers))
        route = state.routes.get(self.path)
        reply = route(state.hits[self.path]) if callable(route) else route
        if reply is None:
            reply = Reply(404, {"Content-Type": "text/plain"}, b"no such thing")
        try:
            time.sleep(reply.delay)
            if reply.trickle:
                return self._trickle(reply)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.length and not reply.endless:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            while reply.endless:
                self.wfile.write(b"\xff" * 65536)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass  # the client hung up (cap reached, timed out): expected in these tests

    def _trickle(self, reply: Reply) -> None:
        head = f"HTTP/1.1 {reply.status} OK\r\n".encode() + b"".join(
            f"{k}: {v}\r\n".encode() for k, v in reply.headers.items())
        head += f"Content-Length: {len(reply.body)}\r\n\r\n".encode()
        if not reply.trickle_headers:
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        stop = time.monotonic() + 20
        for byte in head + reply.body:
            if time.monotonic() > stop:
                break
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(reply.trickle)


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    state = Server("")
    handler = type("H", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer((host, 0), handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: state.sni.append(name)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    state.base = f"{'https' if tls else 'http'}://{host}:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def jpeg(body: bytes, **kw) -> Reply:
    return Reply(200, {"Content-Type": "image/jpeg"}, body, **kw)


# --- happy paths ----------------------------------------------------------------------------------------------


def test_downloads_photo_when_loopback_is_allowed(photo):
    with serve() as srv:
        srv.routes["/house.jpg"] = jpeg(photo)
        assert fetch_image(f"{srv.base}/house.jpg", what="image_url", policy=FAST) == photo
        assert srv.seen_headers[0]["Host"] == srv.base.removeprefix("http://")


def test_octet_stream_is_accepted_on_magic_bytes(photo):
    with serve() as srv:
        srv.routes["/blob"] = Reply(200, {"Content-Type": "application/octet-stream"}, photo)
        assert fetch_image(f"{srv.base}/blob", what="image_url", policy=FAST) == photo


def test_connects_to_the_checked_address_and_keeps_the_host_header(photo, monkeypatch):
    """A name that only our resolver knows: httpx must never resolve it again, and Host must stay the name."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host == "images.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with serve() as srv:
        srv.routes["/h.jpg"] = jpeg(photo)
        port = srv.base.rsplit(":", 1)[1]
        assert fetch_image(f"http://images.example:{port}/h.jpg", what="image_url", policy=FAST) == photo
        assert srv.seen_headers[0]["Host"] == f"images.example:{port}"
    assert asked.count("images.example") == 1


# --- SSRF -----------------------------------------------------------------------------------------------------


def test_loopback_refused_without_allow_list(photo):
    with serve() as srv:
        srv.routes["/house.jpg"] = jpeg(photo)
        with pytest.raises(DownloadError, match=r"^image_url: 127\.0\.0\.1 is a loopback address"):
            fetch_image(f"{srv.base}/house.jpg", what="image_url", policy=FetchPolicy())
        assert srv.hits["/house.jpg"] == 0  # refused before connecting


def test_hostname_resolving_to_loopback_refused(photo):
    with serve() as srv:
        srv.routes["/house.jpg"] = jpeg(photo)
        port = srv.base.rsplit(":", 1)[1]
        with pytest.raises(DownloadError, match=r"localhost resolves to .*loopback"):
            fetch_image(f"http://localhost:{port}/house.jpg", what="texture_url", policy=FetchPolicy())
        assert srv.hits["/house.jpg"] == 0


def test_allow_list_by_hostname(photo):
    with serve() as srv:
        srv.routes["/house.jpg"] = jpeg(photo)
        port = srv.base.rsplit(":", 1)[1]
        policy = FetchPolicy(connect_timeout=1, read_timeout=1, allow_networks=("localhost",))
        assert fetch_image(f"http://localhost:{port}/house.jpg", what="image_url", policy=policy) == photo


def test_redirect_to_loopback_refused_even_from_allowed_host(photo):
    policy = FetchPolicy(connect_timeout=1, read_timeout=1, allow_networks=("127.0.0.2/32",))
    with serve("127.0.0.1") as inner, serve("127.0.0.2") as outer:
        inner.routes["/secret.jpg"] = jpeg(photo)
        outer.routes["/ok.jpg"] = jpeg(photo)
        outer.routes["/go"] = Reply(302, {"Location": f"{inner.base}/secret.jpg"})
        assert fetch_image(f"{outer.base}/ok.jpg", what="image_url", policy=policy) == photo  # allowed host works
        with pytest.raises(DownloadError, match=r"127\.0\.0\.1 is a loopback address"):
            fetch_image(f"{outer.base}/go", what="image_url", policy=policy)
        assert outer.hits["/go"] == 1
        assert inner.hits["/secret.jpg"] == 0


def test_every_resolved_address_is_checked(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ],
    )
    with pytest.raises(DownloadError, match=r"resolves to 10\.1\.2\.3, which is a private address"):
        fetch_image("http://mixed.example/x.jpg", what="image_url", policy=FAST)


@pytest.mark.parametrize(
    "host, kind",
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "cloud metadata"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("169.254.10.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped
        ("[64:ff9b::a00:1]", "private"),  # NAT64 of 10.0.0.1
        ("[fc00::5]", "private"),
    ],
)
def test_non_public_literal_addresses_refused(host, kind):
    with pytest.raises(DownloadError, match=rf"is an? {kind} address"):
        fetch_image(f"http://{host}/x.jpg", what="image_url", policy=FetchPolicy(connect_timeout=0.5))


def test_allow_list_can_name_a_private_network():
    # Allowed, so it gets as far as connecting (nothing listens on this port) instead of being refused.
    policy = FetchPolicy(connect_timeout=0.5, read_timeout=0.5, allow_networks=("127.0.0.0/8",), retries=0)
    with pytest.raises(DownloadError, match="could not connect"):
        fetch_image(f"http://127.0.0.3:{_free_port()}/x.jpg", what="image_url", policy=policy)


# --- limits and content checks --------------------------------------------------------------------------------


def test_byte_cap_from_content_length(photo):
    with serve() as srv:
        srv.routes["/big.jpg"] = jpeg(photo)
        policy = FetchPolicy(max_bytes=len(photo) - 1, allow_networks=LOCAL)
        with pytest.raises(DownloadError, match="larger than"):
            fetch_image(f"{srv.base}/big.jpg", what="image_url", policy=policy)


def test_byte_cap_while_streaming_an_endless_body(photo):
    with serve() as srv:
        srv.routes["/endless.jpg"] = jpeg(photo, endless=True)  # no Content-Length, never ends
        policy = FetchPolicy(max_bytes=2_000_000, allow_networks=LOCAL, read_timeout=2)
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"larger than the 2\.0 MB limit"):
            fetch_image(f"{srv.base}/endless.jpg", what="image_url", policy=policy)
        assert time.monotonic() - start < 5


def test_wrong_content_type(photo):
    with serve() as srv:
        srv.routes["/page"] = Reply(200, {"Content-Type": "text/html; charset=utf-8"}, photo)
        with pytest.raises(DownloadError, match=r"^image_url: 127\.0\.0\.1 sent text/html, not an image$"):
            fetch_image(f"{srv.base}/page", what="image_url", policy=FAST)


def test_wrong_magic_bytes():
    with serve() as srv:
        srv.routes["/fake.png"] = Reply(200, {"Content-Type": "image/png"}, b"<html><body>hello</body></html>")
        srv.routes["/empty.png"] = Reply(200, {"Content-Type": "image/png"}, b"")
        with pytest.raises(DownloadError, match="not a PNG, JPEG, WebP, GIF, BMP or TIFF image"):
            fetch_image(f"{srv.base}/fake.png", what="image_url", policy=FAST)
        with pytest.raises(DownloadError, match="empty file"):
            fetch_image(f"{srv.base}/empty.png", what="image_url", policy=FAST)


def test_redirects_followed_up_to_the_limit(photo):
    with serve() as srv:
        for i in range(5):
            srv.routes[f"/r{i}"] = Reply(302, {"Location": f"/r{i + 1}"})
        srv.routes["/r5"] = jpeg(photo)
        assert fetch_image(f"{srv.base}/r2", what="image_url", policy=FAST) == photo  # 3 redirects: fine
        with pytest.raises(DownloadError, match=r"too many redirects \(more than 3\)"):
            fetch_image(f"{srv.base}/r1", what="image_url", policy=FAST)  # 4 redirects
        assert srv.hits["/r5"] == 1


def test_redirect_to_other_scheme_refused():
    with serve() as srv:
        srv.routes["/go"] = Reply(301, {"Location": "file:///etc/passwd"})
        with pytest.raises(DownloadError, match="only http and https"):
            fetch_image(f"{srv.base}/go", what="image_url", policy=FAST)


def test_http_404():
    with serve() as srv:
        with pytest.raises(DownloadError, match=r"^texture_url: HTTP 404 from 127\.0\.0\.1$"):
            fetch_image(f"{srv.base}/missing.jpg", what="texture_url", policy=FAST)
        assert srv.hits["/missing.jpg"] == 1  # a 404 is not retried


def test_one_retry_on_transient_503(photo):
    with serve() as srv:
        srv.routes["/flaky.jpg"] = lambda hit: Reply(503) if hit == 1 else jpeg(photo)
        srv.routes["/down.jpg"] = Reply(503)
        assert fetch_image(f"{srv.base}/flaky.jpg", what="image_url", policy=FAST) == photo
        assert srv.hits["/flaky.jpg"] == 2
        with pytest.raises(DownloadError, match=r"HTTP 503 from 127\.0\.0\.1 \(after 2 attempts\)"):
            fetch_image(f"{srv.base}/down.jpg", what="image_url", policy=FAST)
        assert srv.hits["/down.jpg"] == 2  # bounded: one retry only


@pytest.mark.parametrize("headers_too", [False, True])
def test_a_trickling_server_is_cut_off_at_the_total_deadline(photo, headers_too):
    """One byte every 0.1 s never trips the read timeout (it restarts on every byte); the total deadline does."""
    policy = FetchPolicy(connect_timeout=1.0, read_timeout=1.0, total_timeout=1.5, allow_networks=LOCAL)
    with serve() as srv:
        srv.routes["/trickle.jpg"] = jpeg(photo, trickle=0.1, trickle_headers=headers_too)
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"took longer than 1.5 s in total"):
            fetch_image(f"{srv.base}/trickle.jpg", what="image_url", policy=policy)
        assert time.monotonic() - started < 4.0
        assert srv.hits["/trickle.jpg"] == 1  # a deadline is final: no retry


def test_the_jobs_deadline_cuts_a_download_short(photo):
    policy = FetchPolicy(connect_timeout=1.0, read_timeout=1.0, total_timeout=60, allow_networks=LOCAL)
    with serve() as srv:
        srv.routes["/trickle.jpg"] = jpeg(photo, trickle=0.1)
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"job's time limit ran out"):
            fetch_image(f"{srv.base}/trickle.jpg", what="image_url", policy=policy, deadline=started + 1.0)
        assert time.monotonic() - started < 3.5


def test_read_timeout(photo):
    with serve() as srv:
        srv.routes["/slow.jpg"] = jpeg(photo, delay=1.5)
        policy = FetchPolicy(connect_timeout=1, read_timeout=0.3, allow_networks=LOCAL)
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"timed out waiting for 127\.0\.0\.1 \(after 2 attempts\)"):
            fetch_image(f"{srv.base}/slow.jpg", what="image_url", policy=policy)
        assert time.monotonic() - start < 2.5  # two 0.3 s waits and a back-off, not two 1.5 s replies (loaded CI)
        assert srv.hits["/slow.jpg"] == 2


def test_connection_refused_is_retried_then_reported():
    policy = FetchPolicy(connect_timeout=0.5, read_timeout=0.5, allow_networks=LOCAL)
    with pytest.raises(DownloadError, match=r"^image_url: could not connect to 127\.0\.0\.1 .*\(after 2 attempts\)$"):
        fetch_image(f"http://127.0.0.1:{_free_port()}/x.jpg", what="image_url", policy=policy)


# --- https: pinned to the IP, certificate checked against the name ------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    """A throw-away CA and a server certificate for the name `localhost` only (no IP in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetch test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, cert_pem, key_pem


@pytest.fixture
def https_server(tls_pair, monkeypatch, photo):
    ca_pem, cert_pem, key_pem = tls_pair
    monkeypatch.setattr(fetch, "_tls_verify", ssl.create_default_context(cafile=str(ca_pem)))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_pem, key_pem)
    with serve("127.0.0.1", tls=server_ctx) as srv:
        srv.routes["/house.jpg"] = jpeg(photo)
        yield srv


def test_https_sends_sni_and_verifies_the_name_not_the_ip(https_server, photo):
    port = https_server.base.rsplit(":", 1)[1]
    policy = FetchPolicy(connect_timeout=2, read_timeout=2, allow_networks=("localhost",))
    assert fetch_image(f"https://localhost:{port}/house.jpg", what="image_url", policy=policy) == photo
    assert https_server.sni == ["localhost"]
    assert https_server.seen_headers[0]["Host"] == f"localhost:{port}"


def test_https_certificate_mismatch_refused(https_server):
    # The certificate names only `localhost`, so asking for the IP must fail verification (verification is on).
    with pytest.raises(DownloadError, match="TLS certificate of 127.0.0.1 could not be verified"):
        fetch_image(f"{https_server.base}/house.jpg", what="image_url", policy=FAST)
    assert https_server.hits["/house.jpg"] == 0


# --- URL syntax -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, reason",
    [
        ("https://example.com/a.jpg", None),
        ("http://example.com:8080/a.jpg?x=1", None),
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("/relative/a.jpg", "only http and https"),
        ("http:///a.jpg", "no host"),
        ("https://user:pw@example.com/a.jpg", "credentials"),
        ("https://example.com/" + "a" * 2100, "longer than 2048"),
        ("https://exa mple.com/a.jpg", "spaces"),
        ("", "empty"),
    ],
)
def test_check_url_syntax(url, reason):
    result = check_url_syntax(url)
    if reason is None:
        assert result is None
    else:
        assert result is not None and reason in result


def test_invalid_url_is_a_download_error():
    with pytest.raises(DownloadError, match=r"^image_url: invalid URL: URL must not contain credentials"):
        fetch_image("http://a:b@example.com/x.jpg", what="image_url", policy=FAST)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



# --- the worker: a slow photo server costs its own job only -------------------------------------------------------


def test_the_worker_holds_a_jobs_time_limit_and_the_file_deadline_through_downloads(tmp_path, photo):
    import uuid

    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry

    def run(**limits) -> tuple[object, float]:
        settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=LOCAL,
                            fetch_read_timeout=1.0, **limits)
        store = JobStore(settings.jobs_db)
        worker = Worker(settings, store, RenderQueue(settings.queue_db), LocalStorage(settings.results_dir, "http://x"),
                        Pipeline(None, LineGeometry()))
        job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{srv.base}/trickle.jpg", texture_url="#AA0000",
                              mask_url=None, options={}, project_id=None, user_id=None, idempotency_key=None,
                              request_hash=None, queue_depth=5)
        started = time.monotonic()
        worker.process(job.job_id)
        return store.get(job.job_id), time.monotonic() - started

    with serve() as srv:
        srv.routes["/trickle.jpg"] = jpeg(photo, trickle=0.1)
        job, took = run(job_timeout=1.5)
        assert job.status == "failed" and job.error_code == "timeout", job
        assert "time limit" in job.error_message and took < 4.0, (job.error_message, took)
        job, took = run(job_timeout=600, fetch_total_timeout=1.0)
        assert job.status == "failed" and job.error_code == "download_failed", job
        assert "took longer than 1 s in total" in job.error_message and took < 4.0, (job.error_message, took)


def test_the_next_jobs_inputs_are_downloaded_while_one_renders(tmp_path, photo):
    """Photos from a server that takes 1 s per answer: while job 1 renders, job 2's photo arrives; job 2 then starts
    rendering at once, and nothing is downloaded twice."""
    import uuid

    import numpy as np
    from PIL import Image

    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=LOCAL,
                        prefetch_jobs=2)
    store = JobStore(settings.jobs_db)

    starts: list[float] = []

    class SlowRender(Pipeline):  # a render that takes longer than one download
        def run(self, *args, **kwargs):
            starts.append(time.monotonic())
            time.sleep(2.5)
            return super().run(*args, **kwargs)

    worker = Worker(settings, store, RenderQueue(settings.queue_db), LocalStorage(settings.results_dir, "http://x"),
                    SlowRender(None, LineGeometry()))
    with Image.open(io.BytesIO(photo)) as im:
        size = im.size
    with serve() as srv:
        srv.routes["/mask.png"] = Reply(200, {"Content-Type": "image/png"}, io_png(np.full(size[::-1], 255, np.uint8)))
        ids = []
        for i in range(2):
            srv.routes[f"/house{i}.jpg"] = jpeg(photo, delay=2.0)
            job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{srv.base}/house{i}.jpg",
                                  texture_url="#AA0000", mask_url=f"{srv.base}/mask.png", options={}, project_id=None,
                                  user_id=None, idempotency_key=None, request_hash=None, queue_depth=5)
            ids.append(job.job_id)
        worker.process(ids[0])  # job 2's photo is fetched meanwhile
        started = time.monotonic()
        worker.process(ids[1])
        assert [store.get(i).status for i in ids] == ["completed", "completed"], [store.get(i) for i in ids]
        waited = starts[1] - started
        assert waited < 1.5, waited  # its inputs were there: well under the photo server's 2 s
        assert srv.hits["/house1.jpg"] == 1 and srv.hits["/house0.jpg"] == 1
    worker.shutdown()


def io_png(array) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def test_a_stopping_worker_cuts_a_prefetch_stuck_on_a_slow_server(tmp_path, photo):
    """Python joins executor threads at exit, so a prefetch blocked on a server that has not answered would hold
    a SIGTERMed worker past its stop budget: shutdown() shuts its socket and the pool's thread ends at once."""
    import threading

    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=LOCAL,
                        prefetch_jobs=1)
    worker = Worker(settings, JobStore(settings.jobs_db), RenderQueue(settings.queue_db),
                    LocalStorage(settings.results_dir, "http://x"), None)
    with serve() as srv:
        srv.routes["/stuck.jpg"] = jpeg(photo, delay=30.0)  # answers long after any stop budget
        worker.prefetch.ahead([("next-job", [f"{srv.base}/stuck.jpg"])])
        deadline = time.monotonic() + 5
        while not srv.hits.get("/stuck.jpg") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.hits.get("/stuck.jpg"), "the prefetch never reached the server"
        pool = [t for t in threading.enumerate() if t.name.startswith("prefetch")]
        assert pool
        started = time.monotonic()
        worker.shutdown()
        for thread in pool:
            thread.join(5)
        assert not any(t.is_alive() for t in pool) and time.monotonic() - started < 3
