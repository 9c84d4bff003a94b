"""Pieces shared by the console pages: the page frame, status words, stage track, image views, formatting."""

from __future__ import annotations

import html
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from fastapi import Request
from nicegui import ui

from appliance.domain import ACTIVE, ErrorCode, JobStatus, Stage, is_canceled
from appliance.jobs import Job

LOGO = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='7' "
        "fill='#c8553d'/><path d='M6 16 16 7l10 9v9H6z' fill='#fff'/><path d='M6 20h20M6 23h20M11 16v9M16 20v5M21 "
        "16v9' stroke='#c8553d' stroke-width='1.4'/></svg>")

CANCELED = "canceled"  # the console's own state: a failed job whose error code is `canceled`
STAGES = [(Stage.QUEUED, "Queued"), (Stage.DOWNLOADING, "Fetching inputs"), (Stage.SEGMENT, "Finding walls"),
          (Stage.GEOMETRY, "Measuring walls"), (Stage.PROJECT, "Applying material"), (Stage.REFINE, "Refining"),
          (Stage.UPLOADING, "Saving result")]
STAGE_LABELS = dict(STAGES, **{Stage.STARTING: "Starting"})
ERROR_TITLES = {ErrorCode.DOWNLOAD_FAILED: "Could not fetch an input", ErrorCode.VALIDATION_FAILED: "Input refused",
                ErrorCode.PIPELINE_ERROR: "Render error", ErrorCode.TIMEOUT: "Timed out",
                ErrorCode.UPLOAD_FAILED: "Could not save the result", ErrorCode.CANCELED: "Canceled"}
assert set(ERROR_TITLES) == set(ErrorCode)  # a new error code needs its title here
# the paint colours offered beside a swatch upload (test render, variants)
PAINTS = [("#B04A3A", "Brick red"), ("#8C5A3C", "Terracotta"), ("#C9A66B", "Sand"), ("#E8E1D3", "Off-white"),
          ("#D9D4C7", "Greige"), ("#6B7B8C", "Slate blue"), ("#3E4A3D", "Forest"), ("#2F2F33", "Anthracite")]
STATUS_WORDS = {JobStatus.QUEUED: "Waiting", JobStatus.RUNNING: "Rendering", JobStatus.COMPLETED: "Completed",
                JobStatus.FAILED: "Failed", CANCELED: "Canceled"}


def tid(name: str) -> str:
    """A data-testid attribute (the browser tests find elements by it)."""
    return f'data-testid="{name}"'


def state_of(job: Job) -> str:
    """queued | running | completed | failed | canceled (a failed job whose error is 'canceled')."""
    return CANCELED if is_canceled(job.status, job.error_code) else job.status


# --- formatting ---------------------------------------------------------------------------------------------

def short(job_id: str | None) -> str:
    return (job_id or "")[:8]


def clock(ts: float | None) -> str:
    if ts is None:
        return "—"
    when = datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S") if when.date() == datetime.now().date() else when.strftime("%d %b %H:%M")


def day(ts: float) -> str:
    """"Today", "Yesterday" or "02 Dec 2026" (the date part of a table's date and time)."""
    when = datetime.fromtimestamp(ts).date()
    days = (datetime.now().date() - when).days
    return "Today" if days == 0 else "Yesterday" if days == 1 else when.strftime("%d %b %Y")


def clock_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def ago(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago" if seconds < 86400 else clock(ts)


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def total_time(job: Job) -> float | None:
    """Created -> finished (waiting included), or so far for an active job."""
    end = job.completed_at if job.completed_at else (time.time() if job.status in ACTIVE else None)
    return None if end is None else end - job.created_at


def render_time(job: Job) -> float | None:
    """Started -> finished, or so far for the running job."""
    if job.started_at is None:
        return None
    return (job.completed_at or time.time()) - job.started_at


def stage_label(job: Job) -> str:
    return STAGE_LABELS.get(job.stage or "", (job.stage or "").capitalize())


def material_of(job: Job) -> dict[str, Any]:
    """The wall material as the console shows it: {"colour": "#RRGGBB"} or {"swatch": thumbnail URL}, and a
    "material" caption (the colour, or the swatch's file name)."""
    from urllib.parse import unquote, urlsplit

    from appliance.refs import InputRef, RefKind

    ref = InputRef.parse(job.texture_url)
    if ref.is_colour:
        return {"colour": ref.value, "material": f"paint {ref.value}"}
    name = ref.value if ref.kind is not RefKind.URL else unquote(urlsplit(ref.value).path.rsplit("/", 1)[-1])
    return {"swatch": file_url(job.job_id, "swatch-thumb"), "material": name or "swatch"}


def material_html(job: Job) -> str:
    m = material_of(job)
    chip = (f"<span class='material-swatch' style='background:{html.escape(m['colour'])}'></span>" if "colour" in m
            else f"<img class='material-swatch' src='{html.escape(m['swatch'])}' alt=''>")
    return f"<span class='material-cell'>{chip}<span class='material-name'>{html.escape(m['material'])}</span></span>"


def file_url(job_id: str, name: str, version: str = "") -> str:
    return f"/console/files/{job_id}/{name}" + (f"?v={version}" if version else "")


# --- building blocks ----------------------------------------------------------------------------------------

@contextmanager
def frame(active: str, auth: Any, title: str) -> Iterator[None]:
    """The page's header (brand, navigation, sign-out) and a centred content column."""
    ui.page_title(f"{title} · Render appliance")
    ui.colors(primary="#c8553d", secondary="#2b3340", accent="#2f6fde", positive="#1f9d61", negative="#d64045",
              warning="#e0a030", info="#2f6fde")
    ui.query(".nicegui-content").classes("console-root")
    with ui.header().classes("console-header"):
        with ui.link(target="/").classes("brand"):
            raw(LOGO).classes("brand-logo")
            ui.label("Render appliance").classes("brand-name")
        with ui.row().classes("nav"):
            for key, label, target in (("queue", "Queue", "/"), ("test", "Test render", "/test-render"),
                                       ("swatches", "Swatches", "/swatches"), ("learning", "Learning", "/learning")):
                ui.link(label, target).classes("nav-link" + (" active" if key == active else ""))
        ui.space()
        if auth.mode == "password":
            ui.link("Sign out", "/console/logout").classes("nav-link sign-out")
    with ui.column().classes("console-page"):
        yield


def chip(state: str, text: str | None = None) -> ui.label:
    return ui.label(text or STATUS_WORDS.get(state, state)).classes(f"chip chip-{state}")


def stage_track_html(job: Job) -> str:
    """The stages as a row of steps: done, current, still to come."""
    stages = [s for s in STAGES if s[0] != Stage.REFINE or job.options.get("enable_refinement")]
    keys = [k for k, _ in stages]
    state = state_of(job)
    if state == JobStatus.COMPLETED:
        current = len(keys)
    elif job.status == JobStatus.QUEUED:
        current = 0
    elif job.status == JobStatus.RUNNING:
        current = keys.index(job.stage) if job.stage in keys else 1
    else:
        current = -1
    parts = []
    for i, (key, label) in enumerate(stages):
        cls = "done" if i < current else "now" if i == current else "todo"
        parts.append(f"<li class='step step-{cls}' data-stage='{key}'><span class='dot'></span>{label}</li>")
    return "<ol class='stage-track'>" + "".join(parts) + "</ol>"


def compare_html(before: str, after: str, labels: tuple[str, str] = ("Before", "After")) -> str:
    """A before/after slider (ui/static/console.js drives it: drag, click, arrow keys)."""
    b, a = html.escape(before, quote=True), html.escape(after, quote=True)
    left, right = (html.escape(x) for x in labels)
    return (f"<div class='ba-slider' tabindex='0' role='slider' aria-label='Before and after' aria-valuemin='0' "
            f"aria-valuemax='100' aria-valuenow='50' style='--pos:50%'>"
            f"<img class='ba-after' src='{a}' alt='After' draggable='false'>"
            f"<img class='ba-before' src='{b}' alt='Before' draggable='false'>"
            f"<span class='ba-tag ba-tag-before'>{left}</span><span class='ba-tag ba-tag-after'>{right}</span>"
            f"<div class='ba-handle'><span></span></div></div>")


def overlay_html(photo: str, overlay: str | None, caption: str = "") -> str:
    """The photo with the paint mask laid over it."""
    layer = f"<img class='stack-top' src='{html.escape(overlay, quote=True)}' alt='Paint mask'>" if overlay else ""
    return (f"<figure class='stack'><img src='{html.escape(photo, quote=True)}' alt='Photo'>{layer}"
            + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>")


def colour_block(hex_colour: str) -> str:
    return f"<div class='paint-block' style='background:{html.escape(hex_colour)}'><span>{hex_colour}</span></div>"


def model_name(name: str) -> str:
    """"embedded:a+b (cpu fp32)" -> "a + b (cpu fp32)"."""
    kind, _, rest = name.partition(":")
    return rest.replace("+", " + ") if kind in ("embedded", "gpu", "baseline") and rest else name


def timing_bars_html(timings: dict[str, float] | None) -> str:
    if not timings:
        return "<p class='muted'>No stage ran.</p>"
    top = max(timings.values()) or 1.0
    rows = []
    order = [key for key, _ in STAGES]
    for stage, seconds in sorted(timings.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        width = max(2.0, 100.0 * seconds / top)
        rows.append(f"<div class='tbar'><span class='tbar-name'>{html.escape(STAGE_LABELS.get(stage, stage))}</span>"
                    f"<span class='tbar-track'><span style='width:{width:.1f}%'></span></span>"
                    f"<span class='tbar-value'>{seconds * 1000:,.0f} ms</span></div>")
    total = sum(timings.values())
    rows.append(f"<div class='tbar tbar-total'><span class='tbar-name'>Total</span><span class='tbar-track'></span>"
                f"<span class='tbar-value'>{total * 1000:,.0f} ms</span></div>")
    return "<div class='tbars'>" + "".join(rows) + "</div>"


def facts_html(pairs: list[tuple[str, str]]) -> str:
    return "<dl class='facts'>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                          for k, v in pairs) + "</dl>"


def option_facts(options: dict[str, Any]) -> list[tuple[str, str]]:
    timeout = options.get("stage_timeout_seconds")
    return [("Pattern scale", f"{options.get('real_world_scale', 24):g} repeats across the widest wall"),
            ("Refinement", "on (diffusion)" if options.get("enable_refinement") else "off"),
            ("Refinement seed", str(options.get("refinement_seed", 42))),
            ("Stage time limit", f"{timeout:g} s" if timeout else "appliance default")] + (
        [("Swatch width", f"{options['swatch_width_m']:g} m (size from the wall's measured scale)")]
        if options.get("swatch_width_m") else [])


def raw(content: str) -> ui.html:
    """HTML built here from escaped values (never sanitized away: it carries styles and SVG)."""
    return ui.html(content, sanitize=False)


def card(title: str | None = None, classes: str = "") -> ui.card:
    c = ui.card().classes(f"panel {classes}")
    if title:
        with c:
            ui.label(title).classes("panel-title")
    return c


def login_page(auth: Any) -> None:
    from .auth import TooManyAttempts, client_address, safe_next

    @ui.page("/login", favicon=LOGO)
    def login(request: Request, next: str = "/") -> None:  # noqa: A002
        ui.page_title("Sign in · Render appliance")
        ui.colors(primary="#c8553d")
        if auth.mode != "password":
            ui.navigate.to(safe_next(next))
            return
        ui.query(".nicegui-content").classes("login-root")
        with ui.card().classes("login-card"):
            raw(LOGO).classes("login-logo")
            ui.label("Render appliance").classes("login-title")
            ui.label("Operator console — sign in with the operator password.").classes("muted")
            password = ui.input("Password", password=True, password_toggle_button=True).props(
                "outlined autofocus").classes("w-full").props(tid("password"))
            error = ui.label("").classes("form-error")

            async def submit() -> None:
                button.props("loading")
                try:
                    ticket = await auth.check_password(password.value or "", client_address(request))
                except TooManyAttempts as exc:
                    button.props(remove="loading")
                    error.text = f"Too many wrong passwords from this address; try again in {exc.retry_after:.0f} s."
                    password.value = ""
                    return
                button.props(remove="loading")
                if ticket is None:
                    error.text = "That is not the operator password."
                    password.value = ""
                    return
                from urllib.parse import quote

                ui.navigate.to(f"/console/session?ticket={ticket}&next={quote(safe_next(next), safe='')}")

            password.on("keydown.enter", submit)
            button = ui.button("Sign in", on_click=submit).props("unelevated").classes("w-full").props(tid("sign-in"))

