"""Job detail: inputs, paint mask, result with a before/after slider, timings, options, the full error; cancel,
retry, mask fix and download. `JobPanel` follows the job live and is reused by the test-render page."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, ErrorCode, is_canceled
from appliance.jobdir import MASK, MASK_INPUT, PHOTO, SWATCH
from appliance.jobs import COMPLETED, FAILED, QUEUED, RUNNING, Job, QueueFull, StoreUnavailable
from appliance.refs import InputRef
from appliance.service import CancelOutcome
from pipeline.stages import PipelineStage

from . import jobfiles
from .surfaces_ui import surface_files, surfaces_card
from .components import (ERROR_TITLES, LOGO, card, chip, clock, colour_block, compare_html, duration, facts_html,
                         file_url, frame, model_name, option_facts, overlay_html, raw, render_time, short, stage_label,
                         stage_track_html, state_of, tid, timing_bars_html, total_time)

KIND_WORDS = {"retry": "Retry of", "mask fix": "Mask fix of", "test render": "Test render", "variant": "Variant of",
              "surfaces": "Surfaces changed from"}


def load(ctx: Any, job_id: str) -> tuple[Job | None, dict[str, bool], dict[str, Any], int | None]:
    """The job, which of its images exist, what it was made from, its place in line (runs in a thread)."""
    job = ctx.store.get(job_id)
    if job is None:
        return None, {}, {}, None
    settings = ctx.settings
    files = {stem: jobfiles.find(settings, job_id, stem) is not None for stem in (PHOTO, SWATCH, MASK, MASK_INPUT)}
    files["result"] = job.status == COMPLETED and bool(job.result_url)
    files.update(surface_files(settings, job))
    position = ctx.store.queue_position(job) if job.status == QUEUED else None
    return job, files, jobfiles.origin(settings, job_id), position


class JobPanel:
    """Everything about one job, redrawn when its state moves on and its progress updated in place."""

    def __init__(self, ctx: Any, job_id: str, *, compact: bool = False):
        self.ctx, self.job_id, self.compact = ctx, job_id, compact
        self.key: Any = None
        self.progress: dict[str, Any] = {}
        self.box = ui.column().classes("w-full gap-4")
        self.timer = ui.timer(0.5, self.poll)

    async def poll(self) -> None:
        job, files, made_from, position = await run.io_bound(load, self.ctx, self.job_id)
        if job is None:
            self.box.clear()
            with self.box:
                ui.label("This job no longer exists (finished jobs are deleted after the retention period).")
            self.timer.deactivate()
            return
        key = (job.status, job.stage, job.cancel_requested, tuple(sorted(files.items())))
        if self.compact and self.key is not None and self.key[0] in ACTIVE and job.status not in ACTIVE:
            self._announce(job)
        if key != self.key:
            self.key = key
            self.draw(job, files, made_from, position)
        else:
            self.update(job, position)
        if job.status not in ACTIVE:
            self.timer.deactivate()  # finished (the worker keeps the mask before it records the end): all drawn

    @staticmethod
    def _announce(job: Job) -> None:
        """The test render the operator is waiting for has ended: a toast and a short chime."""
        state = state_of(job)
        text = {COMPLETED: "Test render finished", "canceled": "Test render canceled"}.get(
            state, f"Test render failed: {ERROR_TITLES.get(job.error_code or '', 'error')}")
        ui.notify(f"{text} (job {short(job.job_id)})", type="positive" if state == COMPLETED else "warning",
                  position="top-right", timeout=8000)
        ui.run_javascript("RenderConsole.chime && RenderConsole.chime()")

    # --- in place, every tick while it runs ---
    def update(self, job: Job, position: int | None) -> None:
        p = self.progress
        if not p:
            return
        p["bar"].value = job.progress
        p["text"].text = self._progress_text(job, position)

    @staticmethod
    def _progress_text(job: Job, position: int | None) -> str:
        if job.status == QUEUED:
            where = "next in line" if position == 0 else f"{position} job(s) ahead" if position else "waiting"
            return f"Waiting for the worker · {where} · {duration(total_time(job))} so far"
        return f"{stage_label(job)} · {job.progress:.0%} · {duration(render_time(job))} elapsed"

    # --- the whole panel ---
    def draw(self, job: Job, files: dict[str, bool], made_from: dict[str, Any], position: int | None) -> None:
        self.progress = {}
        self.box.clear()
        with self.box:
            if not self.compact:
                self._head(job, files, made_from)
            if job.status in ACTIVE:
                self._progress(job, position)
            if job.status == FAILED:
                self._error(job)
            if self.compact:
                self._viewer(job, files)
                self._compact_actions(job, files)
                return
            with ui.element("div").classes("job-grid"):
                with ui.element("div").classes("side"):
                    self._viewer(job, files)
                    with ui.element("div").classes("pair"):
                        self._facts(job)
                with ui.element("div").classes("side"):
                    self._side(job, files)
            if job.status not in ACTIVE:
                from .variants import VariantsCard

                VariantsCard(self.ctx, job)

    def _head(self, job: Job, files: dict[str, bool], made_from: dict[str, Any]) -> None:
        raw(f"<div class='crumbs'><a href='/'>Queue</a> / Job {short(job.job_id)}</div>")
        with ui.row().classes("job-head"):
            ui.label(f"Job {short(job.job_id)}").classes("page-title mono-title").props(tid("job-title"))
            chip(state_of(job)).props(tid("job-status"))
            if job.cancel_requested and job.status == RUNNING:
                ui.label("cancel requested: stops after this stage").classes("chip chip-canceled")
            ui.space()
            with ui.row().classes("job-actions"):
                self._actions(job, files)
        parts = [("Created", clock(job.created_at))]
        if job.started_at:
            parts.append(("Waited", duration(job.started_at - job.created_at)))
        if job.completed_at and job.started_at:
            # Only a completed job was rendered; a failed, canceled or timed-out one ran for that long and stopped.
            parts.append(("Rendered in" if job.status == COMPLETED else "Stopped after",
                          duration(job.completed_at - job.started_at)))
        parts.append(("Total", duration(total_time(job))))
        if job.attempts > 1:
            parts.append(("Attempts", str(job.attempts)))
        parts += [("Project", short(job.project_id)), ("User", short(job.user_id))] if job.project_id or job.user_id \
            else [("Source", "console" if made_from else "API")]
        if made_from.get("parent"):
            word = KIND_WORDS.get(made_from.get("kind", ""), "From")
            parts.append((word, short(made_from["parent"])))
        with ui.row().classes("meta-line"):
            for label, value in parts:
                raw(f"<span>{label} <b>{value}</b></span>")
        ui.label(job.job_id).classes("mono muted").style("font-size:12px; margin-top:-8px")

    def _actions(self, job: Job, files: dict[str, bool]) -> None:
        if job.status in ACTIVE:
            ui.button("Cancel", icon="block", on_click=lambda: self.cancel(job)).props(
                "outline color=negative").props(tid("cancel"))
        else:
            ui.button("Retry", icon="replay", on_click=lambda: self.retry(job)).props("outline").props(tid("retry"))
        if job.status not in ACTIVE and files.get("photo"):
            ui.button("Try another material", icon="palette",
                      on_click=lambda: ui.navigate.to(f"/jobs/{job.job_id}/material")).props("outline").props(
                tid("try-material"))
            ui.button("Fix mask", icon="brush", on_click=lambda: ui.navigate.to(f"/jobs/{job.job_id}/mask")).props(
                "outline").props(tid("fix-mask"))
        if files.get("result"):
            ui.button("Before | after", icon="compare",
                      on_click=lambda: ui.navigate.to(file_url(job.job_id, "before-after"))).props(
                "outline").props(tid("download-before-after")).tooltip("Download the photo and the render side by "
                                                                         "side, for the client")
            ui.button("Download", icon="download",
                      on_click=lambda: ui.navigate.to(file_url(job.job_id, "result") + "?download=1")).props(
                "unelevated").props(tid("download"))

    def _compact_actions(self, job: Job, files: dict[str, bool]) -> None:
        with ui.row().classes("job-actions"):
            ui.button("Open job page", icon="open_in_new", on_click=lambda: ui.navigate.to(f"/jobs/{job.job_id}")
                      ).props("outline").props(tid("open-job"))
            if job.status in ACTIVE:
                ui.button("Cancel", icon="block", on_click=lambda: self.cancel(job)).props("outline color=negative")
            else:
                if files.get("photo"):
                    ui.button("Fix mask", icon="brush",
                              on_click=lambda: ui.navigate.to(f"/jobs/{job.job_id}/mask")).props("outline")
                if files.get("result"):
                    ui.button("Download", icon="download", on_click=lambda: ui.navigate.to(
                        file_url(job.job_id, "result") + "?download=1")).props("unelevated")

    def _progress(self, job: Job, position: int | None) -> None:
        with card(classes="progress-panel").props(tid("progress")):
            with ui.row().classes("progress-line"):
                chip(state_of(job))
                text = ui.label(self._progress_text(job, position)).classes("now-stage").props(tid("progress-text"))
            bar = ui.linear_progress(job.progress, show_value=False, size="10px").props("rounded color=accent")
            raw(stage_track_html(job)).props(tid("stage-track"))
        self.progress = {"bar": bar, "text": text}

    def _error(self, job: Job) -> None:
        canceled = is_canceled(job.status, job.error_code)
        with card(classes="error-panel w-full" + (" canceled" if canceled else "")).props(tid("error")):
            ui.label(ERROR_TITLES.get(job.error_code or "", "Failed")).classes("error-title")
            message = _escape(job.error_message or "no message")
            raw(f"<pre class='error-text'>{message}</pre>").props(tid("error-text"))
            ui.label(f"error code: {job.error_code}").classes("mono muted").style("font-size:12px")

    def _viewer(self, job: Job, files: dict[str, bool]) -> None:
        v = "-".join(str(x) for x in (job.status, int(job.completed_at or 0)))
        with card("Before / after" if files.get("result") else "Photo", classes="viewer w-full").props(tid("viewer")):
            if files.get("result") and files.get("photo"):
                raw(compare_html(file_url(job.job_id, "photo"), file_url(job.job_id, "result", v))).classes(
                    "w-full").props(tid("compare"))
                with ui.row().classes("w-full items-center"):
                    ui.label("Drag across the picture (or use the arrow keys) to compare the photo with the render."
                             ).classes("muted").style("font-size:12px")
                    ui.space()
                    ui.button("Full screen", icon="fullscreen", on_click=lambda: self.fullscreen(job, v)).props(
                        "flat dense no-caps").props(tid("fullscreen"))
            elif files.get("result"):
                raw(f"<img src='{file_url(job.job_id, 'result', v)}' alt='Result' style='width:100%'>")
            elif files.get("photo"):
                overlay = file_url(job.job_id, "overlay", v) if files.get("mask") or files.get("mask-input") else None
                raw(overlay_html(file_url(job.job_id, "photo"), overlay,
                                 "Paint mask shown in pink" if overlay else "")).classes("w-full")
            else:
                waiting = job.status in ACTIVE
                raw("<div class='placeholder short'>" + ("The photo appears here once the worker has fetched it."
                                                    if waiting else "The photo was never fetched, so there is "
                                                                    "nothing to show.") + "</div>")

    def _side(self, job: Job, files: dict[str, bool]) -> None:
        with card("Inputs", classes="w-full").props(tid("inputs")):
            with ui.element("div").classes("inputs"):
                self._tile(job, "photo", files, "Photo")
                if InputRef.parse(job.texture_url).is_colour:
                    raw(f"<figure class='tile'>{colour_block(job.texture_url)}<figcaption>Paint colour"
                        f"</figcaption></figure>")
                else:
                    self._tile(job, "swatch", files, "Swatch")
                if files.get("photo") and (files.get("mask") or files.get("mask-input")):
                    v = str(int(job.completed_at or 0))
                    raw("<figure class='tile wide'>" + overlay_html(
                        file_url(job.job_id, "photo"), file_url(job.job_id, "overlay", v)) +
                        "<figcaption>" + ("Paint mask (corrected by hand)" if job.mask_url else
                                          "Paint mask found by the segmenter") + "</figcaption></figure>")
        surfaces_card(job, files, change_url=f"/test-render?from={job.job_id}"
                      if job.status not in ACTIVE and files.get("photo") else None)
        if job.backends or job.warnings:
            with card("Models", classes="w-full"):
                order = list(PipelineStage)
                backends = sorted((job.backends or {}).items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                                  else 9)
                raw(facts_html([(k.capitalize(), model_name(v)) for k, v in backends]))
                for warning in job.warnings or []:
                    ui.label(f"⚠ {warning}").classes("warning-line")

    def _facts(self, job: Job) -> None:
        with card("Stage timings", classes="w-full").props(tid("timings")):
            if job.timings:
                raw(timing_bars_html(job.timings))
            else:
                ui.label(_no_timings(job)).classes("muted")
        with card("Options", classes="w-full").props(tid("options")):
            raw(facts_html(option_facts(job.options)))

    def _tile(self, job: Job, stem: str, files: dict[str, bool], caption: str) -> None:
        if files.get(stem):
            url = file_url(self.job_id, stem)
            raw(f"<figure class='tile'><a href='{url}' target='_blank'><img src='{url}' alt='{caption}'></a>"
                f"<figcaption>{caption}</figcaption></figure>")
        else:
            missing = "fetched when the job starts" if job.status in ACTIVE else "never fetched"
            raw(f"<figure class='tile'><div class='placeholder' style='aspect-ratio:4/3'>{missing}</div>"
                f"<figcaption>{caption}</figcaption></figure>")

    def fullscreen(self, job: Job, version: str) -> None:
        """The render (or the photo) over the whole window, to zoom into: wheel, buttons, drag, double-click."""
        view = "[data-testid=zoom-view]"
        with ui.dialog().props("maximized") as dialog, ui.card().classes("fullscreen-card").props(tid("full-view")):
            with ui.row().classes("fullscreen-bar"):
                ui.label(f"Job {short(job.job_id)}").classes("mono")
                which = ui.toggle({"result": "Render", "photo": "Photo"}, value="result").props(
                    "dense no-caps unelevated").props(tid("full-which"))
                ui.space()
                ui.label("Wheel or double-click to zoom, drag to move").classes("muted")
                for icon, js, name in (("zoom_out", f"zoomBy('{view}', 0.8)", "full-zoom-out"),
                                       ("fit_screen", f"zoomReset('{view}')", "full-fit"),
                                       ("zoom_in", f"zoomBy('{view}', 1.25)", "full-zoom-in")):
                    ui.button(icon=icon, on_click=lambda js=js: ui.run_javascript(f"RenderConsole.{js}")).props(
                        "flat round dense color=white").props(tid(name))
                ui.button(icon="close", on_click=dialog.close).props("flat round dense color=white").props(
                    tid("full-close"))
            with ui.element("div").classes("zoom-view").props(tid("zoom-view")):
                image = raw(f"<img src='{file_url(job.job_id, 'result', version)}' alt='Render' draggable='false'>")

        def show(e: Any) -> None:
            url = file_url(job.job_id, "result", version) if e.value == "result" else file_url(job.job_id, "photo")
            image.content = f"<img src='{url}' alt='' draggable='false'>"
            ui.run_javascript(f"RenderConsole.zoomReset('{view}')")

        which.on_value_change(show)
        dialog.on("hide", dialog.delete)
        dialog.open()
        ui.timer(0.2, lambda: ui.run_javascript(f"RenderConsole.zoomable('{view}')"), once=True)

    # --- actions ---
    async def cancel(self, job: Job) -> None:
        found = await run.io_bound(self.ctx.service.cancel, job.job_id)
        outcome = found[1] if found is not None else CancelOutcome.FINISHED
        if outcome is CancelOutcome.CANCELED:
            ui.notify("Job canceled", type="info")
        elif outcome is CancelOutcome.STOPPING:
            ui.notify("Cancel requested: the job stops after its current stage", type="info")
        else:
            ui.notify("The job had already finished", type="warning")
        self.key = None
        self.timer.activate()
        await self.poll()

    async def retry(self, job: Job) -> None:
        try:
            new = await run.io_bound(self.ctx.service.retry, job)
        except QueueFull:
            ui.notify(f"The queue is full ({self.ctx.settings.queue_depth} jobs); try again shortly", type="negative")
            return
        except StoreUnavailable:
            ui.notify(jobfiles.STORE_BUSY, type="negative")
            return
        except (FileNotFoundError, ValueError) as exc:
            ui.notify(f"Cannot retry: {exc}", type="negative")
            return
        ui.navigate.to(f"/jobs/{new.job_id}")


def _no_timings(job: Job) -> str:
    """Why a job has no stage timings: the pipeline reports them when it returns, so a job stopped inside it
    (canceled, timed out, its worker lost) has none although stages ran."""
    if job.status in ACTIVE:
        return "Timings appear once the stages have run."
    if job.started_at is None:
        return "No stage ran: the job ended before the worker took it."
    if job.error_code == ErrorCode.DOWNLOAD_FAILED:
        return "No stage ran: an input could not be fetched (see the error above)."
    return (f"The job stopped after {duration(render_time(job))}, before the pipeline reported its stage timings "
            f"({ERROR_TITLES.get(job.error_code or '', 'failed').lower()}).")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/jobs/{job_id}", favicon=LOGO)
    async def job_page(request: Request, job_id: str) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        job = await run.io_bound(ctx.store.get, job_id) if len(job_id) <= 64 else None
        with frame("queue", auth, f"Job {short(job_id)}"):
            if job is None:
                raw(f"<div class='crumbs'><a href='/'>Queue</a> / Job {_escape(short(job_id))}</div>")
                ui.label("No such job").classes("page-title")
                ui.label("It may have been deleted after the retention period.").classes("muted")
                return None
            JobPanel(ctx, job_id)
        return None

