"""The home page: the job currently rendering, the worker, and every recent job, live (polling the job store)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, JobStatus, Stage
from appliance.jobs import COMPLETED, FAILED, QUEUED, RUNNING, Job
from pipeline.stages import PipelineStage

from .components import (CANCELED, ERROR_TITLES, LOGO, STATUS_WORDS, ago, clock_time, day, duration, file_url, frame,
                         material_of, model_name, raw, render_time, short, stage_label, stage_track_html, state_of,
                         tid, total_time)

FILTERS = [("all", "All"), (JobStatus.QUEUED, "Waiting"), (JobStatus.RUNNING, "Rendering"),
           (JobStatus.COMPLETED, "Completed"), (JobStatus.FAILED, "Failed"), (CANCELED, "Canceled")]
SORTS = {"created": "Newest first", "finished": "Last finished", "status": "Status"}
STATUS_ORDER = {JobStatus.RUNNING: 0, JobStatus.QUEUED: 1, JobStatus.FAILED: 2, CANCELED: 3, JobStatus.COMPLETED: 4}
LIMIT = 100
COLUMNS = [
    {"name": "status", "label": "Status", "field": "status_word", "align": "left"},
    {"name": "job", "label": "Job", "field": "short", "align": "left"},
    {"name": "material", "label": "Material", "field": "material", "align": "left"},
    {"name": "owner", "label": "Project · user", "field": "project", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "finished", "label": "Finished", "field": "finished", "align": "left"},
    {"name": "progress", "label": "Progress", "field": "progress", "align": "left"},
    {"name": "time", "label": "Total time", "field": "time", "align": "right"},
    {"name": "error", "label": "Error", "field": "error", "align": "left", "classes": "col-error",
     "headerClasses": "col-error"},
]
SLOTS = {
    "body-cell-status": """<q-td :props="props"><span :class="'chip chip-' + props.row.state">
        {{ props.row.status_word }}</span></q-td>""",
    "body-cell-job": """<q-td :props="props"><a class="job-cell" :href="'/jobs/' + props.row.id" @click.stop>
        <img class="thumb" :src="props.row.thumb" alt="" loading="lazy"
             onerror="this.style.visibility='hidden'"><span class="mono">{{ props.row.short }}</span></a></q-td>""",
    "body-cell-material": """<q-td :props="props"><div class="material-cell" :title="props.row.material">
        <span v-if="props.row.colour" class="material-swatch" :style="{background: props.row.colour}"></span>
        <img v-else class="material-swatch" :src="props.row.swatch" alt="" loading="lazy"
             onerror="this.style.visibility='hidden'">
        <span class="material-name">{{ props.row.material }}</span></div></q-td>""",
    "body-cell-owner": """<q-td :props="props"><div v-if="props.row.project || props.row.user" class="owner">
        <div v-if="props.row.project"><span class="muted">project</span> <span class="mono">{{ props.row.project }}
        </span></div><div v-if="props.row.user"><span class="muted">user</span> <span class="mono">
        {{ props.row.user }}</span></div></div><span v-else class="muted">—</span></q-td>""",
    "body-cell-created": """<q-td :props="props"><div class="when"><span>{{ props.row.created_day }}</span>
        <b>{{ props.row.created }}</b></div></q-td>""",
    "body-cell-finished": """<q-td :props="props"><div v-if="props.row.finished" class="when">
        <span>{{ props.row.finished_day }}</span><b>{{ props.row.finished }}</b></div>
        <span v-else class="muted">—</span></q-td>""",
    "body-cell-progress": """<q-td :props="props">
        <div v-if="props.row.state === 'running'" class="cell-progress">
        <div class="cell-stage">{{ props.row.stage }} <span class="muted">{{ props.row.percent }}</span></div>
        <q-linear-progress :value="props.row.progress" rounded size="6px" color="accent" /></div>
        <span v-else class="muted">{{ props.row.progress_text }}</span></q-td>""",
    "body-cell-error": """<q-td :props="props"><div v-if="props.row.error" class="cell-error" :title="props.row.error">
        <b>{{ props.row.error_title }}</b> · {{ props.row.error }}</div></q-td>""",
}


def _snapshot(ctx: Any, status: str, search: str, order: str) -> dict[str, Any]:
    """Everything the page shows, in one trip to the store (runs in a thread)."""
    store = ctx.store
    jobs = store.list_jobs(None if status == "all" else status, limit=LIMIT, search=search or None,
                           include_canceled=status != JobStatus.FAILED,
                           order="finished" if order == "finished" else "created")
    running = store.list_jobs(RUNNING, limit=4)
    line = {job_id: i for i, job_id in enumerate(store.queued_ids())}
    fresh = max(15.0, ctx.settings.lease_seconds)
    workers = [w for w in store.workers() if time.time() - w.heartbeat_at <= fresh]
    return {"jobs": jobs, "running": running, "last": store.last_finished(), "line": line,
            "counts": store.status_counts(), "workers": workers}


def _order(jobs: list[Job], line: dict[str, int], order: str) -> list[Job]:
    """Active jobs on top (running, then waiting in the order they start); the rest as the store returned them
    (newest created, or last finished), or grouped by status."""
    def key(item: tuple[int, Job]) -> tuple:
        index, job = item
        state = state_of(job)
        active = state in (QUEUED, RUNNING)
        group = STATUS_ORDER[state] if order == "status" or active else 5
        return group, line.get(job.job_id, 0) if state == QUEUED else index
    return [job for _, job in sorted(enumerate(jobs), key=key)]


def _row(job: Job, line: dict[str, int]) -> dict[str, Any]:
    state = state_of(job)
    if state == RUNNING:
        progress_text = ""
    elif state == QUEUED:
        position = line.get(job.job_id)
        progress_text = "next in line" if position == 0 else f"#{position + 1} in line" if position else "waiting"
    elif state == COMPLETED:
        progress_text = f"rendered in {duration(render_time(job))}"
    else:
        progress_text = "—"
    return {"id": job.job_id, "short": short(job.job_id), "state": state, "status_word": STATUS_WORDS[state],
            "project": short(job.project_id), "user": short(job.user_id),
            "created_day": day(job.created_at), "created": clock_time(job.created_at),
            "finished_day": day(job.completed_at) if job.completed_at else "",
            "finished": clock_time(job.completed_at) if job.completed_at else "",
            "stage": stage_label(job), "progress": round(job.progress, 3), "percent": f"{job.progress:.0%}",
            "progress_text": progress_text, "time": duration(total_time(job)),
            "error_title": ERROR_TITLES.get(job.error_code or "", job.error_code or ""),
            "error": job.error_message if state not in (QUEUED, RUNNING, COMPLETED) else "",
            "thumb": file_url(job.job_id, "thumb", thumb_version(job)), **material_of(job)}


def thumb_link(job: Job, classes: str) -> str:
    url = file_url(job.job_id, "thumb", thumb_version(job))
    return f"<a href='/jobs/{job.job_id}'><img class='{classes}' src='{url}' alt=''></a>"


def thumb_version(job: Job) -> str:
    """Changes when the thumbnail can change: the photo arrives once fetched, the result once finished."""
    if job.status in ACTIVE:
        return "none" if job.stage in (None, Stage.QUEUED, Stage.STARTING, Stage.DOWNLOADING) else "photo"
    return state_of(job)


class QueuePage:
    def __init__(self, ctx: Any, auth: Any):
        self.ctx, self.auth = ctx, auth
        self.status, self.search, self.order = "all", "", "created"
        self.busy = False
        self.drawn: dict[str, Any] = {}  # what each panel was last built for: rebuilt only when that changes
        self.live: dict[str, Any] = {}  # the now panel's elements that are updated in place
        with frame("queue", auth, "Queue"):
            with ui.row().classes("page-head"):
                with ui.column().classes("gap-0"):
                    ui.label("Queue").classes("page-title")
                    ui.label("Live: waiting, rendering and recent jobs").classes("muted")
                ui.space()
                self.retry_all = ui.button("Retry all failed", icon="replay", on_click=self.ask_retry_failed).props(
                    "outline no-caps").props(tid("retry-failed"))
                self.cancel_all = ui.button("Cancel all queued", icon="block", on_click=self.ask_cancel_queued
                                            ).props("outline no-caps color=negative").props(tid("cancel-queued"))
                ui.button("New test render", icon="add_photo_alternate",
                          on_click=lambda: ui.navigate.to("/test-render")).props("unelevated")
            with ui.row().classes("top-row"):
                self.now = ui.card().classes("panel now-panel").props(tid("now-rendering"))
                self.worker = ui.card().classes("panel worker-panel").props(tid("worker"))
            with ui.row().classes("filter-bar"):
                self.filter_buttons = {}
                for key, label in FILTERS:
                    button = ui.button(label, on_click=lambda k=key: self.set_filter(k), color=None)
                    button.props("flat no-caps")
                    self.filter_buttons[key] = (button.classes("filter").props(tid(f"filter-{key}")), label)
                ui.space()
                ui.input(placeholder="Search job, project or user id", on_change=self.set_search).props(
                    "dense outlined clearable debounce=300").classes("search").props(tid("search")).props(
                    'type=search')
                ui.select(SORTS, value=self.order, on_change=self.set_order).props(
                    "dense outlined options-dense").classes("sort").props(tid("sort"))
            self.table = ui.table(columns=COLUMNS, rows=[], row_key="id", pagination={"rowsPerPage": 15})
            self.table.classes("jobs-table").props(tid("jobs"))
            self.table.props('flat bordered wrap-cells no-data-label="No jobs yet: start one from Test render."')
            for slot, template in SLOTS.items():
                self.table.add_slot(slot, template)
            self.table.on("rowClick", js_handler="(evt, row) => { window.location.href = '/jobs/' + row.id }")
        ui.timer(1.0, self.refresh)

    async def set_filter(self, key: str) -> None:
        self.status = key
        await self.refresh()

    async def set_search(self, e: Any) -> None:
        self.search = (e.value or "").strip()
        await self.refresh()

    async def set_order(self, e: Any) -> None:
        self.order = e.value or "created"
        await self.refresh()

    async def refresh(self) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            snap = await run.io_bound(_snapshot, self.ctx, self.status, self.search, self.order)
        finally:
            self.busy = False
        line = snap["line"]
        rows = [_row(j, line) for j in _order(snap["jobs"], line, self.order)]
        if rows != self.table.rows:
            # one prop change: Vue patches the rows by their key, nothing is rebuilt
            self.table.update_rows(rows, clear_selection=False)
        counts = snap["counts"]
        failed = counts[FAILED] - counts[CANCELED]  # the store's "failed" includes the canceled jobs
        totals = {"all": sum(counts[s] for s in (QUEUED, RUNNING, COMPLETED, FAILED)), **counts, FAILED: failed}
        for key, (button, label) in self.filter_buttons.items():
            button.text = f"{label} {totals.get(key, 0)}"
            button.classes(add="active" if key == self.status else "", remove="" if key == self.status else "active")
        self.retry_all.set_enabled(failed > 0)
        self.cancel_all.set_enabled(counts[QUEUED] > 0)
        self._now(snap["running"], snap["last"])
        self._worker(snap["workers"], counts)

    # --- bulk actions (confirmed first) ---
    async def ask_retry_failed(self) -> None:
        await self._confirm("Retry all failed jobs?", "Each failed job that has not been retried yet gets a new job "
                            "with the same inputs. Canceled jobs are left alone.", "Retry them", self.retry_failed)

    async def ask_cancel_queued(self) -> None:
        await self._confirm("Cancel all waiting jobs?", "Every job still waiting for the worker ends as canceled. "
                            "The job rendering now keeps going.", "Cancel them", self.cancel_queued, danger=True)

    async def _confirm(self, title: str, text: str, yes: str, action: Any, danger: bool = False) -> None:
        with ui.dialog() as dialog, ui.card().classes("panel confirm").props(tid("confirm")):
            ui.label(title).classes("confirm-title")
            ui.label(text).classes("muted")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Keep them", on_click=lambda: dialog.submit(False)).props("flat no-caps")
                ui.button(yes, on_click=lambda: dialog.submit(True)).props(
                    "unelevated no-caps" + (" color=negative" if danger else "")).props(tid("confirm-yes"))
        if await dialog:
            await action()
        dialog.delete()

    async def retry_failed(self) -> None:
        outcome = await run.io_bound(self.ctx.service.retry_failed)
        parts = [f"{len(outcome.made)} job(s) retried"]
        if outcome.inputs_gone:
            parts.append(f"{outcome.inputs_gone} skipped (their uploaded inputs are gone)")
        if outcome.queue_full:
            parts.append(f"stopped: the queue is full ({self.ctx.settings.queue_depth} jobs)")
        ui.notify("; ".join(parts), type="warning" if outcome.queue_full else "positive")
        await self.refresh()

    async def cancel_queued(self) -> None:
        count = await run.io_bound(self.ctx.service.cancel_queued)
        ui.notify(f"{count} waiting job(s) canceled", type="info")
        await self.refresh()

    # --- the two panels ---
    def _changed(self, panel: str, key: Any) -> bool:
        if panel in self.drawn and self.drawn[panel] == key:
            return False
        self.drawn[panel] = key
        return True

    def _now(self, running: list[Job], last: Job | None) -> None:
        """Built when what it shows changes (another job, or idle); stage, progress and times update in place."""
        job = running[0] if running else None
        key = ("running", job.job_id, len(running)) if job else ("idle", last and last.job_id, last and state_of(last))
        if self._changed("now", key):
            self.live = {}
            self.now.clear()
            with self.now:
                ui.label("Now rendering").classes("panel-title")
                if job is not None:
                    self._build_running(job, len(running))
                else:
                    with ui.row().classes("idle"):
                        ui.icon("hourglass_empty").classes("idle-icon")
                        ui.label("Nothing is rendering. Jobs appear here the moment the worker takes them."
                                 ).classes("muted").props(tid("now-idle"))
                    if last is not None:
                        self._build_last(last)
        live = self.live
        if job is not None:
            live["stage"].text = stage_label(job)
            live["elapsed"].text = f"{job.progress:.0%} · {duration(render_time(job))} elapsed"
            live["bar"].value = job.progress
            track = stage_track_html(job)
            if live["track"].content != track:
                live["track"].content = track
        elif last is not None and "finished" in live:
            live["finished"].text = self._finished_text(last)

    def _build_running(self, job: Job, count: int) -> None:
        with ui.row().classes("now-row"):
            raw(thumb_link(job, "now-thumb"))
            with ui.column().classes("now-body"):
                with ui.row().classes("now-line"):
                    ui.link(f"Job {short(job.job_id)}", f"/jobs/{job.job_id}").classes("mono now-id")
                    self.live["stage"] = ui.label().classes("now-stage").props(tid("now-stage"))
                    ui.space()
                    self.live["elapsed"] = ui.label().classes("muted").props(tid("now-elapsed"))
                self.live["bar"] = ui.linear_progress(job.progress, show_value=False, size="8px").props(
                    "rounded color=accent")
                self.live["track"] = raw("")
        if count > 1:
            ui.label(f"+ {count - 1} more rendering on other workers").classes("muted")

    def _build_last(self, job: Job) -> None:
        state = state_of(job)
        with ui.row().classes("now-row last-row").props(tid("last-finished")):
            raw(thumb_link(job, "now-thumb small"))
            with ui.column().classes("gap-1"):
                with ui.row().classes("items-center gap-2"):
                    ui.label("Last finished").classes("muted")
                    ui.link(f"Job {short(job.job_id)}", f"/jobs/{job.job_id}").classes("mono now-id")
                    ui.label(STATUS_WORDS[state]).classes(f"chip chip-{state}")
                self.live["finished"] = ui.label(self._finished_text(job)).classes("muted")

    @staticmethod
    def _finished_text(job: Job) -> str:
        state = state_of(job)
        ran = render_time(job) if job.started_at else None
        if state == COMPLETED:
            how = f"rendered in {duration(ran)}"
        elif ran is None:
            how = "never started"
        else:
            how = f"stopped after {duration(ran)}"
        return f"finished {ago(job.completed_at or time.time())} · {how}" + (
            f" · {ERROR_TITLES.get(job.error_code or '', '')}" if state != COMPLETED else "")

    def _worker(self, workers: list, counts: dict[str, int]) -> None:
        """Built when the workers change; the queue slots in use update in place."""
        settings = self.ctx.settings
        active = counts[QUEUED] + counts[RUNNING]
        if self._changed("worker", [(w.name, w.state, w.info) for w in workers]):
            self.worker.clear()
            with self.worker:
                self._build_worker(workers)
        self.depth_text.text = f"{active} of {settings.queue_depth} slots in use"
        self.depth_bar.value = min(1.0, active / settings.queue_depth)
        self.depth_bar.props("color=" + ("negative" if active >= settings.queue_depth else "secondary"))

    def _build_worker(self, workers: list) -> None:
        ui.label("Worker").classes("panel-title")
        if not workers:
            with ui.row().classes("worker-state"):
                ui.label("Not running").classes("chip chip-failed")
            ui.label("No worker has reported in the last seconds; jobs wait until one starts.").classes("muted")
        for w in workers[:2]:
            info = w.info or {}
            ready = w.state == "ready"
            with ui.row().classes("worker-state"):
                ui.label("Ready" if ready else w.state.capitalize()[:60]).classes(
                    "chip " + ("chip-completed" if ready else "chip-queued")).props(tid("worker-state"))
                ui.label(info.get("device") or (w.device or "auto device")).classes("worker-device")
            models = info.get("models") or {}
            if models:
                raw("<dl class='facts compact'>" + "".join(
                    f"<dt>{stage.capitalize()}</dt><dd>{model_name(models[stage])}</dd>"
                    for stage in (PipelineStage.SEGMENT, PipelineStage.GEOMETRY, PipelineStage.REFINE)
                    if stage in models)
                    + "</dl>")
        with ui.row().classes("depth-line"):
            ui.label("Queue").classes("muted")
            ui.space()
            self.depth_text = ui.label().classes("depth-text").props(tid("depth"))
        self.depth_bar = ui.linear_progress(0, show_value=False, size="6px").props("rounded")


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/", favicon=LOGO)
    def queue_page(request: Request) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        QueuePage(ctx, auth)
        return None
