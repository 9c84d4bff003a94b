"""Test render: drop a photo and a swatch (or pick a paint colour), a material or colour per extra surface (roof,
trim, doors), set the options, submit, follow the job.

Dropped files go to the (future) job's folder at once, checked the way the render checks them, and the job is
submitted through the API's own path with "upload:<file>" references that the worker reads from disk.
`/test-render?from=<job id>` keeps that job's photo, wall and options and changes only its surfaces (the job
service links the kept files: nothing is uploaded again).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import Request
from nicegui import events, run, ui

from appliance.jobs import QueueFull, StoreUnavailable
from appliance.refs import InputRef, normal_colour
from appliance.service import has_refiner, job_surfaces
from pipeline.errors import InputError
from pipeline.options import bounds

from . import jobfiles
from .components import LOGO, PAINTS, card, file_url, frame, raw, short, tid
from .job_page import JobPanel
from .surfaces_ui import EXTRA, SurfacePicker

log = logging.getLogger(__name__)

class DropZone:
    """One image input: a drop target (click to choose) that shows the file or why it was refused."""

    def __init__(self, page: "TestRender", stem: str, title: str, hint: str):
        self.page, self.stem = page, stem
        self.ref: str | None = None
        self.name: str | None = None
        settings = page.ctx.settings
        with ui.element("div").classes("w-full").style("position:relative"):
            self.area = ui.element("div").classes("drop-area").props(tid(f"drop-{stem}"))
            self.upload = ui.upload(auto_upload=True, max_file_size=settings.fetch_max_bytes,
                                    on_upload=self.received, on_rejected=self.rejected).classes("drop-zone")
            self.upload.style("position:absolute; inset:0; height:100%").props(tid(f"upload-{stem}"))
            self.upload.on("click", js_handler=f"() => getElement({self.upload.id}).$refs.qRef.pickFiles()")
        self.title, self.hint = title, hint
        self.line = ui.label("").classes("file-line").props(tid(f"file-{stem}"))
        self.error = ui.label("").classes("form-error").props(tid(f"error-{stem}"))
        self._empty()

    def _empty(self) -> None:
        self.area.clear()
        self.area.classes(remove="filled bad")
        with self.area:
            ui.icon("add_photo_alternate" if self.stem == "photo" else "texture")
            ui.label(self.title).classes("drop-title")
            ui.label(self.hint).classes("muted").style("font-size:12px")

    async def received(self, e: events.UploadEventArguments) -> None:
        data = await e.file.read()
        self.upload.reset()
        try:
            ref, info = await run.io_bound(jobfiles.store_upload, self.page.ctx.settings, self.page.draft, self.stem,
                                           data)
        except jobfiles.UploadRejected as exc:
            return self.refuse(f"{e.file.name}: {str(exc).removeprefix(self.stem + ': ')}")
        self.show(ref, info, e.file.name, len(data))

    def show(self, ref: str, info: dict[str, Any], name: str, size: int) -> None:
        self.ref = ref
        self.name = name
        self.error.text = ""
        self.area.clear()
        self.area.classes(add="filled", remove="bad")
        with self.area:
            raw(f"<img src='{file_url(self.page.draft, self.stem, ref.rsplit('.', 1)[-1] + str(size))}' "
                f"alt='{self.stem}'>").classes("w-full h-full")
        self.line.text = f"{name} · {info['width']}×{info['height']} px · {size / 1e6:.2f} MB"
        self.page.changed()

    def rejected(self) -> None:
        limit = self.page.ctx.settings.fetch_max_bytes / 1e6
        self.refuse(f"The file is over the limit of {limit:.0f} MB (fetch.max_bytes).")

    def refuse(self, message: str) -> None:
        self.ref = None
        self._empty()
        self.area.classes(add="bad")
        self.line.text = ""
        self.error.text = message
        self.page.changed()


class TestRender:
    def __init__(self, ctx: Any, auth: Any, refiner: bool, library_swatch: Any = None, base: Any = None):
        self.ctx = ctx
        self.base = base  # the job whose photo, wall and options are kept (?from=<id>), else None
        self.submitted = False
        self.draft = jobfiles.new_job_id()  # the job id the uploads are kept under until it is submitted
        with frame("test", auth, "Test render"):
            with ui.row().classes("page-head"):
                with ui.column().classes("gap-0"):
                    ui.label("Test render").classes("page-title")
                    ui.label("Render a photo the way the API would, and follow the job as it runs.").classes("muted")
            with ui.element("div").classes("render-grid") as self.form:
                with card("1 · House photo") as photo_card:
                    self.photo = DropZone(self, "photo", "Drop the house photo here",
                                          "or click to choose · JPEG, PNG or WebP · at least 256 px")
                with card("2 · Material") as material_card:
                    self.mode = ui.toggle({"swatch": "Swatch image", "paint": "Paint colour"}, value="swatch",
                                          on_change=lambda: self.changed()).props("no-caps unelevated spread"
                                                                                  ).classes("w-full").props(tid("material"))
                    with ui.column().classes("w-full gap-1") as self.swatch_box:
                        self.swatch = DropZone(self, "swatch", "Drop a material swatch here",
                                               "a photo of the cladding, brick or stone · tiles seamlessly")
                        low, high = bounds("swatch_width_m")
                        self.swatch_width = ui.number("Swatch width (m), optional", min=low, max=high,
                                                      step=0.01).classes("w-full").props(tid("swatch-width"))
                        ui.label("The real width the swatch shows: sizes bricks from the doors and windows in "
                                 "the photo (pattern scale is the fallback).").classes("hint")
                    with ui.column().classes("w-full gap-3") as self.paint_box:
                        self.colour = ui.color_input("Paint colour", value="#B04A3A", preview=True,
                                                     on_change=lambda: self.changed()).classes("w-full").props(
                            tid("paint-colour"))
                        self.colour_error = ui.label("").classes("form-error").props(tid("error-colour"))
                        with ui.element("div").classes("swatches"):
                            for hex_colour, name in PAINTS:
                                ui.element("div").classes("swatch-dot").style(f"background:{hex_colour}").tooltip(
                                    f"{name} {hex_colour}").on("click", lambda h=hex_colour: self.set_colour(h))
                        ui.label("The photo's light and shadow are kept; only the colour changes.").classes("hint")
                with card("3 · Roof, trim and doors (optional)").props(tid("surfaces-card")):
                    before = {e.surface: e for e in job_surfaces(base)} if base is not None else {}
                    self.pickers = [SurfacePicker(name, lambda *a: DropZone(self, *a), self.changed, before.get(name))
                                    for name in EXTRA]
                    ui.label("Each surface the house parser finds gets its own material; trim includes shutters. "
                             "A surface the photo lacks is a warning, not a failure.").classes("hint")
                with card("4 · Options") as options_card:
                    ui.label("Pattern scale").classes("text-weight-medium")
                    with ui.row().classes("w-full items-center no-wrap"):
                        # A comfortable range for a slider, inside the option's bounds (the API takes 1-400).
                        self.scale = ui.slider(min=4, max=80, step=1, value=24).classes("grow").props(tid("scale"))
                        ui.label().bind_text_from(self.scale, "value", lambda v: f"{v:g}×").classes("mono")
                    ui.label("How many times the swatch repeats across the widest wall.").classes("hint")
                    self.refine = ui.switch("Diffusion refinement", value=False).props(tid("refine"))
                    if not refiner:
                        self.refine.disable()
                        ui.label("Needs the GPU model set (not installed on this box).").classes("hint")
                    self.seed = ui.number("Refinement seed", value=42, min=0, max=bounds("refinement_seed")[1],
                                          format="%d").classes("w-full")
                    self.seed.bind_visibility_from(self.refine, "value")
                    self.timeout = ui.number("Stage time limit (s), optional", min=1,
                                             max=bounds("stage_timeout_seconds")[1]).classes("w-full")
                    ui.space()
                    if base is not None:  # the photo, wall and options stay those of the job it is made from
                        for part in (photo_card, material_card):
                            part.set_visibility(False)
                        for child in list(options_card):
                            child.set_visibility(False)
                        raw(f"<img class='summary-thumb' src='{file_url(base.job_id, 'photo')}' alt='Photo'>")
                        ui.label(f"Photo, wall material and options as in job {short(base.job_id)}; only the "
                                 "surfaces change.").classes("muted").props(tid("from-job"))
                    self.error = ui.label("").classes("form-error").props(tid("submit-error"))
                    self.submit_button = ui.button("Render", icon="play_arrow", on_click=self.submit).props(
                        "unelevated size=lg").classes("w-full").props(tid("submit"))
            self.live = ui.column().classes("live-panel w-full gap-4").props(tid("live"))
        self.library_name: str | None = None
        self.changed()
        if library_swatch is not None:
            ui.timer(0.01, lambda: self.use_library(library_swatch), once=True)

    async def use_library(self, entry: Any) -> None:
        """Start from a library swatch (the Swatches page's "Use"): copied into this draft like an upload."""
        from appliance.swatches import SwatchLibrary

        path = SwatchLibrary(self.ctx.settings).file(entry)
        if path is None:
            return self.swatch.refuse("That library swatch was deleted.")
        data = await run.io_bound(path.read_bytes)
        try:
            ref, info = await run.io_bound(jobfiles.store_upload, self.ctx.settings, self.draft, "swatch", data)
        except jobfiles.UploadRejected as exc:
            return self.swatch.refuse(str(exc))
        self.mode.value = "swatch"
        self.library_name = entry.name
        self.swatch.show(ref, info, entry.name, len(data))
        if entry.width_m:
            self.swatch_width.value = entry.width_m

    def set_colour(self, hex_colour: str) -> None:
        self.colour.value = hex_colour

    def texture(self) -> str | None:
        if self.mode.value == "swatch":
            return self.swatch.ref
        return normal_colour(self.colour.value or "")

    def changed(self) -> None:
        if not hasattr(self, "submit_button"):  # still building the form
            return
        paint = self.mode.value == "paint"
        self.swatch_box.set_visibility(not paint)
        self.paint_box.set_visibility(paint)
        ready = self.base is not None or (self.photo.ref is not None and self.texture() is not None)
        ready = ready and all(p.ready for p in self.pickers)
        self.submit_button.set_enabled(ready and not self.submitted)
        typed = (self.colour.value or "").strip()
        self.colour_error.text = "" if not paint or normal_colour(typed) else (
            f"“{typed}” is not a paint colour: type # and six hex digits, e.g. #B04A3A." if typed else
            "Pick or type a paint colour (#RRGGBB).")

    async def submit(self) -> None:
        if self.base is not None:
            return await self.submit_surfaces()
        texture = self.texture()
        paint = texture is not None and InputRef.parse(texture).is_colour
        if self.photo.ref is None or texture is None:
            self.error.text = "Add a photo and a swatch (or a paint colour #RRGGBB) first."
            return
        options = {"real_world_scale": float(self.scale.value), "enable_refinement": bool(self.refine.value),
                   "refinement_seed": int(self.seed.value or 42),
                   "stage_timeout_seconds": float(self.timeout.value) if self.timeout.value else None}
        if self.mode.value == "swatch" and self.swatch_width.value:
            options["swatch_width_m"] = float(self.swatch_width.value)
        job = await self._submit(InputError, jobfiles.submit, self.ctx, self.draft, photo=self.photo.ref,
                                 texture=texture, options=options, made_from={"kind": "test render"},
                                 surfaces=self.surfaces())
        if job is None:
            return
        self.submitted = True
        self.error.text = ""
        if not paint:  # the swatch joins the library (once per file), named after its file
            name = self.library_name or (self.swatch.name or "swatch").rsplit(".", 1)[0]
            try:
                await run.io_bound(jobfiles.remember_swatch, self.ctx.settings, self.draft, name,
                                   options.get("swatch_width_m"))
            except OSError:  # a full disk costs the library entry, never the job
                pass
        self.changed()
        self.form.set_visibility(False)
        self.live.clear()
        with self.live:
            with ui.card().classes("panel summary w-full"):
                with ui.row().classes("w-full items-center no-wrap gap-4"):
                    raw(f"<img class='summary-thumb' src='{file_url(self.draft, 'photo')}' alt='Photo'>")
                    if paint:
                        raw(f"<div class='summary-thumb' style='background:{texture}'></div>")
                    else:
                        raw(f"<img class='summary-thumb' src='{file_url(self.draft, 'swatch')}' alt='Swatch'>")
                    with ui.column().classes("gap-0"):
                        ui.label(f"Job {job.job_id[:8]}").classes("mono now-id")
                        ui.label(f"{self.photo.line.text.split(' · ')[0]} · "
                                 + (f"paint {texture}" if paint else
                                    self.swatch.line.text.split(" · ")[0])
                                 + f" · pattern scale {options['real_world_scale']:g}×"
                                 + "".join(f" · {d}" for p in self.pickers if (d := p.describe()))
                                 + (" · refinement on" if options["enable_refinement"] else "")).classes("muted")
                    ui.space()
                    ui.button("Start another", icon="restart_alt", on_click=lambda: ui.navigate.to("/test-render")
                              ).props("outline").props(tid("again"))
            JobPanel(self.ctx, job.job_id, compact=True)

    def surfaces(self) -> tuple:
        return tuple(spec for p in self.pickers if (spec := p.spec()) is not None)

    async def _submit(self, refused: type[Exception] | tuple[type[Exception], ...], fn: Callable[..., Any],
                      *args: Any, **kwargs: Any) -> Any:
        """Run a submit off the event loop; a refusal (queue full, store busy, `refused`) is explained on the form
        and answers None, with the draft's files kept for another try."""
        self.submit_button.props("loading")
        try:
            return await run.io_bound(fn, *args, **kwargs)
        except QueueFull:
            self.error.text = (f"The queue is full ({self.ctx.settings.queue_depth} jobs waiting or rendering). "
                               "Try again in a moment.")
        except StoreUnavailable as exc:
            log.warning("test render %s: %s", self.draft, exc)
            self.error.text = jobfiles.STORE_BUSY
        except refused as exc:
            self.error.text = "\n".join(getattr(exc, "details", {}).values()) or str(exc)
        finally:
            self.submit_button.props(remove="loading")
        return None

    async def submit_surfaces(self) -> None:
        """A job made from `base` with this set of surfaces (its photo and wall linked over, not uploaded)."""
        job = await self._submit((FileNotFoundError, ValueError), self.ctx.service.with_surfaces, self.base,
                                 self.surfaces(), job_id=self.draft)
        if job is None:
            return
        self.submitted = True
        self.changed()
        self.form.set_visibility(False)
        self.live.clear()
        with self.live:
            ui.label(f"Job {short(job.job_id)}: surfaces of job {short(self.base.job_id)} changed"
                     + "".join(f" · {d}" for p in self.pickers if (d := p.describe()))).classes("muted").props(
                tid("summary"))
            JobPanel(self.ctx, job.job_id, compact=True)


def _has_refiner(ctx: Any) -> bool:
    """The switch follows the API's rule: off only where the API would refuse refinement."""
    return has_refiner(ctx.store, ctx.settings) is not False


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/test-render", favicon=LOGO)
    async def test_render(request: Request, swatch: str = "") -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        from appliance.swatches import SwatchLibrary

        entry = await run.io_bound(SwatchLibrary(ctx.settings).get, swatch) if swatch else None
        base_id = request.query_params.get("from")
        base = await run.io_bound(ctx.store.get, base_id) if base_id and len(base_id) <= 64 else None
        TestRender(ctx, auth, await run.io_bound(_has_refiner, ctx), entry, base)
        return None
