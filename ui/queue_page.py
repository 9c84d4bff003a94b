"""The home page: the job currently rendering, the worker, and every recent job, live (polling the job store)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from nicegui import run, ui

from appliance.domain import ACTIVE, JobStatus, Stage
from appliance.jobs import COMPLETED, QUEUED, RUNNING, Job
from pipeline.stages import PipelineStage

from .components import (CANCELED, ERROR_TITLES, LOGO, STATUS_WORDS, ago, clock, duration, file_url, frame, model_name, raw,
                         render_time, short, stage_label, stage_track_html, state_of, tid, total_time)

FILTERS = [("all", "All"), (JobStatus.QUEUED, "Waiting"), (JobStatus.RUNNING, "Rendering"),
           (JobStatus.COMPLETED, "Completed"), (JobStatus.FAILED, "Failed"), (CANCELED, "Canceled")]
LIMIT = 100
COLUMNS = [
    {"name": "status", "label": "Status", "field": "status_word", "align": "left"},
    {"name": "job", "label": "Job", "field": "short", "align": "left"},
    {"name": "owner", "label": "Project · user", "field": "project", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
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
    "body-cell-owner": """<q-td :props="props"><div v-if="props.row.project || props.row.user" class="owner">
        <div v-if="props.row.project"><span class="muted">project</span> <span class="mono">{{ props.row.project }}
        </span></div><div v-if="props.row.user"><span class="muted">user</span> <span class="mono">
        {{ props.row.user }}</span></div></div><span v-else class="muted">—</span></q-td>""",
    "body-cell-progress": """<q-td :props="props">
        <div v-if="props.row.state === 'running'" class="cell-progress">
        <div class="cell-stage">{{ props.row.stage }} <span class="muted">{{ props.row.percent }}</span></div>
        <q-linear-progress :value="props.row.progress" rounded size="6px" color="accent" /></div>
        <span v-else class="muted">{{ props.row.progress_text }}</span></q-td>""",
    "body-cell-error": """<q-td :props="props"><div v-if="props.row.error" class="cell-error" :title="props.row.error">
        <b>{{ props.row.error_title }}</b> · {{ props.row.error }}</div></q-td>""",
}


def _snapshot(ctx: Any, status: str) -> dict[str, Any]:
    """Everything the page shows, in one trip to the store (runs in a thread)."""
    store = ctx.store
    jobs = store.list_jobs(None if status == "all" else status, limit=LIMIT)
    running = store.list_jobs(RUNNING, limit=4)
    line = {job_id: i for i, job_id in enumerate(store.queued_ids())}
    fresh = max(15.0, ctx.settings.lease_seconds)
    workers = [w for w in store.workers() if time.time() - w.heartbeat_at <= fresh]
    last = next((j for j in store.list_jobs(None, limit=20) if j.completed_at), None)
    return {"jobs": jobs, "running": running, "last": last, "line": line, "counts": store.status_counts(),
            "workers": workers}


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
            "project": short(job.project_id), "user": short(job.user_id), "created": clock(job.created_at),
            "stage": stage_label(job), "progress": round(job.progress, 3), "percent": f"{job.progress:.0%}",
            "progress_text": progress_text, "time": duration(total_time(job)),
            "error_title": ERROR_TITLES.get(job.error_code or "", job.error_code or ""),
            "error": job.error_message if state not in (QUEUED, RUNNING, COMPLETED) else "",
            "thumb": file_url(job.job_id, "thumb", thumb_version(job))}


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
        self.status = "all"
        self.busy = False
        self.drawn: dict[str, Any] = {}  # what each panel shows now: redrawn only when it changes
        with frame("queue", auth, "Queue"):
            with ui.row().classes("page-head"):
                with ui.column().classes("gap-0"):
                    ui.label("Queue").classes("page-title")
                    ui.label("Live: waiting, rendering and recent jobs").classes("muted")
                ui.space()
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

    async def refresh(self) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            snap = await run.io_bound(_snapshot, self.ctx, self.status)
        finally:
            self.busy = False
        self.drawn: dict[str, Any] = {}  # what each panel shows now: redrawn only when it changes
        line = snap["line"]
        jobs = sorted(snap["jobs"], key=lambda j: (j.status != RUNNING, j.status != QUEUED,
                                                   line.get(j.job_id, 0) if j.status == QUEUED else -j.created_at))
        rows = [_row(j, line) for j in jobs]
        if rows != self.table.rows:
            self.table.rows = rows
            self.table.update()
        counts = snap["counts"]
        totals = {"all": sum(counts[s] for s in (QUEUED, RUNNING, COMPLETED, "failed")), **counts}
        for key, (button, label) in self.filter_buttons.items():
            button.text = f"{label} {totals.get(key, 0)}"
            button.classes(add="active" if key == self.status else "", remove="" if key == self.status else "active")
        self._now(snap["running"], snap["last"])
        self._worker(snap["workers"], counts)

    def _changed(self, panel: str, key: Any) -> bool:
        if self.drawn.get(panel) == key:
            return False
        self.drawn[panel] = key
        return True

    def _now(self, running: list[Job], last: Job | None) -> None:
        key = [(j.job_id, j.stage, j.progress, int(render_time(j) or 0)) for j in running] or \
            (last and (last.job_id, int(time.time() - last.completed_at) // 10))
        if not self._changed("now", key):
            return
        self.now.clear()
        with self.now:
            ui.label("Now rendering").classes("panel-title")
            if not running:
                with ui.row().classes("idle"):
                    ui.icon("hourglass_empty").classes("idle-icon")
                    ui.label("Nothing is rendering. Jobs appear here the moment the worker takes them.").classes(
                        "muted")
                if last is not None:
                    self._last(last)
                return
            job = running[0]
            with ui.row().classes("now-row"):
                raw(thumb_link(job, "now-thumb"))
                with ui.column().classes("now-body"):
                    with ui.row().classes("now-line"):
                        ui.link(f"Job {short(job.job_id)}", f"/jobs/{job.job_id}").classes("mono now-id")
                        ui.label(stage_label(job)).classes("now-stage").props(tid("now-stage"))
                        ui.space()
                        ui.label(f"{job.progress:.0%} · {duration(render_time(job))} elapsed").classes("muted")
                    ui.linear_progress(job.progress, show_value=False, size="8px").props("rounded color=accent")
                    raw(stage_track_html(job))
            if len(running) > 1:
                ui.label(f"+ {len(running) - 1} more rendering on other workers").classes("muted")

    def _last(self, job: Job) -> None:
        state = state_of(job)
        with ui.row().classes("now-row last-row"):
            raw(thumb_link(job, "now-thumb small"))
            with ui.column().classes("gap-1"):
                with ui.row().classes("items-center gap-2"):
                    ui.label("Last finished").classes("muted")
                    ui.link(f"Job {short(job.job_id)}", f"/jobs/{job.job_id}").classes("mono now-id")
                    ui.label(STATUS_WORDS[state]).classes(f"chip chip-{state}")
                ui.label(f"finished {ago(job.completed_at)} · rendered in {duration(render_time(job))}"
                         + (f" · {ERROR_TITLES.get(job.error_code or '', '')}" if state != COMPLETED else "")
                         ).classes("muted")

    def _worker(self, workers: list, counts: dict[str, int]) -> None:
        settings = self.ctx.settings
        active = counts[QUEUED] + counts[RUNNING]
        if not self._changed("worker", ([(w.name, w.state, w.info) for w in workers], active)):
            return
        self.worker.clear()
        with self.worker:
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
                ui.label(f"{active} of {settings.queue_depth} slots in use").classes("depth-text").props(tid("depth"))
            ui.linear_progress(min(1.0, active / settings.queue_depth), show_value=False, size="6px").props(
                "rounded color=" + ("negative" if active >= settings.queue_depth else "secondary"))


def register(ctx: Any, auth: Any) -> None:
    @ui.page("/", favicon=LOGO)
    def queue_page(request: Request) -> Any:
        if (refused := auth.gate(request)) is not None:
            return refused
        QueuePage(ctx, auth)
        return None
