"""Who may see the console.

- `server.console_password` set: an operator signs in once per browser; the session is a signed, HttpOnly cookie
  (stateless: `expiry.HMAC(key(password), expiry)`, so it survives restarts and dies when the password changes).
- no password and no `server.api_key`: the console is open, but only to requests that name this box (an IP
  address, localhost, `server.host` or the public base URL's host): a page of another site whose domain resolves
  to this box (DNS rebinding) is refused.
- an API key but no password: the console stays locked (the API is protected; its console must not be open).

The sign-in form is a NiceGUI page (its events travel over the websocket, where no cookie can be set): a correct
password yields a one-time ticket, and `/console/session?ticket=...` swaps it for the cookie. The cookie is
SameSite=Lax and, when the console is reached over HTTPS (directly, through a proxy's X-Forwarded-Proto, or a
https public_base_url), Secure. Sign-in attempts are limited per client address: after MAX_FAILURES wrong
passwords within FAILURE_WINDOW seconds, that address is refused until the window has passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import time
import urllib.parse

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

COOKIE = "render_console"
SESSION_SECONDS = 12 * 3600
TICKET_SECONDS = 30
MAX_FAILURES = 5  # wrong passwords per client address ...
FAILURE_WINDOW = 300.0  # ... within this many seconds, then that address waits


class TooManyAttempts(Exception):
    """This client address failed too often; `retry_after` seconds until it may try again."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many sign-in attempts; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


def _hostname(host_header: str | None) -> str:
    host = (host_header or "").strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def client_address(request: Request) -> str:
    """The address sign-in attempts are counted for (uvicorn puts a trusted local proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else "?"


def safe_next(target: str | None) -> str:
    """A local path to return to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class ConsoleAuth:
    def __init__(self, settings) -> None:
        self.password: str | None = settings.console_password
        self.locked = settings.api_key is not None and not self.password
        self._key = hmac.new(self.password.encode(), b"render-console-session", hashlib.sha256).digest() \
            if self.password else b""
        self._tickets: dict[str, float] = {}  # one-time sign-in tickets -> expiry
        self._failures: dict[str, list[float]] = {}  # client address -> times of its recent wrong passwords
        self.failure_pause = 0.8  # seconds after each wrong password
        self._https_base = settings.base_url.startswith("https://")
        names = {"localhost", _hostname(settings.host), _hostname(urllib.parse.urlsplit(settings.base_url).netloc)}
        self._hosts = {n for n in names if n and n not in ("0.0.0.0", "::")}

    @property
    def mode(self) -> str:
        return "locked" if self.locked else "password" if self.password else "open"

    # --- checks ---
    def host_ok(self, host_header: str | None) -> bool:
        name = _hostname(host_header)
        if name in self._hosts:
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    def session_ok(self, token: str | None) -> bool:
        expiry, _, signature = (token or "").partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return False
        return hmac.compare_digest(signature, self._sign(expiry))

    def denied(self, request: Request) -> str | None:
        """None when this request may use the console, else why not: locked | login | host."""
        if self.locked:
            return "locked"
        if self.password:
            return None if self.session_ok(request.cookies.get(COOKIE)) else "login"
        return None if self.host_ok(request.headers.get("host")) else "host"

    def gate(self, request: Request) -> Response | None:
        """For pages: None to go on, else the answer (a redirect to the sign-in page, or a refusal)."""
        reason = self.denied(request)
        if reason is None:
            return None
        if reason == "login":
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={urllib.parse.quote(here, safe='')}", status_code=303)
        return HTMLResponse(_refusal_page(reason), status_code=403)

    def guard_api(self, request: Request, *, write: bool = False) -> Response | None:
        """For the console's own routes (files, mask upload): JSON 401/403, and for writes a same-origin check."""
        reason = self.denied(request)
        if reason is not None:
            return JSONResponse({"error": "unauthorized" if reason == "login" else "forbidden", "reason": reason},
                                status_code=401 if reason == "login" else 403)
        origin = request.headers.get("origin")
        if write and origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"error": "forbidden", "reason": "cross-site request"}, status_code=403)
        return None

    # --- signing in ---
    def _sign(self, expiry: str) -> str:
        return hmac.new(self._key, expiry.encode(), hashlib.sha256).hexdigest()

    async def check_password(self, attempt: str, client: str = "?") -> str | None:
        """A one-time ticket for a right password, else None (after a pause that slows guessing). Raises
        TooManyAttempts when `client` (its address) failed MAX_FAILURES times within FAILURE_WINDOW."""
        now = time.time()
        recent = [t for t in self._failures.get(client, ()) if t > now - FAILURE_WINDOW]
        if len(recent) >= MAX_FAILURES:
            raise TooManyAttempts(recent[0] + FAILURE_WINDOW - now)
        if self.password and hmac.compare_digest(attempt.encode(), self.password.encode()):
            self._failures.pop(client, None)
            now = time.time()
            self._tickets = {t: expires for t, expires in self._tickets.items() if expires > now}
            ticket = secrets.token_urlsafe(24)
            self._tickets[ticket] = now + TICKET_SECONDS
            return ticket
        self._failures[client] = recent + [now]
        if len(self._failures) > 10_000:  # bounded memory: forget addresses whose window has passed
            self._failures = {c: ts for c, ts in self._failures.items() if ts[-1] > now - FAILURE_WINDOW}
        await asyncio.sleep(self.failure_pause)
        return None

    def secure(self, request: Request) -> bool:
        """Is the console reached over HTTPS (uvicorn applies a local proxy's X-Forwarded-Proto to the scheme)?"""
        return request.url.scheme == "https" or self._https_base

    def redeem(self, ticket: str, next_path: str, *, secure: bool = False) -> Response:
        if self._tickets.pop(ticket, 0.0) < time.time():
            return RedirectResponse("/login", status_code=303)
        response = RedirectResponse(safe_next(next_path), status_code=303)
        expiry = str(int(time.time()) + SESSION_SECONDS)
        response.set_cookie(COOKIE, f"{expiry}.{self._sign(expiry)}", max_age=SESSION_SECONDS, httponly=True,
                            samesite="lax", secure=secure, path="/")
        return response

    def sign_out(self) -> Response:
        response = RedirectResponse("/login" if self.password else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _refusal_page(reason: str) -> str:
    if reason == "locked":
        title = "The console is locked"
        text = ("An API key is configured, so the console needs an operator password. Set "
                "<code>server.console_password</code> in config.toml (or RENDER_CONSOLE_PASSWORD) and restart.")
    else:
        title = "Not served under this name"
        text = ("Without an operator password the console answers only requests addressed to this box by its own "
                "name or IP address. Open it at the address configured in <code>server.host</code>, or set "
                "<code>server.console_password</code>.")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<link rel='stylesheet' href='/console/static/console.css'></head>"
            f"<body class='refusal'><main><h1>{title}</h1><p>{text}</p></main></body></html>")
