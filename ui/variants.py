"""Material variants of one photo: "Try another material" (/jobs/{id}/material) makes a job with the same photo
(and its corrected mask, if it had one) in another material, through JobService.variant; the job page shows
every render of that photo as a grid with its material, and any two side by side in the slider."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from nicegui import events, run, ui

from appliance.domain import ACTIVE, JobStatus
from appliance.jobdir import SWATCH, surface_stem
from appliance.jobs import COMPLETED, Job, QueueFull, StoreUnavailable
from appliance.refs import InputRef, normal_colour
from appliance.swatches import SwatchLibrary
from pipeline.errors import InputError
from pipeline.surfaces import Surface

from . import jobfiles
from .components import (LOGO, PAINTS, STATUS_WORDS, card, compare_html, file_url, frame, material_html, material_of,
                         raw, short, state_of, tid)
from .surfaces_ui import EXTRA, LABELS

log = logging.getLogger(__name__)


def library_url(swatch_id: str, name: str = "thumb") -> str:
    return f"/console/swatches/{swatch_id}/{name}"


class VariantsCard:
    """The renders of this job's photo (its family), each with its material; pick two to compare."""

    def __init__(self, ctx: Any, job: Job):
        self.ctx, self.job = ctx, job
        self.jobs: list[Job] = []
        self.picked: list[str] = []
        self.box = card("Variants of this photo", classes="w-full variants").props(tid("variants"))
        self.box.set_visibility(False)
        ui.timer(0.01, self.load, once=True)

    async def load(self) -> None:
        self.jobs = await run.io_bound(jobfiles.family, self.ctx, self.job.job_id)
        done = [j for j in self.jobs if j.status == COMPLETED and j.result_url]
        if len(self.jobs) < 2:
            return
        # Compare this job with the newest other finished render of the photo, if any.
        others = [j.job_id for j in done if j.job_id != self.job.job_id]
        self.picked = ([self.job.job_id] if self.job.status == COMPLETED else []) + others[-1:]
        self.draw()

    def draw(self) -> None:
        self.box.clear()
        self.box.set_visibility(True)
        with self.box:
            with ui.row().classes("w-full items-baseline"):
                ui.label("Variants of this photo").classes("panel-title")
                ui.space()
                ui.label("Click two renders to compare them in the slider.").classes("muted").style("font-size:12px")
            with ui.element("div").classes("variant-grid"):
                for job in self.jobs:
                    self._tile(job)
            a, b = (next(j for j in self.jobs if j.job_id == p) for p in self.picked) if len(self.picked) == 2 \
                else (None, None)
            if a is not None and b is not None:
                raw(compare_html(file_url(a.job_id, "result", "c"), file_url(b.job_id, "result", "c"),
                                 (material_of(a)["material"], material_of(b)["material"]))).classes("w-full").props(
                    tid("variant-compare"))

    def _tile(self, job: Job) -> None:
        state = state_of(job)
        selected = job.job_id in self.picked
        usable = state == COMPLETED and bool(job.result_url)
        classes = "variant" + (" picked" if selected else "") + (" current" if job.job_id == self.job.job_id else "")
        with ui.element("div").classes(classes).props(tid("variant")).props(f'data-job="{job.job_id}"') as tile:
            raw(f"<img class='variant-img' src='{file_url(job.job_id, 'thumb', state)}' alt=''>")
            raw(material_html(job))
            for entry in job.surfaces or ():  # the extra surfaces' materials, e.g. "Roof #2F2F33"
                ref = InputRef.parse(entry["texture_url"])
                ui.label(f"{LABELS.get(entry['surface'], entry['surface'])} "
                         f"{ref.value if ref.is_colour else 'swatch'}").classes("muted variant-extra")
            with ui.row().classes("variant-foot"):
                ui.link(f"{short(job.job_id)}", f"/jobs/{job.job_id}").classes("mono")
                if state != COMPLETED:
                    ui.label(STATUS_WORDS[state]).classes(f"chip chip-{state}")
                if job.job_id == self.job.job_id:
                    ui.label("this job").classes("muted")
        if usable:
            tile.on("click", lambda j=job.job_id: self.pick(j))

    def pick(self, job_id: str) -> None:
        if job_id in self.picked:
            return
        self.picked = (self.picked + [job_id])[-2:]
        self.draw()


class MaterialPicker:
    """Try another material on a job's photo: a swatch from the library, a new one, or a paint colour."""

    def __init__(self, ctx: Any, job: Job, swatches: list[Any]):
        self.ctx, self.job = ctx, job
        self.choice: dict[str, Any] | None = None
        self.what = ""
        raw(f"<div class='crumbs'><a href='/'>Queue</a> / <a href='/jobs/{job.job_id}'>Job {short(job.job_id)}</a>"
            " / Try another material</div>")
        with ui.row().classes("page-head"):
            with ui.column().classes("gap-0"):
                ui.label("Try another material").classes("page-title")
                ui.label("The same photo" + (" and its corrected mask" if job.mask_url else "") +
                         ", another material: nothing is uploaded again.").classes("muted")
        with ui.element("div").classes("material-grid"):
            with card("This photo", classes="w-full"):
                raw(f"<img class='material-photo' src='{file_url(job.job_id, 'thumb', state_of(job))}' alt=''>")
                ui.label("Now:").classes("muted")
                raw(material_html(job))
            with card("1 · Pick a material", classes="w-full"):
                ui.label("For").classes("text-weight-medium")
                self.surface = ui.toggle({Surface.WALL.value: "Walls", **{s: LABELS[s] for s in EXTRA}},
                                         value=Surface.WALL.value, on_change=self._surface_changed).props(
                    "no-caps unelevated dense").props(tid("variant-surface"))
                ui.label("From the swatch library").classes("text-weight-medium")
                with ui.element("div").classes("pick-grid").props(tid("library-picks")):
                    if not swatches:
                        ui.label("The library is empty: upload a swatch below, or keep one from the "
                                 "Swatches page.").classes("muted")
                    for entry in swatches:
                        with ui.element("div").classes("pick").props(tid("pick-swatch")).props(
                                f'data-swatch="{entry.swatch_id}"') as tile:
                            raw(f"<img src='{library_url(entry.swatch_id)}' alt=''>")
                            ui.label(entry.name).classes("pick-name")
                            if entry.width_m:
                                ui.label(f"{entry.width_m:g} m wide").classes("muted pick-size")
                        tile.on("click", lambda e=entry, t=tile: self.pick_swatch(e, t))
                ui.label("Or upload a new swatch (it joins the library)").classes("text-weight-medium")
                self.upload = ui.upload(auto_upload=True, max_file_size=ctx.settings.fetch_max_bytes,
                                        on_upload=self.uploaded, label="Drop or choose a swatch image").props(
                    "flat bordered accept=image/*").classes("swatch-uploader w-full").props(
                    tid("upload-variant-swatch"))
                ui.label("Or a paint colour").classes("text-weight-medium")
                with ui.row().classes("items-center gap-3 w-full"):
                    self.colour = ui.color_input("Paint colour", value="", on_change=self.typed).classes(
                        "grow").props(tid("variant-colour"))
                    with ui.element("div").classes("swatches"):
                        for hex_colour, name in PAINTS:
                            ui.element("div").classes("swatch-dot").style(f"background:{hex_colour}").tooltip(
                                f"{name} {hex_colour}").on("click", lambda h=hex_colour: self.set_colour(h))
            with card("2 · Render", classes="w-full"):
                self.preview = raw("").classes("variant-preview")
                self.summary = ui.label("No material picked yet.").classes("muted").props(tid("variant-choice"))
                self.error = ui.label("").classes("form-error").props(tid("variant-error"))
                self.button = ui.button("Render this variant", icon="play_arrow", on_click=self.submit).props(
                    "unelevated size=lg").classes("w-full").props(tid("render-variant"))
                self.button.disable()
                ui.link("Back to the job", f"/jobs/{job.job_id}").classes("hint")
        self.tiles: list[Any] = []

    def _surface_changed(self) -> None:
        if self.choice is not None:
            self._choose(self.choice, self.what, self.tiles[0] if self.tiles else None)

    def _choose(self, choice: dict[str, Any] | None, what: str, tile: Any = None) -> None:
        self.what = what
        if choice is not None:
            choice = {**choice, "surface": self.surface.value}
            what = f"{LABELS.get(self.surface.value, 'Walls')} → {what}"
        self.choice = choice
        if choice is None:
            self.preview.content = ""
        elif "colour" in choice:
            self.preview.content = f"<div class='preview-chip' style='background:{choice['colour']}'></div>"
        else:
            self.preview.content = f"<img class='preview-chip' src='{library_url(choice['swatch'])}' alt=''>"
        self.summary.text = what
        self.error.text = ""
        self.button.set_enabled(choice is not None)
        for other in self.tiles:
            other.classes(remove="picked")
        self.tiles = [tile] if tile is not None else []
        if tile is not None:
            tile.classes(add="picked")

    def pick_swatch(self, entry: Any, tile: Any) -> None:
        self.colour.value = ""
        size = f", {entry.width_m:g} m wide" if entry.width_m else ""
        self._choose({"swatch": entry.swatch_id, "width_m": entry.width_m}, f"Swatch: {entry.name}{size}", tile)

    def set_colour(self, hex_colour: str) -> None:
        self.colour.value = hex_colour

    def typed(self) -> None:
        typed = (self.colour.value or "").strip()
        if not typed:
            return
        colour = normal_colour(typed)
        if colour is None:
            self._choose(None, "No material picked yet.")
            self.error.text = f"“{typed}” is not a paint colour: type # and six hex digits, e.g. #B04A3A."
            return
        self._choose({"colour": colour}, f"Paint colour {colour}")

    async def uploaded(self, e: events.UploadEventArguments) -> None:
        data = await e.file.read()
        self.upload.reset()
        try:
            entry = await run.io_bound(jobfiles.library_upload, self.ctx.settings, data,
                                       e.file.name.rsplit(".", 1)[0])
        except jobfiles.UploadRejected as exc:
            self.error.text = f"{e.file.name}: {str(exc).removeprefix('swatch: ')}"
            return
        self.colour.value = ""
        self._choose({"swatch": entry.swatch_id, "width_m": entry.width_m}, f"Swatch: {entry.name} (new)")

    async def submit(self) -> None:
        if self.choice is None:
            return
        self.button.props("loading")
        try:
            new = await run.io_bound(make_variant, self.ctx, self.job, self.choice)
        except QueueFull:
            self.error.text = f"The queue is full ({self.ctx.settings.queue_depth} jobs); try again shortly."
            return
        except StoreUnavailable as exc:
            log.warning("variant of %s: %s", self.job.job_id, exc)
            self.error.text = jobfiles.STORE_BUSY
            return
        except (FileNotFoundError, ValueError, InputError) as exc:
            self.error.text = f"Cannot render this variant: {exc}"
            return
        finally:
            self.button.props(remove="loading")
        ui.navigate.to(f"/jobs/{new.job_id}")


def make_variant(ctx: Any, job: Job, choice: dict[str, Any]) -> Job:
    """The job service's variant for the picked material on the picked surface (blocking)."""
    surface = choice.get("surface") or Surface.WALL.value
    wall = surface == Surface.WALL
    if "colour" in choice:
        return ctx.service.variant(job, {surface: InputRef.parse(choice["colour"])},
                                   options={"swatch_width_m": None} if wall else None)
    library = SwatchLibrary(ctx.settings)
    entry = library.get(choice["swatch"])
    path = None if entry is None else library.file(entry)
    if path is None:
        raise FileNotFoundError("that swatch was deleted from the library")
    name = f"{SWATCH if wall else surface_stem(SWATCH, surface)}{path.suffix}"
    return ctx.service.variant(job, {surface: InputRef.upload(name)}, uploads={name: path.read_bytes()},
                               options={"swatch_width_m": entry.width_m} if wall else None,
                               widths=None if wall else {surface: entry.width_m})


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/jobs/{job_id}/material", favicon=LOGO)
    async def material_page(request: Request, job_id: str) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        job = await run.io_bound(ctx.store.get, job_id) if len(job_id) <= 64 else None
        has_photo = job is not None and await run.io_bound(jobfiles.find, ctx.settings, job_id, "photo") is not None
        with frame("queue", auth, "Try another material"):
            if job is None or not has_photo or job.status in ACTIVE or job.status == JobStatus.QUEUED:
                ui.label("No other material can be tried on this job").classes("page-title")
                reason = ("no such job" if job is None else "the job is still running" if job.status in ACTIVE
                          else "the job's photo was never fetched or was deleted")
                ui.label(f"Reason: {reason}.").classes("muted")
                ui.link("Back to the queue", "/")
                return None
            MaterialPicker(ctx, job, await run.io_bound(SwatchLibrary(ctx.settings).list))
        return None
