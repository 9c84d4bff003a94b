"""The console's queue page and job texts as an operator uses them through a day, in a real browser against a real
`render-appliance serve` (see test_console.py): a fresh box, jobs finishing out of order, jobs that arrived within
one clock tick, canceled and timed-out jobs, bulk actions, search and sort. The first test needs the box fresh."""

from __future__ import annotations

import time
import uuid

import pytest

from appliance.jobs import JobStore
from service_fixtures import SMALL_HOUSE, SWATCH

from console_fixtures import box, browser, page, photos, shot, tid  # noqa: F401

ROWS = f"{tid('jobs')} tbody tr"


def _submit(box, photos, **extra) -> str:
    r = box.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}", **extra})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _row(page, job_id: str):
    return page.locator(f"{ROWS}:has-text('{job_id[:8]}')")


def _mark(page, selector: str) -> None:
    """Tag the element so that a rebuild (a new element in its place) is visible."""
    page.locator(selector).first.evaluate("el => { el.__kept = true; window.__marked = window.__marked || [];"
                                          " window.__marked.push(el); }")


def _replaced(page) -> list:
    """The marked elements that were replaced (empty when all are still in place)."""
    return page.evaluate("(window.__marked || []).filter(el => !el.isConnected).map(el => el.outerHTML.slice(0, 80))")


def test_fresh_box_says_nothing_is_rendering(box, page):
    assert box.http.get("/render/jobs/" + str(uuid.uuid4())).status_code == 404
    assert not JobStore(box.data_dir / "jobs.db").list_jobs(limit=1), "this test needs a box that never ran a job"
    page.goto(box.base + "/")
    page.locator(tid("now-idle")).wait_for(timeout=5000)  # not an empty white card
    assert "Nothing is rendering" in page.locator(tid("now-rendering")).inner_text()
    assert page.locator(tid("last-finished")).count() == 0
    assert page.locator(tid("cancel-queued")).is_disabled() and page.locator(tid("retry-failed")).is_disabled()
    shot(page, "queue-fresh")


def test_panels_update_in_place(box, photos, page):
    """Hover, text selection and open tooltips survive the page's once-a-second refresh: nothing is rebuilt while
    only times, stages and progress move on."""
    box.drain()
    page.goto(box.base + "/")
    page.locator(tid("worker-state")).wait_for()
    _mark(page, tid("worker-state"))
    _mark(page, tid("now-idle"))
    page.wait_for_timeout(3500)
    assert not _replaced(page), "an idle panel was rebuilt"
    job_id = _submit(box, photos)
    page.locator(f"{tid('now-stage')}").wait_for()
    page.evaluate("window.__marked = []")  # the idle text is gone now, rightly
    _mark(page, tid("now-stage"))
    _mark(page, tid("worker-state"))
    _mark(page, f"{tid('jobs')} tbody tr")
    first = page.locator(tid("now-elapsed")).inner_text()
    # The elapsed time moves on every tick while the job runs (its geometry stage alone takes 1.2 s here).
    page.wait_for_function("(el => !el || el.innerText !== " + repr(first) + ")"
                           "(document.querySelector('[data-testid=\"now-elapsed\"]'))")
    assert page.locator(tid("now-elapsed")).count() == 1, "the job ended before a tick: machine too loaded?"
    assert not _replaced(page), "the running job's panel (or the jobs table) was rebuilt as it moved on"
    _row(page, job_id).locator(".chip-completed").wait_for(timeout=30_000)


def test_last_finished_is_the_last_to_finish_and_canceled_is_not_failed(box, photos, page):
    box.drain()
    before = box.http.get("/render/jobs/" + str(uuid.uuid4()))
    assert before.status_code == 404
    first = _submit(box, photos)
    second = _submit(box, photos, texture_url="#3E4A3D")  # created later, canceled while waiting: finishes first
    assert box.http.post(f"/render/jobs/{second}/cancel").status_code == 200
    assert box.wait(first)["status"] == "completed"
    page.goto(box.base + "/")
    last = page.locator(tid("last-finished"))
    last.wait_for()
    assert first[:8] in last.inner_text() and "Completed" in last.inner_text(), last.inner_text()
    counts = JobStore(box.data_dir / "jobs.db").status_counts()
    failed_only = counts["failed"] - counts["canceled"]
    assert counts["canceled"] >= 1
    page.wait_for_function("document.querySelector('[data-testid=\"filter-failed\"]').innerText.trim() === "
                           f"'Failed {failed_only}'")
    assert page.locator(tid("filter-canceled")).inner_text().strip() == f"Canceled {counts['canceled']}"
    # The Failed filter lists failures, not cancellations.
    broken = _submit(box, photos, image_url=f"{photos}/houses/no_such_house.jpg")
    assert box.wait(broken)["status"] == "failed"
    page.locator(tid("filter-failed")).click()
    _row(page, broken).wait_for()
    page.wait_for_function(f"!document.querySelector('[data-testid=\"jobs\"]').innerText.includes('{second[:8]}')")
    assert page.locator(f"{ROWS} .chip-canceled").count() == 0
    shot(page, "queue-failed-filter")


def test_positions_of_jobs_that_arrived_together(box, photos, page, monkeypatch):
    """Jobs stored within one clock tick (coarse clocks, bursts) get the same queued_at: the queue page must show
    the order the API reports (and the worker follows), not whatever order the database returns."""
    box.drain()
    store = JobStore(box.data_dir / "jobs.db")
    tick = time.time()
    monkeypatch.setattr("appliance.jobs.time.time", lambda: tick)
    ids = [f"{c * 8}-0000-4000-8000-000000000000" for c in "fdb"]  # stored in reverse id order
    for job_id in ids:
        store.create(job_id=job_id, image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#B04A3A", mask_url=None,
                     options={}, project_id=None, user_id=None, idempotency_key=None, request_hash=None,
                     queue_depth=10)
    monkeypatch.undo()
    positions = {job_id: box.job(job_id)["queue_position"] for job_id in ids}
    assert sorted(positions.values()) == [0, 1, 2]
    page.goto(box.base + "/")
    expected = {0: "next in line", 1: "#2 in line", 2: "#3 in line"}
    for job_id, position in positions.items():
        _row(page, job_id).get_by_text(expected[position]).wait_for(timeout=5000)
    order = [page.locator(ROWS).nth(i).inner_text()[:200] for i in range(3)]
    by_position = sorted(ids, key=positions.get)
    assert [job_id[:8] in text for job_id, text in zip(by_position, order)] == [True] * 3, order
    shot(page, "queue-waiting")
    # Cancel all queued: asks first, then every waiting job ends canceled.
    page.locator(tid("cancel-queued")).click()
    page.locator(tid("confirm")).get_by_text("Keep them").click()
    page.wait_for_timeout(500)
    assert all(box.job(job_id)["status"] == "processing" for job_id in ids)
    page.locator(tid("cancel-queued")).click()
    shot(page, "queue-confirm-cancel")
    page.locator(tid("confirm-yes")).click()
    page.locator(".q-notification").get_by_text("3 waiting job(s) canceled").wait_for()
    assert all(box.job(job_id)["error_code"] == "canceled" for job_id in ids)
    for job_id in ids:
        _row(page, job_id).locator(".chip-canceled").wait_for()


@pytest.mark.parametrize("how", ["canceled", "timed out"])
def test_a_job_stopped_mid_render_says_what_happened(box, photos, page, how):
    box.drain()
    if how == "canceled":
        job_id = _submit(box, photos)
        box.wait(job_id, until=lambda j: j.get("stage") == "geometry", timeout=30)
        assert box.http.post(f"/render/jobs/{job_id}/cancel").status_code == 202
    else:  # the geometry stage pauses 1.2 s on this box
        job_id = _submit(box, photos, options={"stage_timeout_seconds": 0.5})
    job = box.wait(job_id)
    assert job["error_code"] == ("canceled" if how == "canceled" else "timeout"), job
    page.goto(f"{box.base}/jobs/{job_id}")
    page.locator(tid("timings")).wait_for()
    meta = page.locator(".meta-line").inner_text()
    assert "Rendered in" not in meta and "Stopped after" in meta, meta
    timings = page.locator(tid("timings")).inner_text()
    assert "No stage ran" not in timings and "stopped after" in timings and how in timings, timings
    shot(page, f"job-{how.replace(' ', '-')}")
    page.locator(tid("fix-mask")).click()
    page.locator(f"{tid('mask-editor')}[data-ready='1']").wait_for()
    hint = page.locator(tid("no-mask")).inner_text()
    assert "found no wall" not in hint and "stopped before the segmenter finished" in hint, hint


def test_queue_material_dates_search_sort_and_retry_all(box, photos, page):
    box.drain()
    project, user = str(uuid.uuid4()), str(uuid.uuid4())
    swatch_job = _submit(box, photos, project_id=project, user_id=user)
    paint_job = _submit(box, photos, texture_url="#6B7B8C")
    broken = _submit(box, photos, image_url=f"{photos}/houses/no_such_house.jpg")
    for job_id in (swatch_job, paint_job, broken):
        box.wait(job_id)
    page.goto(box.base + "/")
    swatch_row, paint_row = _row(page, swatch_job), _row(page, paint_job)
    swatch_row.locator("img.material-swatch").wait_for()
    page.wait_for_function("[...document.querySelectorAll('img.material-swatch')].some(i => i.complete && "
                           "i.naturalWidth > 0 && i.naturalWidth <= 96)")
    assert SWATCH.rsplit("/", 1)[-1] in swatch_row.inner_text()
    colour = paint_row.locator("span.material-swatch").evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(107, 123, 140)" and "#6B7B8C" in paint_row.inner_text()
    created = JobStore(box.data_dir / "jobs.db").get(swatch_job).created_at
    assert "Today" in swatch_row.inner_text() and time.strftime("%H:%M", time.localtime(created)) in \
        swatch_row.inner_text()
    shot(page, "queue-materials")
    # Search by project id (any prefix), then by user id, then by job id.
    search = page.locator(tid("search"))
    for needle in (project[:6], user[:10].upper(), paint_job[:8]):
        search.fill(needle)
        want = paint_job if needle == paint_job[:8] else swatch_job
        page.wait_for_function(f"document.querySelectorAll('{ROWS}').length === 1 && "
                               f"document.querySelector('{ROWS}').innerText.includes('{want[:8]}')")
    search.fill("")
    page.wait_for_function(f"document.querySelectorAll('{ROWS}').length >= 3")
    # Sort: last finished first puts the broken job (finished last) on top; status groups failures before
    # successes.
    page.locator(tid("sort")).click()
    page.get_by_role("option", name="Last finished").click()
    page.wait_for_function(f"document.querySelector('{ROWS}').innerText.includes('{broken[:8]}')")
    page.locator(tid("sort")).click()
    page.get_by_role("option", name="Status").click()
    page.wait_for_function(f"document.querySelector('{ROWS}').querySelector('.chip-failed') !== null")
    states = page.evaluate(f"[...document.querySelectorAll('{ROWS} .chip')].map(c => c.className)")
    ranks = [next(i for i, s in enumerate(("running", "queued", "failed", "canceled", "completed"))
                  if f"chip-{s}" in c) for c in states]
    assert ranks == sorted(ranks), states
    # Retry all failed: asks, makes one retry per failed job, and does not retry them again.
    page.locator(tid("retry-failed")).click()
    page.locator(tid("confirm-yes")).click()
    notice = page.locator(".q-notification").filter(has_text="retried")
    notice.first.wait_for()
    made = int(notice.first.inner_text().split(" job(s)")[0].split()[-1])
    failed_before = JobStore(box.data_dir / "jobs.db").list_jobs("failed", include_canceled=False)
    assert made >= 1 and broken in {j.job_id for j in failed_before}
    retries = [d for d in (box.data_dir / "jobs").glob("*/origin.json") if broken in d.read_text()]
    assert len(retries) == 1
    box.drain()  # the retries fail again (the photo is still missing): those are new failures, retried next time
    notice.first.wait_for(state="detached")
    page.locator(tid("retry-failed")).click()
    page.locator(tid("confirm-yes")).click()
    notice.first.wait_for()
    assert len([d for d in (box.data_dir / "jobs").glob("*/origin.json") if broken in d.read_text()]) == 1
    box.drain()


def test_an_invalid_paint_colour_says_why(box, page):
    page.goto(box.base + "/test-render")
    page.get_by_text("Paint colour", exact=True).first.click()
    colour = page.locator(f"{tid('paint-colour')}")
    colour.fill("#12G45")
    page.locator(tid("error-colour")).get_by_text("is not a paint colour").wait_for()
    assert "#RRGGBB" in page.locator(tid("error-colour")).inner_text() or \
        "six hex digits" in page.locator(tid("error-colour")).inner_text()
    assert page.locator(tid("submit")).is_disabled()
    shot(page, "test-render-bad-colour")
    colour.fill("#6b7b8c")
    page.wait_for_function("document.querySelector('[data-testid=\"error-colour\"]').innerText.trim() === ''")
