"""Mask fix: paint or erase the paint mask of a finished job with a brush, then re-render with it.

The brush runs in the browser (ui/static/console.js, MaskEditor); the corrected mask goes as a PNG to
POST /console/jobs/{id}/mask, which checks it like the worker will and submits a new job whose `mask` it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, ErrorCode, JobStatus

from . import jobfiles
from .components import ERROR_TITLES, LOGO, card, file_url, frame, raw, short, tid


def _inputs(ctx: Any, job_id: str) -> tuple[Any, bool, bool]:
    job = ctx.store.get(job_id)
    if job is None:
        return None, False, False
    settings = ctx.settings
    has_mask = bool(jobfiles.find(settings, job_id, "mask") or jobfiles.find(settings, job_id, "mask-input"))
    return job, jobfiles.find(settings, job_id, "photo") is not None, has_mask


def no_mask_reason(job: Any) -> str:
    """Why a finished job kept no paint mask, from how it ended (only an input refusal means "no wall")."""
    if job.error_code == ErrorCode.VALIDATION_FAILED and "wall" in (job.error_message or ""):
        return "This job has no mask: the segmenter found no wall"
    if job.error_code in ERROR_TITLES and job.status == JobStatus.FAILED:
        return (f"This job has no mask: it stopped before the segmenter finished "
                f"({ERROR_TITLES[job.error_code].lower()})")
    return "This job has no mask"


class MaskFix:
    def __init__(self, ctx: Any, job: Any, has_mask: bool):
        self.ctx, self.job = ctx, job
        self.key = short(job.job_id)
        with ui.row().classes("page-head"):
            with ui.column().classes("gap-0"):
                raw(f"<div class='crumbs'><a href='/'>Queue</a> / <a href='/jobs/{job.job_id}'>Job "
                    f"{short(job.job_id)}</a> / Fix mask</div>")
                ui.label("Fix the paint mask").classes("page-title")
                ui.label("Paint where the material goes and erase where it must not, then render again with "
                         "this mask.").classes("muted")
        with ui.element("div").classes("editor-grid"):
            with card(classes="w-full"):
                self.host = ui.element("div").classes("mask-editor").props(tid("mask-editor"))
                if not has_mask:
                    ui.label(no_mask_reason(job) + ": paint the walls to clad.").classes("hint").props(
                        tid("no-mask"))
            with card("Brush", classes="w-full"):
                self.mode = ui.toggle({"paint": "Paint", "erase": "Erase"}, value="paint",
                                      on_change=lambda e: self.call(f"setMode('{e.value}')")).props(
                    "no-caps unelevated spread").classes("w-full").props(tid("brush-mode"))
                ui.label("Brush size").classes("text-weight-medium")
                ui.slider(min=4, max=200, value=40, on_change=lambda e: self.call(f"setSize({int(e.value)})")
                          ).props(tid("brush-size"))
                ui.label("Mask opacity").classes("text-weight-medium")
                ui.slider(min=0.1, max=1, step=0.05, value=0.6,
                          on_change=lambda e: self.call(f"setOpacity({float(e.value)})"))
                with ui.element("div").classes("tool-row"):
                    for label, method, tip in (("Undo", "undo()", "Undo the last stroke"),
                                               ("Restore", "restore()", "Back to the job's mask"),
                                               ("Clear", "clear()", "Erase everything")):
                        ui.button(label, on_click=lambda m=method: self.call(m)).props(
                            "outline dense no-caps color=secondary").tooltip(tip)
                raw("<div class='hint'>Drag on the photo to paint. <span class='kbd'>Ctrl</span>+<span class='kbd'>"
                    "Z</span> undoes a stroke. The pink area is what gets re-clad.</div>")
                self.error = ui.label("").classes("form-error").props(tid("mask-error"))
                self.button = ui.button("Render with this mask", icon="play_arrow", on_click=self.submit).props(
                    "unelevated").classes("w-full").props(tid("rerender"))
                ui.link("Back to the job", f"/jobs/{job.job_id}").classes("hint")
        mask = f"'{file_url(job.job_id, 'mask')}'" if has_mask else "null"
        ui.timer(0.05, lambda: ui.run_javascript(
            f"RenderConsole.mountMaskEditor('{self.key}', 'c{self.host.id}', '{file_url(job.job_id, 'photo')}', "
            f"{mask}).then(() => RenderConsole.editors['{self.key}'].setOpacity(0.6))"), once=True)

    def call(self, method: str) -> None:
        ui.run_javascript(f"RenderConsole.editors['{self.key}'] && RenderConsole.editors['{self.key}'].{method}")

    async def submit(self) -> None:
        self.button.props("loading")
        self.error.text = ""
        try:
            answer = await ui.run_javascript(
                f"RenderConsole.editors['{self.key}'].submit('/console/jobs/{self.job.job_id}/mask')", timeout=60)
        except TimeoutError:
            answer = {"status": 0, "body": {"message": "the browser did not answer in time"}}
        finally:
            self.button.props(remove="loading")
        body = (answer or {}).get("body") or {}
        if (answer or {}).get("status") == 201 and body.get("job_id"):
            ui.navigate.to(f"/jobs/{body['job_id']}")
        else:
            self.error.text = body.get("message") or body.get("error") or "the mask was not accepted"


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/jobs/{job_id}/mask", favicon=LOGO)
    async def mask_page(request: Request, job_id: str) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        job, has_photo, has_mask = await run.io_bound(_inputs, ctx, job_id) if len(job_id) <= 64 else (None, 0, 0)
        with frame("queue", auth, "Fix mask"):
            if job is None or not has_photo or job.status in ACTIVE:
                ui.label("This mask cannot be edited").classes("page-title")
                reason = ("no such job" if job is None else "the job is still running" if job.status in ACTIVE
                          else "the job's photo was never fetched or was deleted")
                ui.label(f"Reason: {reason}.").classes("muted")
                ui.link("Back to the queue", "/")
                return None
            MaskFix(ctx, job, has_mask)
        return None
