"""A deadline for network I/O that really ends it: httpx's connect/read timeouts restart on every byte, so a peer
that trickles one byte a second would never time out. While a `Deadline` is armed, a timer shuts down the socket in
use when it passes. Used by downloads (appliance/fetch.py) and webhook deliveries (appliance/webhooks.py);
`Deadlines` lets a closing pool cut its threads' connections at once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator


class Deadline:
    """A time (time.monotonic() seconds) by which network I/O must be over. While armed (`with`), a timer shuts down
    the socket in use at that moment, so a blocked read or a peer that trickles bytes returns at once; `cut()` does
    it now (a pool that closes). Pass `trace` as the request's httpx "trace" extension so it knows the socket."""

    def __init__(self, at: float):
        self.at = at
        self.cut_short = False  # cut() ended it before its time
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def left(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left() <= 0

    def cut(self) -> None:
        """End it now: the I/O in flight fails at once, and so does any connection made after."""
        self.cut_short = True
        self.at = min(self.at, time.monotonic())
        self._expire()

    def trace(self, event: str, info: dict) -> None:
        """httpcore's trace extension: remember the socket of each new connection (TCP, then TLS)."""
        stream = info.get("return_value")
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")) and stream is not None:
            with self._lock:
                self._sock = stream.get_extra_info("socket")
            if self.expired:
                self._expire()

    def _expire(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Deadlines:
    """The deadlines in use by a pool's threads, so that closing the pool cuts their connections at once (Python
    joins executor threads at exit: a download left running would hold the process up)."""

    def __init__(self) -> None:
        self._live: set[Deadline] = set()
        self._lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def track(self, deadline: Deadline) -> Iterator[Deadline]:
        with self._lock:
            self._live.add(deadline)
            closed = self.closed
        if closed:
            deadline.cut()
        try:
            yield deadline
        finally:
            with self._lock:
                self._live.discard(deadline)

    def cut_all(self) -> None:
        with self._lock:
            self.closed = True
            live = list(self._live)
        for deadline in live:
            deadline.cut()
