"""A slow health check (remote storage) kept off the request path: /readyz and POST read its last answer at once.

The check runs in a background thread at most every `ttl` seconds. A check that has been running longer than
`patience` seconds counts as failed ("no answer"), so a hanging backend shows up within ttl + patience seconds
without any caller waiting for it; only the very first caller waits, at most `patience` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class CachedCheck:
    def __init__(self, name: str, check: Callable[[], str | None], ttl: float = 5.0, patience: float = 1.5):
        self.name, self.check, self.ttl, self.patience = name, check, ttl, patience
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._reason: str | None = None
        self._at: float | None = None  # when the last answer came (monotonic)
        self._started: float | None = None  # when the running check began; None = none running

    def problem(self) -> str | None:
        """None when the last answer was fine, else the reason (the check's own, or that it is not answering)."""
        now = time.monotonic()
        with self._lock:
            if self._started is None and (self._at is None or now - self._at > self.ttl):
                self._started = now
                threading.Thread(target=self._run, name=f"check-{self.name}", daemon=True).start()
        if self._at is None:
            self._answered.wait(self.patience)
        with self._lock:
            running_for = None if self._started is None else time.monotonic() - self._started
            if running_for is not None and running_for > self.patience:
                return f"the {self.name} check has not answered for {running_for:.0f} s"
            if self._at is None:
                return f"the {self.name} check has not answered yet"
            return self._reason

    def _run(self) -> None:
        try:
            reason = self.check()
        except Exception as exc:  # a check that raises reports why
            reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._reason, self._at, self._started = reason, time.monotonic(), None
        self._answered.set()
