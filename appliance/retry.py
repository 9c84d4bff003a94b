"""The one way the box retries a call in-process (tenacity): only the failures marked worth another try, the last
one re-raised when it gives up, stopping at an attempt count, a time window or the caller's own deadline, whichever
comes first. Used by Supabase Storage calls (appliance/storage/supabase.py) and image downloads (appliance/fetch.py).

Webhook deliveries are retried from their outbox instead (appliance/webhooks.py `backoff`): a retry there is a row
with a time, so that a restart or another process picks it up, not a loop in one thread."""

from __future__ import annotations

from typing import Any, Callable

import tenacity


def retrying(transient: type[BaseException], *, wait: Any, attempts: int | None = None, window: float | None = None,
             give_up: Callable[[], bool] | None = None,
             before_sleep: Callable[[tenacity.RetryCallState], None] | None = None) -> tenacity.Retrying:
    """A tenacity.Retrying that retries `transient` only. `attempts`: tries in all; `window`: seconds from the first
    try; `give_up()`: checked after each failure (True: no more tries, e.g. too little time left)."""
    stops: list[Any] = []
    if window is not None:
        stops.append(tenacity.stop_after_delay(window))
    if attempts is not None:
        stops.append(tenacity.stop_after_attempt(attempts))
    if give_up is not None:
        stops.append(lambda state: give_up())
    return tenacity.Retrying(retry=tenacity.retry_if_exception_type(transient), reraise=True, wait=wait,
                             stop=tenacity.stop_any(*stops) if stops else tenacity.stop_never,
                             **({"before_sleep": before_sleep} if before_sleep is not None else {}))
