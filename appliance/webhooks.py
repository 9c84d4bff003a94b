"""Webhook deliveries: signed POSTs of a job's events to its `webhook_url`, retried with back-off, never lost.

Signing follows the Standard Webhooks convention (standardwebhooks.com):
    webhook-id:         the delivery_id (the same on every retry: the receiver's idempotency key)
    webhook-timestamp:  this attempt's time, Unix seconds
    webhook-signature:  "v1," + base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))
The key is `[webhooks] secret` (env RENDER_WEBHOOK_SECRET), written as the standard's libraries read it:
"whsec_" + base64 of at least 24 random bytes (the "whsec_" prefix is optional); config.py checks it.

Outcomes: 2xx delivered; a 4xx other than 408/429 (the receiver refuses it), or an address the SSRF guard
forbids, ends the delivery as failed; anything else (5xx, 408, 429, 3xx, timeouts, connection errors) is retried
after min(max_delay, base_delay * 2^(attempts-1)) seconds times a jitter in [0.5, 1) (a 429/503 Retry-After is
honoured up to max_delay) until retry_hours after the event, then given up. The dispatcher runs in each `serve`
process (a thread); claims make several of them share the work.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from . import metrics
from .deliveries import Deliveries, Delivery, DeliveryState
from .addresses import AllowList, Unresolvable, first_refused, resolve
from .deadline import Deadline, Deadlines
from .jobs import Job, JobStore

log = logging.getLogger("appliance.webhooks")

POLL_SECONDS = 0.2  # how often the outbox is swept and due deliveries are looked for
PRUNE_SECONDS = 600.0  # how often finished deliveries past the retention are forgotten
PARALLEL = 4  # deliveries in flight at once (one slow receiver does not hold up the others)
USER_AGENT = "render-appliance/0.1 (webhook)"
ANSWER_BYTES = 1024  # of a receiver's answer, only this much is read (for last_error)


def signing_key(secret: str) -> bytes:
    """As the Standard Webhooks libraries read a secret: base64, an optional "whsec_" prefix, padding optional."""
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True)
class Attempt:
    state: DeliveryState
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         allow_networks: tuple[str, ...] = (), deadlines: Deadlines | None = None) -> Attempt:
    """One attempt: the host resolved and checked here (the same SSRF guard as downloads), the connection made to
    the checked address, no redirects followed, no proxy from the environment. `timeout`: seconds for the whole
    attempt; of the answer only its first ANSWER_BYTES are read. `deadlines`: the dispatcher's, which cuts the
    attempt when it stops."""
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii").lower().rstrip(".")
    try:
        addresses = resolve(host, target.port or (443 if target.scheme == "https" else 80))
    except Unresolvable as exc:
        return Attempt(DeliveryState.PENDING, error=f"cannot resolve {host} ({exc})")
    refused = first_refused(host, addresses, AllowList.parse(allow_networks))
    if refused:
        address, reason = refused
        return Attempt(DeliveryState.FAILED, error=f"{host} is {reason} ({address}); only public addresses are "
                                                  "allowed (webhooks.allow_networks)")
    extensions: dict = {"sni_hostname": host} if target.scheme == "https" else {}
    last = "no address"
    # One deadline for the whole attempt (connect, send, answer), kept by appliance/deadline.py's watchdog: httpx's
    # timeouts restart on every byte, so a receiver that trickles its answer would hold a delivery slot for ever
    # without it.
    clock = Deadline(time.monotonic() + timeout)
    with clock, (deadlines.track(clock) if deadlines else contextlib.nullcontext()):
        extensions["trace"] = clock.trace
        for address in addresses:
            pinned = target.copy_with(host=str(address))
            try:
                with httpx.Client(timeout=max(0.01, clock.left()), follow_redirects=False, trust_env=False) as client:
                    request = client.build_request("POST", pinned, content=body, extensions=extensions,
                                                   headers={**headers, "Host": target.netloc.decode("ascii")})
                    response = client.send(request, stream=True)
                    try:
                        answer = b"" if response.is_success else _head(response, clock)
                    finally:
                        response.close()
            except httpx.HTTPError as exc:
                if clock.cut_short:
                    return Attempt(DeliveryState.PENDING, error=f"{host}: stopped (shutting down)")
                if clock.expired:
                    return Attempt(DeliveryState.PENDING, error=f"{host}: no complete answer within {timeout:g} s "
                                                                "(webhooks.timeout_seconds)")
                if isinstance(exc, httpx.ConnectError):
                    last = f"cannot connect to {host} ({type(exc).__name__})"
                    continue
                return Attempt(DeliveryState.PENDING, error=f"{host}: {type(exc).__name__}: {exc}"[:300])
            return _judge(response, answer)
    return Attempt(DeliveryState.PENDING, error=last)


def _head(response: httpx.Response, clock: Deadline) -> bytes:
    """The first ANSWER_BYTES of an answer's body: enough for the error text; the rest is never read."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= ANSWER_BYTES or clock.expired:
            break
    return head[:ANSWER_BYTES]


def _judge(response: httpx.Response, answer: bytes) -> Attempt:
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(DeliveryState.DELIVERED, status)
    error = f"HTTP {status}: {answer.decode('utf-8', 'replace')[:200]}".strip()
    if 400 <= status < 500 and status not in (408, 429):
        return Attempt(DeliveryState.FAILED, status, error)
    retry_after = response.headers.get("retry-after", "")
    wait = float(retry_after) if retry_after.strip().isdigit() else None
    return Attempt(DeliveryState.PENDING, status, error, wait)


def backoff(attempts: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after `attempts` failed ones: exponential, capped, jittered into [0.5, 1)."""
    return min(cap, base * 2 ** max(0, attempts - 1)) * (0.5 + rng() / 2)


class Dispatcher:
    """Sweeps the outbox and delivers what is due, in a background thread of the serving process."""

    def __init__(self, settings: Any, store: JobStore, view: Callable[[Job], dict[str, Any]]):
        self.settings, self.store, self.view = settings, store, view
        self.deliveries = Deliveries(store)
        self.owner = f"{socket.gethostname()}/{os.getpid()}/webhooks"
        self.lease = settings.webhook_timeout + 30.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhook")
        self._deadlines = Deadlines()  # the attempts in flight, cut when the dispatcher stops
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._deadlines.cut_all()  # attempts in flight end now (recorded for a retry), so the pool's threads exit
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the store is down, a bug: log and keep going (the outbox keeps the work)
                log.exception("webhook dispatcher")
            self._stop.wait(POLL_SECONDS)

    def tick(self) -> None:
        self.deliveries.sweep(self.view)
        if time.monotonic() - self._pruned_at > PRUNE_SECONDS:  # kept as long as their jobs (queue.retention_hours)
            self._pruned_at = time.monotonic()
            self.deliveries.prune(time.time() - max(self.settings.retention_hours, self.settings.webhook_retry_hours)
                                  * 3600)
        with self._lock:
            free = PARALLEL - len(self._busy)
        if free <= 0:
            return
        for delivery in self.deliveries.claim_due(self.owner, self.lease, limit=free):
            with self._lock:
                self._busy.add(delivery.delivery_id)
            self._pool.submit(self._deliver, delivery)

    def _deliver(self, delivery: Delivery) -> None:
        try:
            self.attempt(delivery)
        except Exception:
            log.exception("webhook %s", delivery.delivery_id)
        finally:
            with self._lock:
                self._busy.discard(delivery.delivery_id)

    def attempt(self, delivery: Delivery) -> Attempt:
        s = self.settings
        body = delivery.payload.encode()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": delivery.delivery_id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(s.webhook_secret or "", delivery.delivery_id, timestamp, body)}
        result = post(delivery.url, body, headers, timeout=s.webhook_timeout, allow_networks=s.webhook_allow_networks,
                      deadlines=self._deadlines)
        outcome = {DeliveryState.DELIVERED: "delivered", DeliveryState.FAILED: "refused"}.get(result.state, "retry")
        next_at = None
        state = result.state
        if state == DeliveryState.PENDING:
            wait = backoff(delivery.attempts + 1, s.webhook_base_delay, s.webhook_max_delay)
            if result.retry_after is not None:
                wait = min(s.webhook_max_delay, max(wait, result.retry_after))
            next_at = time.time() + wait
            if next_at > delivery.created_at + s.webhook_retry_hours * 3600:
                state, outcome = DeliveryState.FAILED, "gave_up"
        self.deliveries.record(delivery, self.owner, state, status=result.status, error=result.error,
                               next_attempt_at=next_at)
        metrics.WEBHOOK_DELIVERIES.labels(event=delivery.event, outcome=outcome).inc()
        log.info("webhook %s (%s of job %s) attempt %d: %s %s", delivery.delivery_id, delivery.event,
                 delivery.job_id, delivery.attempts + 1, outcome, result.error or result.status)
        return result
