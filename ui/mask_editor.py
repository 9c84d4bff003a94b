"""Mask fix: correct the paint mask of a finished job, then re-render with it.

Tools (ui/static/console.js, MaskEditor, in the browser): brush, lasso, polygon, an edge-snapping fill (the
stroke goes to POST /console/jobs/{id}/snap: GrabCut in ui/mask_snap.py) and whole house parts from the parser
(part-<surface>.png in the job's folder); each adds or removes, zoom and pan, one undo across all tools. The
corrected mask goes as a PNG to
POST /console/jobs/{id}/mask, which checks it like the worker will and submits a new job whose `mask` it is.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, ErrorCode, JobStatus

from . import jobfiles
from .components import ERROR_TITLES, LOGO, card, file_url, frame, raw, short, tid


PART_WORDS = {"roof": "Roof", "window": "Windows", "door": "Doors", "garage_door": "Garage doors", "trim": "Trim"}
TOOLS = {"brush": "Brush", "lasso": "Lasso", "polygon": "Polygon", "snap": "Snap"}
TOOL_HINTS = {
    "brush": "Drag on the photo to paint.",
    "lasso": "Drag a closed outline around an area: it is filled when you let go.",
    "polygon": "Click the corners; double-click, press Enter or click the first corner to close it.",
    "snap": "Click or scribble inside an area: it grows to the edges the photo shows.",
}


def _inputs(ctx: Any, job_id: str) -> tuple[Any, bool, bool, list[str]]:
    job = ctx.store.get(job_id)
    if job is None:
        return None, False, False, []
    settings = ctx.settings
    has_mask = bool(jobfiles.find(settings, job_id, "mask") or jobfiles.find(settings, job_id, "mask-input"))
    parts = sorted(jobfiles.parts(settings, job_id), key=lambda p: list(PART_WORDS).index(p) if p in PART_WORDS else 9)
    return job, jobfiles.find(settings, job_id, "photo") is not None, has_mask, parts


def no_mask_reason(job: Any) -> str:
    """Why a finished job kept no paint mask, from how it ended (only an input refusal means "no wall")."""
    if job.error_code == ErrorCode.VALIDATION_FAILED and "wall" in (job.error_message or ""):
        return "This job has no mask: the segmenter found no wall"
    if job.error_code in ERROR_TITLES and job.status == JobStatus.FAILED:
        return (f"This job has no mask: it stopped before the segmenter finished "
                f"({ERROR_TITLES[job.error_code].lower()})")
    return "This job has no mask"


class MaskFix:
    def __init__(self, ctx: Any, job: Any, has_mask: bool, parts: list[str]):
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
            with ui.column().classes("w-full gap-4"):
                with card("Tool", classes="w-full"):
                    self.tool = ui.toggle(TOOLS, value="brush", on_change=self.set_tool).props(
                        "no-caps unelevated spread dense").classes("w-full").props(tid("tool"))
                    self.mode = ui.toggle({"paint": "Paint", "erase": "Erase"}, value="paint",
                                          on_change=lambda e: self.call(f"setMode('{e.value}')")).props(
                        "no-caps unelevated spread").classes("w-full").props(tid("brush-mode"))
                    self.tool_hint = ui.label(TOOL_HINTS["brush"]).classes("hint").props(tid("tool-hint"))
                    ui.label("Brush size").classes("text-weight-medium")
                    ui.slider(min=4, max=200, value=40, on_change=lambda e: self.call(f"setSize({int(e.value)})")
                              ).props(tid("brush-size"))
                    ui.label("Mask opacity").classes("text-weight-medium")
                    ui.slider(min=0.1, max=1, step=0.05, value=0.6,
                              on_change=lambda e: self.call(f"setOpacity({float(e.value)})"))
                    with ui.row().classes("zoom-row"):
                        ui.label("Zoom").classes("text-weight-medium")
                        ui.space()
                        for icon, method, tip, name in (("zoom_out", "zoomBy(0.8)", "Zoom out (-)", "zoom-out"),
                                                        ("fit_screen", "fit()", "Whole photo (0)", "zoom-fit"),
                                                        ("zoom_in", "zoomBy(1.25)", "Zoom in (+)", "zoom-in")):
                            ui.button(icon=icon, on_click=lambda m=method: self.call(m)).props(
                                "flat dense round color=secondary").tooltip(tip).props(tid(name))
                    with ui.element("div").classes("tool-row"):
                        for label, method, tip in (("Undo", "undo()", "Undo the last change, whatever the tool"),
                                                   ("Restore", "restore()", "Back to the job's mask"),
                                                   ("Clear", "clear()", "Erase everything")):
                            ui.button(label, on_click=lambda m=method: self.call(m)).props(
                                "outline dense no-caps color=secondary").tooltip(tip).props(
                                tid(f"mask-{label.lower()}"))
                if parts:
                    with card("House parts", classes="w-full").props(tid("parts")):
                        ui.label("What the house parser found: add a whole part to the mask, or take it out."
                                 ).classes("hint")
                        for part in parts:
                            with ui.row().classes("part-row").props(tid(f"part-{part}")):
                                ui.label(PART_WORDS.get(part, part.replace("_", " ").capitalize())).classes(
                                    "part-name")
                                for mode, icon, tip in (("paint", "add", "Add"), ("erase", "remove", "Take out")):
                                    ui.button(icon=icon, on_click=lambda p=part, m=mode: self.part(p, m)).props(
                                        "outline dense no-caps color=secondary").tooltip(
                                        f"{tip}: {PART_WORDS.get(part, part)}").props(tid(f"part-{part}-{mode}"))
                with card(classes="w-full"):
                    raw("<div class='hint'><span class='kbd'>Ctrl</span>+<span class='kbd'>Z</span> undoes any "
                        "change. Wheel zooms; drag with <span class='kbd'>Space</span> held (or the middle button) "
                        "to pan. The pink area is what gets re-clad.</div>")
                    self.error = ui.label("").classes("form-error").props(tid("mask-error"))
                    self.button = ui.button("Render with this mask", icon="play_arrow", on_click=self.submit).props(
                        "unelevated").classes("w-full").props(tid("rerender"))
                    ui.link("Back to the job", f"/jobs/{job.job_id}").classes("hint")
        mask = f"'{file_url(job.job_id, 'mask')}'" if has_mask else "null"
        ui.timer(0.05, lambda: ui.run_javascript(
            f"RenderConsole.mountMaskEditor('{self.key}', 'c{self.host.id}', '{file_url(job.job_id, 'photo')}', "
            f"{mask}, '/console/jobs/{job.job_id}/snap').then(() => "
            f"RenderConsole.editors['{self.key}'].setOpacity(0.6))"), once=True)

    def set_tool(self, e: Any) -> None:
        self.tool_hint.text = TOOL_HINTS.get(e.value, "")
        self.call(f"setTool('{e.value}')")

    def part(self, part: str, mode: str) -> None:
        url = file_url(self.job.job_id, f"part-{part}")
        self.call(f"part('{url}', '{mode}')")

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
        job, has_photo, has_mask, parts = await run.io_bound(_inputs, ctx, job_id) if len(job_id) <= 64 else \
            (None, 0, 0, [])
        with frame("queue", auth, "Fix mask"):
            if job is None or not has_photo or job.status in ACTIVE:
                ui.label("This mask cannot be edited").classes("page-title")
                reason = ("no such job" if job is None else "the job is still running" if job.status in ACTIVE
                          else "the job's photo was never fetched or was deleted")
                ui.label(f"Reason: {reason}.").classes("muted")
                ui.link("Back to the queue", "/")
                return None
            MaskFix(ctx, job, has_mask, parts)
        return None
