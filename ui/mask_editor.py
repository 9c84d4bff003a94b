"""Mask fix: correct the paint mask of one surface of a finished job, then re-render with it.

`/jobs/{id}/mask?surface=NAME` edits the mask of the wall (the default) or of one of the job's extra surfaces;
tabs switch between them (a page load each: edits not rendered yet are confirmed away first). Tools
(ui/static/console.js, MaskEditor, in the browser): brush, lasso, polygon, an edge-snapping fill (the stroke goes
to POST /console/jobs/{id}/snap: GrabCut in ui/mask_snap.py) and whole house parts from the parser
(part-<surface>.png in the job's folder); each adds or removes, zoom and pan, one undo across all tools. The
corrected mask goes as a PNG to POST /console/jobs/{id}/mask?surface=NAME, which checks it like the worker will
and submits a new job where that surface's mask is replaced and everything else is as before.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, ErrorCode, JobStatus
from appliance.jobdir import MASK, surface_stem
from pipeline.surfaces import Surface

from . import jobfiles
from .components import ERROR_TITLES, LOGO, card, file_url, frame, raw, short, tid
from .surfaces_ui import editable_surfaces, label, mask_fix_url, material_chip, surface_files, surface_refusal


PART_WORDS = {"roof": "Roof", "window": "Windows", "door": "Doors", "garage_door": "Garage doors", "trim": "Trim"}
TOOLS = {"brush": "Brush", "lasso": "Lasso", "polygon": "Polygon", "snap": "Snap"}
TOOL_HINTS = {
    "brush": "Drag on the photo to paint.",
    "lasso": "Drag a closed outline around an area: it is filled when you let go.",
    "polygon": "Click the corners; double-click, press Enter or click the first corner to close it.",
    "snap": "Click or scribble inside an area: it grows to the edges the photo shows.",
}


class Inputs(NamedTuple):
    job: Any
    has_photo: bool
    has_mask: bool  # the edited surface's own mask (what the pipeline used, else what the job was given)
    parts: list[str]
    files: dict[str, bool]  # surface_files: which surface swatches exist (the tabs' material chips)


def _inputs(ctx: Any, job_id: str, surface: str) -> Inputs | None:
    job = ctx.store.get(job_id)
    if job is None:
        return None
    settings = ctx.settings
    jobdir = jobfiles.folder(settings, job_id)
    known = surface in set(Surface)  # a name from the URL: only a real surface's files are looked for
    has_mask = known and jobdir is not None and jobdir.mask(None if surface == Surface.WALL else surface) is not None
    parts = sorted(jobfiles.parts(settings, job_id), key=lambda p: list(PART_WORDS).index(p) if p in PART_WORDS else 9)
    return Inputs(job, jobfiles.find(settings, job_id, "photo") is not None, has_mask, parts,
                  surface_files(settings, job))


def no_mask_reason(job: Any) -> str:
    """Why a finished job kept no paint mask, from how it ended (only an input refusal means "no wall")."""
    if job.error_code == ErrorCode.VALIDATION_FAILED and "wall" in (job.error_message or ""):
        return "This job has no mask: the segmenter found no wall"
    if job.error_code in ERROR_TITLES and job.status == JobStatus.FAILED:
        return (f"This job has no mask: it stopped before the segmenter finished "
                f"({ERROR_TITLES[job.error_code].lower()})")
    return "This job has no mask"


def no_mask_hint(job: Any, surface: str) -> str:
    """What the editor says over an empty mask: why there is none, and what to paint."""
    if surface == Surface.WALL:
        return no_mask_reason(job) + ": paint the walls to clad."
    name = label(surface).lower()
    if job.painted is not None and surface not in job.painted:
        return f"The house parser found no {name} in this photo: paint where it is to give it its material."
    return f"This job has no {name} mask: paint where the {name} is."


class MaskFix:
    def __init__(self, ctx: Any, inputs: Inputs, surface: str):
        job = inputs.job
        self.ctx, self.job, self.surface = ctx, job, surface
        self.key = short(job.job_id)
        wall = surface == Surface.WALL
        with ui.row().classes("page-head"):
            with ui.column().classes("gap-0"):
                raw(f"<div class='crumbs'><a href='/'>Queue</a> / <a href='/jobs/{job.job_id}'>Job "
                    f"{short(job.job_id)}</a> / Fix mask</div>")
                ui.label("Fix the paint mask" if wall else f"Fix the {label(surface).lower()} mask").classes(
                    "page-title")
                ui.label("Paint where the material goes and erase where it must not, then render again with "
                         "this mask." + ("" if wall else " The other surfaces keep their masks and materials.")
                         ).classes("muted")
        with ui.element("div").classes("editor-grid"):
            with card(classes="w-full"):
                tabbed = self._tabs(inputs)
                self.host = ui.element("div").classes("mask-editor" + (" tabbed" if tabbed else "")).props(
                    tid("mask-editor"))
                if not inputs.has_mask:
                    ui.label(no_mask_hint(job, surface)).classes("hint").props(tid("no-mask"))
            with ui.column().classes("w-full gap-4"):
                self._tools()
                if inputs.parts:
                    self._parts(inputs.parts)
                with card(classes="w-full"):
                    raw("<div class='hint'><span class='kbd'>Ctrl</span>+<span class='kbd'>Z</span> undoes any "
                        "change. Wheel zooms; drag with <span class='kbd'>Space</span> held (or the middle button) "
                        f"to pan. The pink area is what gets {'re-clad' if wall else 'its material'}.</div>")
                    self.error = ui.label("").classes("form-error").props(tid("mask-error"))
                    self.button = ui.button("Render with this mask", icon="play_arrow", on_click=self.submit).props(
                        "unelevated").classes("w-full").props(tid("rerender"))
                    ui.link("Back to the job", f"/jobs/{job.job_id}").classes("hint")
        stem = MASK if wall else surface_stem(MASK, surface)  # the route serves the used mask, else the given one
        mask = f"'{file_url(job.job_id, stem)}'" if inputs.has_mask else "null"
        ui.timer(0.05, lambda: ui.run_javascript(
            f"RenderConsole.mountMaskEditor('{self.key}', 'c{self.host.id}', '{file_url(job.job_id, 'photo')}', "
            f"{mask}, '/console/jobs/{job.job_id}/snap').then(() => "
            f"RenderConsole.editors['{self.key}'].setOpacity(0.6))"), once=True)

    def _tabs(self, inputs: Inputs) -> bool:
        """One tab per surface of the job (with its material) over the photo: the mask being edited is the pressed
        one. False (no tabs) for a job with only the wall."""
        surfaces = editable_surfaces(self.job)
        if len(surfaces) < 2:
            return False
        with ui.element("div").classes("surface-tabs").props(f"role=tablist {tid('surface-tabs')}"):
            for name in surfaces:
                current = name == self.surface
                with ui.button(on_click=lambda n=name: self.switch(n)).props(
                        "no-caps dense " + ("unelevated" if current else "outline color=secondary")).props(
                        f"role=tab aria-selected={'true' if current else 'false'} {tid(f'surface-tab-{name}')}"):
                    raw(material_chip(self.job, name, inputs.files))
                    ui.label(label(name))
        return True

    def _tools(self) -> None:
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
                for text, method, tip in (("Undo", "undo()", "Undo the last change, whatever the tool"),
                                          ("Restore", "restore()", "Back to the job's mask"),
                                          ("Clear", "clear()", "Erase everything")):
                    ui.button(text, on_click=lambda m=method: self.call(m)).props(
                        "outline dense no-caps color=secondary").tooltip(tip).props(tid(f"mask-{text.lower()}"))

    def _parts(self, parts: list[str]) -> None:
        """The parser's parts; on an extra surface its own part comes first, adding it filled (the obvious start)."""
        own = self.surface if self.surface in parts else None
        with card("House parts", classes="w-full").props(tid("parts")):
            ui.label(f"What the house parser found: start from the whole {label(own).lower()} it found (+), then "
                     "take out what must not get its material." if own else
                     "What the house parser found: add a whole part to the mask, or take it out.").classes("hint")
            for part in sorted(parts, key=lambda p: p != own):
                word = PART_WORDS.get(part, part.replace("_", " ").capitalize())
                with ui.row().classes("part-row" + (" own" if part == own else "")).props(tid(f"part-{part}")):
                    ui.label(word).classes("part-name")
                    if part == own:
                        ui.label("this mask").classes("part-tag")
                    for mode, icon, tip in (("paint", "add", "Add"), ("erase", "remove", "Take out")):
                        look = "unelevated dense" if part == own and mode == "paint" else \
                            "outline dense no-caps color=secondary"
                        ui.button(icon=icon, on_click=lambda p=part, m=mode: self.part(p, m)).props(look).tooltip(
                            f"{tip}: {word}").props(tid(f"part-{part}-{mode}"))

    async def switch(self, surface: str) -> None:
        """Another surface's mask: a page of its own; edits not rendered yet are only dropped once confirmed."""
        if surface == self.surface:
            return
        try:
            changed = await ui.run_javascript(
                f"!!(RenderConsole.editors['{self.key}'] && RenderConsole.editors['{self.key}'].changed())")
        except TimeoutError:
            changed = True  # the browser did not say: ask rather than lose edits
        if changed and not await self._confirm_leave(surface):
            return
        ui.navigate.to(mask_fix_url(self.job.job_id, surface))

    async def _confirm_leave(self, surface: str) -> bool:
        with ui.dialog() as dialog, ui.card().classes("panel confirm").props(tid("confirm")):
            ui.label(f"Leave the {label(self.surface).lower()} mask?").classes("confirm-title")
            ui.label(f"Your changes to it are not rendered yet; opening the {label(surface).lower()} mask drops "
                     "them. Render first to keep them.").classes("muted")
            with ui.row().classes("w-full justify-end"):
                ui.button("Keep editing", on_click=lambda: dialog.submit(False)).props("flat no-caps").props(
                    tid("confirm-no"))
                ui.button(f"Open the {label(surface).lower()} mask", on_click=lambda: dialog.submit(True)).props(
                    "unelevated no-caps").props(tid("confirm-yes"))
        leave = bool(await dialog)
        dialog.delete()
        return leave

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
        target = f"/console/jobs/{self.job.job_id}/mask" + \
            ("" if self.surface == Surface.WALL else f"?surface={self.surface}")
        try:
            answer = await ui.run_javascript(f"RenderConsole.editors['{self.key}'].submit('{target}')", timeout=60)
        except TimeoutError:
            answer = {"status": 0, "body": {"message": "the browser did not answer in time"}}
        finally:
            self.button.props(remove="loading")
        body = (answer or {}).get("body") or {}
        if (answer or {}).get("status") == 201 and body.get("job_id"):
            ui.navigate.to(f"/jobs/{body['job_id']}")
        else:
            self.error.text = body.get("message") or body.get("error") or "the mask was not accepted"


def _refusal(inputs: Inputs | None, surface: str) -> str | None:
    """Why this page cannot edit the mask, or None."""
    if inputs is None:
        return "no such job"
    if inputs.job.status in ACTIVE:
        return "the job is still running"
    if not inputs.has_photo:
        return "the job's photo was never fetched or was deleted"
    return surface_refusal(inputs.job, surface)


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/jobs/{job_id}/mask", favicon=LOGO)
    async def mask_page(request: Request, job_id: str, surface: str = Surface.WALL.value) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        inputs = await run.io_bound(_inputs, ctx, job_id, surface) if len(job_id) <= 64 else None
        with frame("queue", auth, "Fix mask"):
            if (reason := _refusal(inputs, surface)) is not None:
                ui.label("This mask cannot be edited").classes("page-title")
                ui.label(f"Reason: {reason}.").classes("muted").props(tid("mask-refused"))
                if inputs is not None and inputs.has_photo and inputs.job.status not in ACTIVE:
                    with ui.row().classes("gap-3"):
                        for name in editable_surfaces(inputs.job):  # the masks this job does have
                            ui.link(f"Fix the {label(name).lower()} mask", mask_fix_url(job_id, name)).props(
                                tid(f"mask-link-{name}"))
                ui.link("Back to the queue", "/")
                return None
            MaskFix(ctx, inputs, surface)
        return None
