"""The swatch library page (/swatches): the materials used before (appliance/swatches.py), each with its name,
physical width if known and a thumbnail; one click starts a test render with it; upload, rename, delete. Swatches
uploaded in a test render or a variant join it; "Add from recent jobs" keeps the swatches API jobs used."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from nicegui import events, run, ui

from appliance.jobs import COMPLETED
from appliance.swatches import SwatchLibrary
from pipeline.options import bounds

from . import jobfiles
from .components import LOGO, card, frame, material_of, raw, tid
from .variants import library_url


def import_recent(ctx: Any, limit: int = 100) -> int:
    """Keep the swatches of the recent completed jobs (blocking); returns how many entries are new."""
    library = SwatchLibrary(ctx.settings)
    before = {e.swatch_id for e in library.list()}
    # Oldest first: the job that brought a swatch in by URL names it (its copies in retries and variants do not).
    for job in reversed(ctx.store.list_jobs(COMPLETED, limit=limit)):
        material = material_of(job)
        if "swatch" in material:
            name = material["material"].rsplit(".", 1)[0]
            jobfiles.remember_swatch(ctx.settings, job.job_id, name if name != "swatch" else
                                     f"swatch of job {job.job_id[:8]}")
    return len({e.swatch_id for e in library.list()} - before)


class LibraryPage:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.library = SwatchLibrary(ctx.settings)
        with ui.row().classes("page-head"):
            with ui.column().classes("gap-0"):
                ui.label("Swatch library").classes("page-title")
                ui.label("Materials used before, ready to reuse: click one to render a photo with it.").classes(
                    "muted")
            ui.space()
            ui.button("Add from recent jobs", icon="history", on_click=self.import_recent).props(
                "outline no-caps").props(tid("import-recent"))
        with ui.element("div").classes("library-grid"):
            with card("Add a swatch", classes="w-full add-swatch"):
                self.name = ui.input("Name", placeholder="e.g. Red clay brick").classes("w-full").props(
                    tid("new-swatch-name"))
                low, high = bounds("swatch_width_m")
                self.width = ui.number("Real width (m), optional", min=low, max=high, step=0.01).classes(
                    "w-full").props(tid("new-swatch-width"))
                self.upload = ui.upload(auto_upload=True, max_file_size=ctx.settings.fetch_max_bytes,
                                        on_upload=self.uploaded, label="Drop or choose the swatch image").props(
                    "flat bordered accept=image/*").classes("swatch-uploader w-full").props(tid("upload-library"))
                self.error = ui.label("").classes("form-error").props(tid("library-error"))
            self.grid = ui.element("div").classes("swatch-cards").props(tid("swatches"))
        ui.timer(0.01, self.reload, once=True)

    async def reload(self) -> None:
        entries = await run.io_bound(self.library.list)
        self.grid.clear()
        with self.grid:
            if not entries:
                ui.label("No swatches yet. Upload one, or add those your recent jobs used.").classes("muted").props(
                    tid("library-empty"))
            for entry in entries:
                self._card(entry)

    def _card(self, entry: Any) -> None:
        with ui.card().classes("panel swatch-card").props(tid("swatch-card")).props(
                f'data-swatch="{entry.swatch_id}"'):
            raw(f"<a href='/test-render?swatch={entry.swatch_id}' title='Render with this swatch'>"
                f"<img class='swatch-big' src='{library_url(entry.swatch_id)}' alt=''></a>")
            name = ui.input(value=entry.name).props("dense borderless").classes("swatch-title").props(
                tid("swatch-name"))
            name.on("blur", lambda e=entry, n=name: self.rename(e, n.value))
            ui.label(f"{entry.width_m:g} m wide" if entry.width_m else "real size unknown").classes(
                "muted").style("font-size:12px").props(tid("swatch-size"))
            with ui.row().classes("w-full gap-2 no-wrap"):
                ui.button("Use", icon="play_arrow",
                          on_click=lambda e=entry: ui.navigate.to(f"/test-render?swatch={e.swatch_id}")).props(
                    "unelevated dense no-caps").classes("grow").props(tid("use-swatch"))
                ui.button(icon="delete", on_click=lambda e=entry: self.ask_delete(e)).props(
                    "flat dense color=negative").tooltip("Delete from the library").props(tid("delete-swatch"))

    async def uploaded(self, e: events.UploadEventArguments) -> None:
        data = await e.file.read()
        self.upload.reset()
        name = (self.name.value or "").strip() or e.file.name.rsplit(".", 1)[0]
        width = float(self.width.value) if self.width.value else None
        try:
            entry = await run.io_bound(jobfiles.library_upload, self.ctx.settings, data, name, width)
        except jobfiles.UploadRejected as exc:
            self.error.text = f"{e.file.name}: {str(exc).removeprefix('swatch: ')}"
            return
        self.error.text = ""
        self.name.value, self.width.value = "", None
        ui.notify(f"“{entry.name}” is in the library", type="positive")
        await self.reload()

    async def rename(self, entry: Any, name: str) -> None:
        if (name or "").strip() and name.strip() != entry.name:
            await run.io_bound(self.library.update, entry.swatch_id, name=name, width_m=entry.width_m)

    async def ask_delete(self, entry: Any) -> None:
        with ui.dialog() as dialog, ui.card().classes("panel confirm").props(tid("confirm")):
            ui.label(f"Delete “{entry.name}”?").classes("confirm-title")
            ui.label("Jobs that used it keep their own copy.").classes("muted")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Keep it", on_click=lambda: dialog.submit(False)).props("flat no-caps")
                ui.button("Delete", on_click=lambda: dialog.submit(True)).props(
                    "unelevated no-caps color=negative").props(tid("confirm-yes"))
        if await dialog:
            await run.io_bound(self.library.delete, entry.swatch_id)
            await self.reload()
        dialog.delete()

    async def import_recent(self) -> None:
        count = await run.io_bound(import_recent, self.ctx)
        ui.notify(f"{count} swatch(es) added from recent jobs", type="positive" if count else "info")
        await self.reload()


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/swatches", favicon=LOGO)
    def swatches_page(request: Request) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        with frame("swatches", auth, "Swatches"):
            LibraryPage(ctx)
        return None
