"""Safe download of user-supplied image URLs (the photo and the material swatch of a render job).

`fetch_image(url, what=..., policy=...)` returns the image bytes or raises `DownloadError` whose text is one
human-readable line that starts with `what` ("texture_url: HTTP 404 from example.com").

What it guarantees:
- only http/https, no credentials in the URL, at most 2048 characters (`check_url_syntax`, also used for the
  API's 400 validation);
- SSRF guard (appliance/addresses.py): the host is resolved HERE, every resolved address is checked (loopback,
  private, link-local, CGNAT, multicast, reserved, unspecified, cloud metadata are refused unless
  `policy.allow_networks` names the network or the hostname), and the connection goes to that checked address,
  for every redirect hop;
- redirects are followed by hand, at most `policy.max_redirects`;
- the size cap is enforced on Content-Length and again while streaming;
- Content-Type must be image/* or application/octet-stream (or absent), and the first bytes must be a
  PNG/JPEG/WebP/GIF/BMP/TIFF signature;
- one retry (`policy.retries`) on transient failures: connect errors, timeouts, dropped connections,
  HTTP 502/503/504;
- a total deadline per file (`policy.total_timeout`, all hops and retries together) and, when given, the job's
  own deadline: connect/read timeouts restart on every byte, so a server that trickles one byte a second is cut
  off by a watchdog that shuts the socket down when the deadline passes (`Deadline`, appliance/deadline.py).
Decompression bombs are not handled here: the pipeline checks pixel counts when it decodes.

How the connection is pinned to the checked address
---------------------------------------------------
Checking `socket.getaddrinfo()` and then handing the URL to httpx would resolve the name a second time, and a
DNS answer that changes in between (DNS rebinding) would slip past the check. So each request is sent to a URL
whose host is the checked IP literal, and the original name is carried where the protocol needs it:
- the `Host` header is set explicitly to the original `host[:port]`, so virtual hosting works;
- for https the httpcore request extension `sni_hostname` is set to the original name; httpcore passes it as
  `server_hostname` to `SSLContext.wrap_socket`, so SNI is right AND the certificate is verified against the
  original name (not against the IP).
httpx itself never resolves a name in this path, so what was checked is what is connected to. Each request uses
its own short-lived client (no connection pool shared between hops: a connection opened and verified for one
name is never reused for another), with `trust_env=False` so that no proxy from the environment reroutes it.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from dataclasses import dataclass

import httpx
import tenacity

from .addresses import AllowList, IPAddress, Unresolvable, first_refused, is_ip_literal, resolve
from .deadline import Deadline, Deadlines
from .retry import retrying

__all__ = ["DownloadError", "FetchPolicy", "fetch_image", "check_url_syntax", "Deadline", "Deadlines"]

MAX_URL_LENGTH = 2048
_RETRY_DELAY = 0.25  # seconds before the retry of a transient failure
_TRANSIENT_STATUSES = {502, 503, 504}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_USER_AGENT = "render-appliance/0.1 (image fetch)"

# TLS verification for https downloads: True = the system/certifi CA bundle. Tests swap in an SSLContext that
# trusts a throw-away CA; production code never changes it.
_tls_verify: bool | ssl.SSLContext = True


class DownloadError(Exception):
    """A download failed; `str(exc)` is a one-line human reason that starts with the field name."""


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 25_000_000
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_redirects: int = 3
    allow_networks: tuple[str, ...] = ()  # CIDRs or hostnames allowed even if private/loopback, e.g. ("127.0.0.1/32",)
    retries: int = 1  # one retry on transient errors (connect errors, timeouts, 502/503/504)
    total_timeout: float = 60.0  # seconds for the whole file, however slowly the bytes come


class _Deadline(Deadline):
    """When a download must be over: the file's total deadline or the job's, whichever is first."""

    def __init__(self, policy: FetchPolicy, job_deadline: float | None):
        now = time.monotonic()
        self.job_bound = job_deadline is not None and job_deadline < now + policy.total_timeout
        self.total = policy.total_timeout
        super().__init__(job_deadline if self.job_bound else now + policy.total_timeout)

    def error(self, what: str, host: str) -> "DownloadError":
        if self.cut_short:
            return DownloadError(f"{what}: the download from {host} was stopped (shutting down)")
        if self.job_bound:
            return DownloadError(f"{what}: the job's time limit ran out while downloading from {host}")
        return DownloadError(f"{what}: the download from {host} took longer than {self.total:g} s in total "
                             f"(fetch.total_timeout_seconds)")


def check_url_syntax(url: str) -> str | None:
    """None when `url` is acceptable (http/https, a host, no credentials, <= 2048 chars), else the reason."""
    if not isinstance(url, str) or not url.strip():
        return "URL is empty"
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "URL contains spaces or control characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        return f"URL is not valid ({exc})"
    if parsed.scheme not in ("http", "https"):
        return f"only http and https URLs are accepted, not {parsed.scheme or 'a relative URL'}"
    if not parsed.host:
        return "URL has no host"
    if parsed.userinfo:
        return "URL must not contain credentials (user:password@)"
    try:
        parsed.port  # noqa: B018 - validates the port range
    except (httpx.InvalidURL, ValueError):
        return "URL has an invalid port"
    return None


def fetch_image(url: str, *, what: str, policy: FetchPolicy, deadline: float | None = None,
                deadlines: Deadlines | None = None) -> bytes:
    """Download the image at `url` under `policy`; raise DownloadError("{what}: reason") on any failure.
    `deadline` (time.monotonic() seconds): the job's own limit, when it comes before the file's total one.
    `deadlines`: the group of a pool whose closing stops this download at once."""
    reason = check_url_syntax(url)
    if reason:
        raise DownloadError(f"{what}: invalid URL: {reason}")
    with _Deadline(policy, deadline) as clock, (deadlines.track(clock) if deadlines else contextlib.nullcontext()):
        return _fetch(httpx.URL(url), what, policy, clock)


def _fetch(current: httpx.URL, what: str, policy: FetchPolicy, clock: _Deadline) -> bytes:
    allow = AllowList.parse(policy.allow_networks)
    for _hop in range(policy.max_redirects + 1):
        location = _fetch_hop_with_retry(current, what, policy, allow, clock)
        if isinstance(location, bytes):
            return location
        try:
            target = current.join(location)
        except (httpx.InvalidURL, ValueError) as exc:
            raise DownloadError(f"{what}: redirect from {_host(current)} to an invalid URL ({exc})") from None
        reason = check_url_syntax(str(target))
        if reason:
            raise DownloadError(f"{what}: redirect from {_host(current)} refused: {reason}")
        current = target
    raise DownloadError(f"{what}: too many redirects (more than {policy.max_redirects})")


# --- one hop ------------------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth one more try; its text is the reason."""


def _fetch_hop_with_retry(url, what, policy, allow: AllowList, clock: _Deadline) -> bytes | str:
    attempts = 1 + max(0, policy.retries)

    def no_time_for_another_try() -> bool:  # the pause and another try would overrun the deadline
        return clock.left() <= _RETRY_DELAY

    retry = retrying(_Transient, attempts=attempts, wait=tenacity.wait_fixed(_RETRY_DELAY),
                     give_up=no_time_for_another_try)
    try:
        return retry(_fetch_hop, url, what, policy, allow, clock)
    except _Transient as exc:
        if no_time_for_another_try():  # it was the deadline that ended the tries: say so
            raise clock.error(what, _host(url)) from None
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        raise DownloadError(f"{what}: {exc}{suffix}") from None


def _fetch_hop(url: httpx.URL, what, policy, allow: AllowList, clock: _Deadline) -> bytes | str:
    """One request. Returns the body, or the Location of a redirect; raises DownloadError / _Transient."""
    host = _host(url)
    if clock.expired:
        raise clock.error(what, host)
    addresses = _resolve_and_check(url, what, allow)
    headers = {
        "Host": url.netloc.decode("ascii"),
        "User-Agent": _USER_AGENT,
        "Accept": "image/*",
        "Accept-Encoding": "identity",  # so Content-Length is the real size
    }
    extensions: dict = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    extensions["trace"] = clock.trace
    left = max(0.01, clock.left())
    timeout = httpx.Timeout(connect=min(policy.connect_timeout, left), read=min(policy.read_timeout, left),
                            write=min(policy.read_timeout, left), pool=min(policy.connect_timeout, left))
    last_connect_error: Exception | None = None
    for address in addresses:  # try the checked addresses in order, like a normal client would
        pinned = url.copy_with(host=str(address))
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls_verify) as client:
                request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
                response = client.send(request, stream=True)
                try:
                    return _read_response(response, url, what, policy, clock)
                finally:
                    response.close()
        except httpx.HTTPError as exc:
            if clock.expired:  # the watchdog cut the connection, or a timeout shortened to the deadline hit it
                raise clock.error(what, host) from None
            if not isinstance(exc, httpx.ConnectError):
                _raise_for(exc, what, host)
            if _is_tls_verify_failure(exc):
                raise DownloadError(f"{what}: TLS certificate of {host} could not be verified") from None
            last_connect_error = exc
            continue
    raise _Transient(f"could not connect to {host} ({_short(last_connect_error)})")


def _raise_for(exc: httpx.HTTPError, what: str, host: str) -> None:
    """An httpx failure other than a refused connection -> _Transient (worth a retry) or DownloadError."""
    if isinstance(exc, httpx.TimeoutException):
        kind = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        raise _Transient(f"timed out {kind} {host}") from None
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        raise _Transient(f"connection to {host} failed ({_short(exc)})") from None
    raise DownloadError(f"{what}: request to {host} failed ({_short(exc)})") from None


def _read_response(response: httpx.Response, url: httpx.URL, what: str, policy: FetchPolicy,
                   clock: _Deadline) -> bytes | str:
    host = _host(url)
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise DownloadError(f"{what}: HTTP {status} redirect without Location from {host}")
        return location
    if status in _TRANSIENT_STATUSES:
        raise _Transient(f"HTTP {status} from {host}")
    if status != 200:
        raise DownloadError(f"{what}: HTTP {status} from {host}")

    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not (content_type.startswith("image/") or content_type in _BINARY_TYPES):
        raise DownloadError(f"{what}: {host} sent {content_type}, not an image")
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > policy.max_bytes:
        raise DownloadError(f"{what}: image is larger than the {_mb(policy.max_bytes)} limit ({_mb(int(length))})")

    body = bytearray()
    checked = False
    # Chunks as they arrive (no re-chunking, which would wait for 64 KiB); decoded bytes are counted, so a
    # compressed body cannot exceed the cap.
    for chunk in response.iter_bytes():
        if clock.expired:
            raise clock.error(what, host)
        body += chunk
        if len(body) > policy.max_bytes:
            raise DownloadError(f"{what}: image is larger than the {_mb(policy.max_bytes)} limit")
        if not checked and len(body) >= 12:  # stop early when it is clearly not an image (an HTML page, ...)
            _check_magic(bytes(body[:12]), what, host)
            checked = True
    if not checked:
        _check_magic(bytes(body[:12]), what, host)
    return bytes(body)


_BINARY_TYPES = {"application/octet-stream", "binary/octet-stream"}


def image_kind(head: bytes) -> str | None:
    """The image format named by the first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _check_magic(head: bytes, what: str, host: str) -> None:
    if not head:
        raise DownloadError(f"{what}: {host} sent an empty file")
    if image_kind(head) is None:
        raise DownloadError(f"{what}: the file from {host} is not a PNG, JPEG, WebP, GIF, BMP or TIFF image")


def _resolve_and_check(url: httpx.URL, what: str, allow: AllowList) -> list[IPAddress]:
    """All addresses `url`'s host resolves to, each checked (appliance/addresses.py); raise DownloadError if ANY is
    refused (or none resolve)."""
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    try:
        addresses = resolve(host, url.port or (443 if url.scheme == "https" else 80))
    except Unresolvable as exc:
        raise DownloadError(f"{what}: cannot resolve host {host} ({exc})") from None
    if not addresses:
        raise DownloadError(f"{what}: cannot resolve host {host}")
    refused = first_refused(host, addresses, allow)
    if refused:
        address, reason = refused
        shown = host if is_ip_literal(host) else f"{host} resolves to {address}, which"
        raise DownloadError(f"{what}: {shown} is {reason}; only public addresses are allowed")
    return addresses


# --- small helpers ------------------------------------------------------------------------------------------


def _host(url: httpx.URL) -> str:
    return url.host or "?"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no address"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _is_tls_verify_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
