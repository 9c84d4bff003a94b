"""/learning: what the appliance has learned from its operators' corrections, and the fine-tune controls.

Examples collected (count, thumbnails with the paint mask over the photo, delete one), the last fine-tune run
(date, the held-back figures before / after, installed or why not), a button that starts one in its own process
(appliance/finetune.py start_in_background: never on this event loop), its progress, and rollback. File work goes
through run.io_bound; thumbnails are served by GET /console/learning/{example_id}/thumb.
"""

from __future__ import annotations

import html
import time
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from nicegui import run, ui

from appliance.learning import StudioData, shipped_weights

from .components import LOGO, card, frame, raw, tid

SOURCES = {"mask_fix": "console mask fix", "client_mask": "client mask", "imported": "imported"}


def _state(studio: StudioData, model_dir: Any) -> dict[str, Any]:
    """Everything the page shows, read in a thread."""
    runs = studio.runs()
    return {"examples": studio.examples(), "last": runs[-1] if runs else None, "running": studio.running(),
            "progress": studio.progress(), "fine_tuned": studio.fine_tuned(shipped_weights(model_dir)),
            "can_roll_back": studio.previous.is_file()}


def _figures_html(run_record: dict[str, Any]) -> str:
    before, after = run_record.get("before") or {}, run_record.get("after") or {}
    if not before:
        return ""
    rows = [("Wall IoU (higher is better)", "wall_iou"), ("House parts painted (lower is better)", "parts_painted")]
    body = "".join(f"<tr><td>{label}</td><td>{before[key]:.3f}</td><td>{after.get(key, float('nan')):.3f}</td></tr>"
                   for label, key in rows)
    return (f"<table class='figures' data-testid='figures'><thead><tr><th>{run_record.get('held_back', '')} held-back "
            f"photos</th><th>before</th><th>after</th></tr></thead><tbody>{body}</tbody></table>")


class LearningPage:
    def __init__(self, ctx: Any, auth: Any):
        self.ctx = ctx
        self.studio = StudioData(ctx.settings.data_dir)
        self.drawn: Any = None
        with frame("learning", auth, "Learning"):
            ui.label("Learning from corrections").classes("page-title")
            ui.label("Every job rendered with a corrected mask is kept here as a training example. A fine-tune "
                     "trains the house parser on them and installs it only if it does no worse on the examples "
                     "it held back.").classes("muted")
            self.tune = card("Fine-tune")
            self.examples = card("Examples")
        ui.timer(1.0, self.refresh)

    async def refresh(self) -> None:
        state = await run.io_bound(_state, self.studio, self.ctx.settings.model_dir)
        key = ([e.id for e in state["examples"]], state["last"] and state["last"].get("finished_at"),
               state["running"], state["progress"].get("step"), state["progress"].get("phase"), state["fine_tuned"],
               state["can_roll_back"])
        if key == self.drawn:
            return
        self.drawn = key
        self._tune(state)
        self._examples(state["examples"])

    def _tune(self, state: dict[str, Any]) -> None:
        self.tune.clear()
        with self.tune:
            ui.label("Fine-tune").classes("panel-title")
            ui.label(f"House parser in use: {'fine-tuned on this studio' if state['fine_tuned'] else 'as shipped'}"
                     ).props(tid("weights"))
            progress = state["progress"]
            if state["running"]:
                steps = progress.get("steps") or 0
                done = progress.get("step") or 0
                phase = progress.get("phase", "starting")
                text = f"{phase} · step {done} of {steps}" if steps else f"{phase} ..."
                ui.label(text).classes("muted").props(tid("progress"))
                ui.linear_progress(done / steps if steps else 0, show_value=False, size="8px").props(
                    "rounded color=accent")
            if not state["running"] and progress.get("phase") == "failed":
                ui.label(f"The last fine-tune stopped with an error: {progress.get('error', '')} (see "
                         f"{self.studio.log_file})").classes("form-error").props(tid("failed"))
            last = state["last"]
            if last is not None:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last.get("finished_at") or last["started_at"]))
                ui.label(f"Last run {when}: {last.get('reason', '')}").props(tid("last-run"))
                raw(_figures_html(last))
            elif not state["running"]:
                ui.label("No fine-tune has run yet.").classes("muted")
            with ui.row():
                ui.button("Start fine-tune", on_click=self.start).props("unelevated" + (
                    " disable" if state["running"] else "")).props(tid("start"))
                ui.button("Roll back", on_click=self.rollback).props("outline" + (
                    "" if state["can_roll_back"] and not state["running"] else " disable")).props(tid("rollback"))

    def _examples(self, examples: list) -> None:
        self.examples.clear()
        with self.examples:
            ui.label(f"Examples ({len(examples)})").classes("panel-title").props(tid("example-count"))
            if not examples:
                ui.label("None yet: fix a job's mask in the mask editor and re-render it.").classes("muted")
            with ui.element("div").classes("example-grid"):
                for example in reversed(examples):
                    with ui.column().classes("example").props(f'data-example="{example.id}"'):
                        raw(f"<img class='thumb' loading='lazy' alt='' "
                            f"src='/console/learning/{html.escape(example.id)}/thumb'>")
                        ui.label(f"{SOURCES.get(example.source, example.source)} · "
                                 f"{time.strftime('%Y-%m-%d', time.localtime(example.created_at))}").classes("muted")
                        ui.button("Delete", on_click=lambda _e, i=example.id: self.delete(i)).props(
                            "flat dense color=negative").props(tid(f"delete-{example.id}"))

    async def start(self) -> None:
        from appliance.finetune import start_in_background

        try:
            pid = await run.io_bound(start_in_background, self.ctx.settings)
        except RuntimeError as exc:
            ui.notify(str(exc), type="warning")
            return
        ui.notify(f"Fine-tune started (process {pid})")
        await self.refresh()

    async def rollback(self) -> None:
        if await run.io_bound(self.studio.rollback):
            ui.notify("Rolled back: workers use the previous weights from their next job")
        await self.refresh()

    async def delete(self, example_id: str) -> None:
        await run.io_bound(self.studio.delete_example, example_id)
        await self.refresh()


def register(app: Any, ctx: Any, auth: Any) -> None:
    studio = StudioData(ctx.settings.data_dir)

    @app.get("/console/learning/{example_id}/thumb", include_in_schema=False)
    def example_thumb(example_id: str, request: Request) -> Response:
        """A small JPEG of the example's photo with its paint mask tinted over it. Runs in the thread pool."""
        if (denied := auth.guard_api(request)) is not None:
            return denied
        path = studio.thumbnail(example_id)
        if path is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    @ui.page("/learning", favicon=LOGO)
    def learning_page(request: Request) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        LearningPage(ctx, auth)
        return None
