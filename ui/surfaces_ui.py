"""The console's per-surface parts (roof, trim, doors, garage door; pipeline/surfaces.py): what the job page shows
of each surface (its mask over the photo, its material and a link to fix its mask), the mask editor's choice of
surface, and the test-render page's picker of a material or colour per surface."""

from __future__ import annotations

import html
from typing import Any, Callable

from nicegui import ui

from appliance.domain import ACTIVE
from appliance.jobdir import MASK, SWATCH, surface_stem
from appliance.jobs import Job
from appliance.refs import InputRef, normal_colour
from appliance.service import SurfaceSpec, job_surfaces
from pipeline.surfaces import PAINT_ORDER, Surface, unknown_surface_reason

from . import jobfiles
from .components import card, colour_block, file_url, material_of, overlay_html, raw, tid

EXTRA = tuple(s for s in PAINT_ORDER if s != Surface.WALL)  # the pickers' order: back to front
LABELS = {"roof": "Roof", "trim": "Trim & shutters", "garage_door": "Garage door", "door": "Front door"}
COLOURS = {"roof": "#4A4A4F", "trim": "#F4F1EA", "garage_door": "#E8E1D3", "door": "#8B1A1A"}


def label(surface: str) -> str:
    return "Walls" if surface == Surface.WALL else LABELS.get(surface, surface.replace("_", " ").capitalize())


def mask_fix_url(job_id: str, surface: str) -> str:
    """The mask editor of one surface (the wall's is the editor's default)."""
    return f"/jobs/{job_id}/mask" + ("" if surface == Surface.WALL else f"?surface={surface}")


def editable_surfaces(job: Job) -> list[str]:
    """The surfaces whose mask a mask fix can replace: the wall, then the job's own extra surfaces, back to front."""
    return [Surface.WALL.value] + sorted((e.surface for e in job_surfaces(job)), key=PAINT_ORDER.index)


def surface_refusal(job: Job, surface: str) -> str | None:
    """Why `surface` (from a URL) has no mask to edit in `job`, or None when it has."""
    if surface in editable_surfaces(job):
        return None
    have = ", ".join(label(s).lower() for s in editable_surfaces(job))
    if surface not in set(Surface):
        return f"“{surface[:40]}” is not a surface ({unknown_surface_reason(surface)}); this job has: {have}"
    return f"this job has no {label(surface).lower()} surface (it was given a material for: {have})"


def material_chip(job: Job, surface: str, files: dict[str, bool]) -> str:
    """A small square of a surface's material (its paint colour, or its swatch) for pickers and tabs."""
    if surface == Surface.WALL:
        material = material_of(job)
        colour, image = material.get("colour"), material.get("swatch")
    else:
        entry = next(e for e in job_surfaces(job) if e.surface == surface)
        colour = str(entry.texture) if entry.texture.is_colour else None
        image = file_url(job.job_id, surface_stem(SWATCH, surface)) if files.get(surface_stem(SWATCH, surface)) \
            else None
    if colour:
        return f"<span class='material-swatch' style='background:{html.escape(colour)}'></span>"
    if image:
        return f"<img class='material-swatch' src='{html.escape(image, quote=True)}' alt=''>"
    return "<span class='material-swatch'></span>"


def surface_files(settings: Any, job: Job) -> dict[str, bool]:
    """Which of the job's per-surface files exist: {"mask-roof": True, "swatch-roof": False, ...}."""
    out = {}
    for entry in job_surfaces(job):
        jobdir = jobfiles.folder(settings, job.job_id)
        out[surface_stem(MASK, entry.surface)] = jobdir is not None and jobdir.mask(entry.surface) is not None
        out[surface_stem(SWATCH, entry.surface)] = jobfiles.find(settings, job.job_id,
                                                                 surface_stem(SWATCH, entry.surface)) is not None
    return out


def surfaces_card(job: Job, files: dict[str, bool], *, change_url: str | None = None) -> None:
    """Job page: one tile per extra surface (its mask over the photo, else a note), its material and, once the job
    has ended with its photo kept, a link to fix that surface's mask."""
    entries = job_surfaces(job)
    if not entries and not change_url:
        return
    painted = job.painted or {}
    editable = job.status not in ACTIVE and files.get("photo")
    with card("Surfaces", classes="w-full").props(tid("surfaces")):
        if not entries:
            ui.label("Only the wall was given a material.").classes("muted")
        with ui.element("div").classes("inputs"):
            for entry in sorted(entries, key=lambda e: PAINT_ORDER.index(e.surface)):
                name = entry.surface
                info = painted.get(name)
                if info:
                    state = f"{info['pixels']:,} px" + (" (mask given)" if info.get("mask") == "client" else "")
                elif job.painted is not None:
                    state = "not found in the photo"
                else:
                    state = "not rendered yet"
                material = colour_block(str(entry.texture)) if entry.texture.is_colour else (
                    f"<img src='{file_url(job.job_id, surface_stem(SWATCH, name))}' alt='{name} swatch'>"
                    if files.get(surface_stem(SWATCH, name)) else "<div class='placeholder'>swatch</div>")
                mask = overlay_html(file_url(job.job_id, "photo"), file_url(job.job_id, f"overlay-{name}",
                                                                            str(int(job.completed_at or 0)))) \
                    if files.get(surface_stem(MASK, name)) and files.get("photo") else \
                    "<div class='placeholder'>no mask</div>"
                fix = (f"<a class='tile-link' href='{mask_fix_url(job.job_id, name)}' "
                       f"data-testid='fix-mask-{name}'>Fix mask</a>") if editable else ""
                raw(f"<figure class='tile wide' data-surface='{name}'><div style='display:grid; "
                    f"grid-template-columns:1fr 2fr; gap:8px; align-items:start'>{material}{mask}</div>"
                    f"<figcaption class='tile-caption'><span>{LABELS[name]} · {state}</span>{fix}</figcaption>"
                    "</figure>").classes("w-full").props(tid(f"surface-{name}"))
        if change_url:
            ui.button("Change surfaces", icon="layers", on_click=lambda: ui.navigate.to(change_url)).props(
                "outline").props(tid("change-surfaces"))


class SurfacePicker:
    """Test render: the material of one extra surface: the photo's own (not painted), as in the job it is made
    from, a paint colour, or a swatch image (a drop zone making `swatch-<surface>` in the draft's folder)."""

    def __init__(self, surface: str, drop_zone: Callable[[str, str, str], Any], changed: Callable[[], None],
                 before: SurfaceSpec | None = None):
        self.surface, self.before = surface, before
        choices = {"none": "Photo's own"} | ({"same": "As before"} if before else {}) | \
            {"paint": "Colour", "swatch": "Swatch"}
        with ui.column().classes("w-full gap-1").props(tid(f"pick-{surface}")):
            ui.label(LABELS[surface]).classes("text-weight-medium")
            self.mode = ui.toggle(choices, value="same" if before else "none", on_change=lambda: self.show()
                                  ).props("no-caps unelevated dense spread").classes("w-full").props(
                tid(f"mode-{surface}"))
            self.colour = ui.color_input(f"{LABELS[surface]} colour", value=COLOURS[surface], preview=True,
                                         on_change=lambda: changed()).classes("w-full").props(
                tid(f"colour-{surface}"))
            with ui.column().classes("w-full") as self.zone_box:
                self.zone = drop_zone(surface_stem(SWATCH, surface), f"Drop the {LABELS[surface].lower()} swatch",
                                      "tiled on the surface like the wall's")
        self.changed = changed
        self.show()

    def show(self) -> None:
        self.colour.set_visibility(self.mode.value == "paint")
        self.zone_box.set_visibility(self.mode.value == "swatch")
        self.changed()

    @property
    def ready(self) -> bool:
        return self.spec() is not None or self.mode.value == "none"

    def spec(self) -> SurfaceSpec | None:
        """This surface's entry, or None (not painted, or not complete yet)."""
        mode = self.mode.value
        if mode == "same":
            return self.before
        if mode == "paint" and (colour := normal_colour(self.colour.value or "")):
            return SurfaceSpec(self.surface, InputRef.parse(colour))
        if mode == "swatch" and self.zone.ref:
            return SurfaceSpec(self.surface, InputRef.parse(self.zone.ref))
        return None

    def describe(self) -> str | None:
        spec = self.spec()
        if spec is None:
            return None
        return f"{self.surface} " + (str(spec.texture) if spec.texture.is_colour else "swatch")
