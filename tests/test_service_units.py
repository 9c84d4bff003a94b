"""Service parts on their own (no server): config loading, the job store's state machine, request validation, the
queue. Real SQLite files in tmp folders."""

from __future__ import annotations

import time
import uuid

import pytest

from appliance.schemas import validate_request
from appliance.service import request_hash
from appliance.config import ConfigError, Settings, load_settings
from appliance.jobs import COMPLETED, FAILED, QUEUED, RUNNING, IdempotencyConflict, JobStore, QueueFull
from appliance.queue import RenderQueue


# --- config ---------------------------------------------------------------------------------------------------

def test_defaults_keep_data_out_of_the_install_folder(tmp_path):
    s = load_settings(None, env={"XDG_DATA_HOME": str(tmp_path)})
    assert s == Settings(data_dir=s.data_dir, model_dir=s.model_dir)
    assert s.data_dir.name == "render-appliance"
    assert s.queue_depth == 20 and s.max_attempts == 3 and s.retention_hours == 48 and s.api_key is None
    assert s.base_url == "http://127.0.0.1:8080"


def test_file_then_environment(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[paths]\ndata_dir = "data"\n[server]\nport = 9000\ncors_origins = ["https://a.example"]\n'
                   '[queue]\ndepth = 5\n[fetch]\nallow_networks = ["10.0.0.0/8"]\n')
    s = load_settings(cfg, env={"RENDER_PORT": "9100", "RENDER_CORS_ORIGINS": "https://b.example, https://c.example",
                                "SUPABASE_URL": "https://x.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": "k",
                                "RENDER_STAGE_TIMEOUT": "30", "AI_FORCE_CPU": "1", "RENDER_API_KEY": "secret"})
    assert s.data_dir == tmp_path / "data"  # relative to the file
    assert s.port == 9100 and s.queue_depth == 5
    assert s.cors_origins == ("https://b.example", "https://c.example")
    assert s.fetch_allow_networks == ("10.0.0.0/8",)
    assert s.uses_supabase and s.stage_timeout == 30.0 and s.force_cpu and s.api_key == "secret"


@pytest.mark.parametrize("text, env, key", [
    ("[queue]\ndepth = 0\n", {}, "queue.depth"),
    ("[queue]\ndepht = 3\n", {}, "queue.depht"),
    ("[server]\nport = \"x\"\n", {}, "server.port"),
    ("[sever]\nport = 1\n", {}, "sever"),
    ("[fetch]\nallow_networks = [\"not-a-net\"]\n", {}, "fetch.allow_networks"),
    ("[server]\ncors_origins = [\"app.example\"]\n", {}, "server.cors_origins"),
    ("[render]\nforce_cpu = \"maybe\"\n", {}, "render.force_cpu"),
    ("", {"RENDER_QUEUE_DEPTH": "many"}, "RENDER_QUEUE_DEPTH"),
    ("", {"RENDER_STAGE_TIMEOUT": "-1"}, "RENDER_STAGE_TIMEOUT"),
    ("", {"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY"),
    ("[worker]\ndevice = \"gpu0\"\n", {}, "worker.device"),
])
def test_bad_config_names_the_key(tmp_path, text, env, key):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(cfg, env=env)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


# --- job store ------------------------------------------------------------------------------------------------

def new_job(store: JobStore, depth: int = 10, key: str | None = None, texture: str = "#112233", **kw):
    fields = {"image_url": "http://example.com/a.jpg", "texture_url": texture, "options": {}}
    return store.create(job_id=str(uuid.uuid4()), image_url=fields["image_url"], texture_url=texture,
                        mask_url=None, options={}, project_id=kw.get("project_id"), user_id=kw.get("user_id"),
                        idempotency_key=key, request_hash=request_hash(fields) if key else None, queue_depth=depth)


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def test_lifecycle_and_lease(store):
    job, created = new_job(store)
    assert created and job.status == QUEUED and job.attempts == 0
    claimed = store.claim(job.job_id, "host/cpu/1", 30)
    assert claimed.status == RUNNING and claimed.attempts == 1 and claimed.lease_owner == "host/cpu/1"
    assert store.claim(job.job_id, "host/cpu/2", 30) is None  # compare-and-set: one owner
    assert not store.set_stage(job.job_id, "host/cpu/2", "segment", 0.2)  # writes need the lease
    assert store.set_stage(job.job_id, "host/cpu/1", "segment", 0.2)
    assert store.renew(job.job_id, "host/cpu/1", 30)
    assert not store.complete(job.job_id, "host/cpu/2", result_url="x")
    assert store.complete(job.job_id, "host/cpu/1", result_url="http://r/1.png", timings={"segment": 0.5})
    done = store.get(job.job_id)
    assert done.status == COMPLETED and done.result_url == "http://r/1.png" and done.timings == {"segment": 0.5}
    assert not store.fail(job.job_id, "host/cpu/1", "timeout", "late")  # a finished job stays finished


def test_completed_job_carries_the_scale_report(store):
    """RenderResult.scale (options.swatch_width_m) is recorded and shown for the finished job, like warnings."""
    from appliance.job_view import job_view

    job, _ = new_job(store)
    store.claim(job.job_id, "w", 30)
    report = {"source": "estimated", "metres_per_unit": 0.01, "confidence": 0.5, "wall_width_m": 9.04}
    assert store.complete(job.job_id, "w", result_url="u", warnings=[], scale=report)
    done = store.get(job.job_id)
    assert done.scale == report and job_view(done, store)["scale"] == report
    other, _ = new_job(store)
    store.claim(other.job_id, "w", 30)
    store.complete(other.job_id, "w", result_url="u")  # no swatch_width_m: no scale field
    assert "scale" not in job_view(store.get(other.job_id), store)


def test_queue_depth_counts_queued_and_running(store):
    a, _ = new_job(store, depth=2)
    new_job(store, depth=2)
    with pytest.raises(QueueFull):
        new_job(store, depth=2)
    store.claim(a.job_id, "w", 30)
    with pytest.raises(QueueFull):
        new_job(store, depth=2)
    store.fail(a.job_id, "w", "pipeline_error", "x")
    new_job(store, depth=2)


def test_an_idempotent_replay_is_answered_while_new_jobs_are_refused_for_disk_space(tmp_path):
    """A retried submit gets its first job back even when the disk ran low since: the key is looked up before
    the disk check (a new job, or the same key with another payload, is still refused)."""
    from dataclasses import replace

    from appliance.jobs import StoreUnavailable
    from appliance.refs import InputRef
    from appliance.service import JobService, JobSpec

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", min_free_mb=0)
    store = JobStore(settings.jobs_db)
    try:
        service = JobService(settings, store, RenderQueue(settings.queue_db))
        spec = JobSpec(image=InputRef.parse("http://example.com/a.jpg"), texture=InputRef.parse("#112233"))
        first, created = service.submit(spec, idempotency_key="k1")
        assert created
        service.settings = replace(settings, min_free_mb=10_000_000)  # more than any disk here has free
        again, created = service.submit(spec, idempotency_key="k1")
        assert (again.job_id, created) == (first.job_id, False)
        with pytest.raises(StoreUnavailable, match="MB free"):
            service.submit(spec)
        with pytest.raises(IdempotencyConflict):
            service.submit(replace(spec, texture=InputRef.parse("#445566")), idempotency_key="k1")
    finally:
        store.close()



def test_idempotency(store):
    a, created = new_job(store, key="k1")
    b, again = new_job(store, key="k1")
    assert created and not again and a.job_id == b.job_id
    with pytest.raises(IdempotencyConflict):
        new_job(store, key="k1", texture="#445566")
    # A replay is answered even when the queue is full.
    c, _ = new_job(store, key="k1", depth=1)
    assert c.job_id == a.job_id


def test_cancel_queued_and_running(store):
    queued, _ = new_job(store)
    running, _ = new_job(store)
    store.claim(running.job_id, "w", 30)
    q = store.request_cancel(queued.job_id)
    assert q.status == FAILED and q.error_code == "canceled"
    assert store.claim(queued.job_id, "w", 30) is None
    r = store.request_cancel(running.job_id)
    assert r.status == RUNNING and r.cancel_requested and store.cancel_requested(running.job_id)


def test_recover_requeues_then_gives_up(store):
    job, _ = new_job(store)
    for attempt in (1, 2):
        j = store.claim(job.job_id, f"w{attempt}", 30)
        assert j.attempts == attempt
        assert store.recover(j, max_attempts=3, reason="killed") == QUEUED
    j = store.claim(job.job_id, "w3", 0.01)
    time.sleep(0.05)
    assert [e.job_id for e in store.expired()] == [job.job_id]
    assert store.recover(j, max_attempts=3, reason="lease expired") == FAILED
    final = store.get(job.job_id)
    assert final.error_code == "pipeline_error" and "3 attempts" in final.error_message
    assert store.recover(j, max_attempts=3, reason="again") is None  # moved on: no double verdict


def test_release_does_not_count_the_attempt(store):
    job, _ = new_job(store)
    store.claim(job.job_id, "w", 30)
    assert store.release(job.job_id, "w")
    again = store.get(job.job_id)
    assert again.status == QUEUED and again.attempts == 0


def test_a_job_canceled_while_running_and_handed_back_ends_canceled(store):
    """Cancel requested while running, then the worker stops (SIGTERM) before its next checkpoint: the job must not
    go back to the queue with its cancel flag set (no claim would ever take it)."""
    job, _ = new_job(store)
    store.claim(job.job_id, "w", 30)
    store.request_cancel(job.job_id)
    assert store.release(job.job_id, "w") == FAILED
    done = store.get(job.job_id)
    assert done.status == FAILED and done.error_code == "canceled" and done.lease_owner is None
    assert store.active_count() == 0
    # A row left queued with the flag (by an older release) is ended by the next claim of its message.
    stuck, _ = new_job(store)
    store.claim(stuck.job_id, "w", 30)
    store.request_cancel(stuck.job_id)
    store._write("UPDATE render_jobs SET status = 'queued', lease_owner = NULL WHERE job_id = ?", (stuck.job_id,))
    assert store.claim(stuck.job_id, "w2", 30) is None
    assert store.get(stuck.job_id).error_code == "canceled" and store.active_count() == 0


def test_progress_spans_follow_the_running_order():
    """Each stage's share starts where the previous one's ended: progress never goes backwards, refinement or not."""
    from appliance.domain import PROGRESS_SPANS, Stage

    spans = [PROGRESS_SPANS[stage] for stage in Stage if stage in PROGRESS_SPANS]
    assert spans[0][0] == 0.0 and spans[-1][1] == 1.0
    for (low, high), (next_low, _) in zip(spans, spans[1:]):
        assert low < high <= next_low, spans


def test_queue_position(store):
    jobs = [new_job(store)[0] for _ in range(3)]
    assert [store.queue_position(store.get(j.job_id)) for j in jobs] == [0, 1, 2]
    store.claim(jobs[0].job_id, "w", 30)
    assert store.queue_position(store.get(jobs[2].job_id)) == 1


def test_named_lease_has_one_holder(store):
    assert store.acquire_lease("housekeeping", "a", 0.2)
    assert not store.acquire_lease("housekeeping", "b", 0.2)
    assert store.acquire_lease("housekeeping", "a", 0.2)  # the holder renews
    time.sleep(0.25)
    assert store.acquire_lease("housekeeping", "b", 0.2)


def test_finished_before_and_delete(store):
    job, _ = new_job(store)
    store.claim(job.job_id, "w", 30)
    store.complete(job.job_id, "w", result_url="u")
    active, _ = new_job(store)
    assert [j.job_id for j in store.finished_before(time.time() + 1)] == [job.job_id]
    assert store.finished_before(time.time() - 60) == []
    assert store.delete(job.job_id) and not store.delete(active.job_id)


# --- request validation ------------------------------------------------------------------------------------

def test_validate_normalises():
    user, project = uuid.uuid4(), uuid.uuid4()
    fields, problems = validate_request({"image_url": "https://example.com/h.jpg", "texture_url": "#a0b0c0",
                                         "user_id": str(user).upper(), "project_id": str(project),
                                         "options": {"real_world_scale": 12}})
    assert problems == {}
    assert fields["texture_url"] == "#A0B0C0" and fields["user_id"] == str(user)
    assert fields["options"]["real_world_scale"] == 12.0 and fields["options"]["enable_refinement"] is False


# --- queue ---------------------------------------------------------------------------------------------------

def test_queue_messages_carry_only_the_job_id(tmp_path):
    q = RenderQueue(tmp_path / "queue.db")
    q.enqueue("job-1")
    q.enqueue("job-2")
    assert q.pending_job_ids() == {"job-1", "job-2"}
    task = q.huey.dequeue()
    assert task.args == ("job-1",) and not task.kwargs
    q.close()


def test_example_config_documents_every_key_and_loads(tmp_path):
    import re

    from appliance.config import SCHEMA

    from service_fixtures import ROOT

    text = (ROOT / "config.toml.example").read_text()
    section, found = None, set()
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.match(r"^# (\w+) = ", line):
            found.add((section, m.group(1)))
    assert set(SCHEMA) <= found, set(SCHEMA) - found
    # Uncommented, the example is a valid config (the Supabase pair and the custom pipeline left out).
    live = re.sub(r"(?m)^# (\w+ = )", r"\1", text)
    live = re.sub(r"(?m)^(supabase_\w+|pipeline) = .*$", "", live)
    cfg = tmp_path / "config.toml"
    cfg.write_text(live)
    s = load_settings(cfg, env={})
    assert s.api_key == "change-me" and s.fetch_allow_networks == ("10.20.0.0/16",)


# --- the worker in-process (real store, queue, local storage, a real Pipeline whose geometry stage wedges) -----

def test_worker_records_timeout_then_recycles_when_the_stage_stays_wedged(tmp_path, shared_dir):
    import threading

    import numpy as np
    from PIL import Image

    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry
    from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, SlowGeometry, photo_server

    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[100:300, 100:500] = 255
    extra = tmp_path / "www-extra"
    extra.mkdir()
    Image.fromarray(mask).save(extra / "mask.png")
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=("127.0.0.1",))
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    release = threading.Event()

    class Wedged(SlowGeometry):
        def estimate(self, image, mask):
            release.wait(30)
            return self.inner.estimate(image, mask)

    pipeline = Pipeline(None, Wedged(LineGeometry(), 0))  # a client mask: no segmentation model needed
    worker = Worker(settings, store, queue, LocalStorage(settings.results_dir, "http://x"), pipeline)
    recycled = []
    worker.on_recycle = lambda: recycled.append(True)
    worker.recycle_grace = 0.3
    with photo_server(shared_dir / "data", extra) as photos:
        job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#AA0000",
                              mask_url=f"{photos}/mask.png", options={"stage_timeout_seconds": 0.2},
                              project_id=None, user_id=None, idempotency_key=None, request_hash=None, queue_depth=5)
        worker.process(job.job_id)
        release.set()
        failed = store.get(job.job_id)
        assert failed.status == FAILED and failed.error_code == "timeout" and "geometry" in failed.error_message
        assert recycled and worker.recycle
        # A recycling worker leaves new jobs to its successor.
        nxt, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#AA0000",
                              mask_url=f"{photos}/mask.png", options={}, project_id=None, user_id=None,
                              idempotency_key=None, request_hash=None, queue_depth=5)
        worker.process(nxt.job_id)
        assert store.get(nxt.job_id).status == QUEUED and nxt.job_id in queue.pending_job_ids()
        # A fresh worker renders it.
        worker2 = Worker(settings, store, queue, LocalStorage(settings.results_dir, "http://x"),
                         Pipeline(None, LineGeometry()))
        worker2.process(nxt.job_id)
        done = store.get(nxt.job_id)
        assert done.status == COMPLETED, done
        assert Image.open(settings.results_dir / "renders" / "anonymous" / f"{nxt.job_id}.png").size == (w, h)


def test_a_render_whose_upload_failed_is_kept_and_uploaded_later_without_rendering_again(tmp_path, shared_dir):
    """Storage down longer than the upload retry window: the render is kept, the job goes back to the queue (with
    a delayed message), and the next attempt uploads the kept render; the pipeline ran once."""
    import numpy as np
    from PIL import Image

    from appliance.storage.supabase import SupabaseStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry
    from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, photo_server
    from supabase_storage_server import running_storage_server

    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[100:300, 100:500] = 255
    extra = tmp_path / "www-extra"
    extra.mkdir()
    Image.fromarray(mask).save(extra / "mask.png")
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=("127.0.0.1",),
                        upload_retry_delay=30, max_attempts=2)
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)

    class Counting(Pipeline):
        runs = 0

        def run(self, *args, **kwargs):
            type(self).runs += 1
            return super().run(*args, **kwargs)

    with photo_server(shared_dir / "data", extra) as photos, running_storage_server() as bucket:
        storage = SupabaseStorage(bucket.url, bucket.service_key, retry_seconds=0.3)
        storage.backoff_seconds = 0.05
        worker = Worker(settings, store, queue, storage, Counting(None, LineGeometry()))

        def new_job():
            job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#AA0000",
                                  mask_url=f"{photos}/mask.png", options={}, project_id=None, user_id=None,
                                  idempotency_key=None, request_hash=None, queue_depth=5)
            return job.job_id

        job_id = new_job()
        bucket.fail_for(60, status=503)  # a Storage outage longer than the retry window
        worker.process(job_id)
        waiting = store.get(job_id)
        assert waiting.status == QUEUED and waiting.attempts == 1 and Counting.runs == 1, waiting
        import datetime

        message = [t for t in queue.huey.pending() if t.args == (job_id,)]
        assert len(message) == 1 and message[0].eta is not None  # a delayed message, not an instant one
        eta = message[0].eta.replace(tzinfo=datetime.timezone.utc) if queue.huey.utc else message[0].eta
        assert (eta - datetime.datetime.now(eta.tzinfo)).total_seconds() > 20
        assert job_id in queue.pending_job_ids()
        assert (settings.job_dir(job_id) / "result.png").is_file()
        bucket.fail_for(0)  # Storage is back
        worker.process(job_id)  # the delayed message, delivered
        done = store.get(job_id)
        assert done.status == COMPLETED and Counting.runs == 1, done  # uploaded, not rendered again
        assert done.timings and "project" in done.timings  # the first attempt's report
        assert f"project-images/renders/anonymous/{job_id}.png" in bucket.objects
        assert not (settings.job_dir(job_id) / "result.png").exists()
        # Still down at the last attempt: upload_failed, with the render's report.
        other = new_job()
        bucket.fail_for(60, status=503)
        worker.process(other)
        worker.process(other)
        failed = store.get(other)
        assert failed.status == FAILED and failed.error_code == "upload_failed" and Counting.runs == 2, failed
        assert failed.timings


# --- the shape: one vocabulary, and who may import whom ---------------------------------------------------------

def test_domain_covers_the_pipeline_vocabulary():
    from appliance.domain import PROGRESS_SPANS, ErrorCode, Stage
    from pipeline import errors
    from pipeline.stages import PipelineStage

    codes = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "code")}
    assert codes <= set(ErrorCode)
    assert {str(s) for s in PipelineStage} <= {str(s) for s in Stage}
    assert set(PROGRESS_SPANS) == set(Stage) - {Stage.QUEUED, Stage.STARTING}


def test_import_boundaries():
    """The console never imports the HTTP module; the serving process never loads the worker module."""
    import ast
    import subprocess
    import sys

    from service_fixtures import ROOT

    for path in (ROOT / "ui").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "appliance.api" not in names and "appliance.worker" not in names, path
    probe = ("import sys, appliance.server, appliance.context, appliance.api, ui.pages; "
             "assert 'appliance.worker' not in sys.modules, 'worker imported'")
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True)


# --- console sign-in (ui/auth.py) -------------------------------------------------------------------------------

def test_console_sign_in_attempts_are_limited_per_address():
    import asyncio

    from ui.auth import MAX_FAILURES, ConsoleAuth, TooManyAttempts

    auth = ConsoleAuth(Settings(console_password="right"))
    auth.failure_pause = 0.0

    async def attempts():
        for _ in range(MAX_FAILURES):
            assert await auth.check_password("wrong", "203.0.113.7") is None
        with pytest.raises(TooManyAttempts) as caught:
            await auth.check_password("right", "203.0.113.7")  # even the right one, until the window passes
        assert caught.value.retry_after > 0
        assert await auth.check_password("right", "198.51.100.2")  # another address is not held up

    asyncio.run(attempts())


def test_console_cookie_is_samesite_and_secure_behind_https():
    import asyncio

    from ui.auth import ConsoleAuth

    auth = ConsoleAuth(Settings(console_password="right"))
    for secure in (False, True):
        ticket = asyncio.run(auth.check_password("right", "192.0.2.1"))
        cookie = auth.redeem(ticket, "/", secure=secure).headers["set-cookie"].lower()
        assert "samesite=lax" in cookie and "httponly" in cookie and ("secure" in cookie) == secure
    https = ConsoleAuth(Settings(console_password="right", public_base_url="https://render.studio.example"))

    class Plain:  # a request that reached uvicorn over plain HTTP (TLS ended at a proxy uvicorn does not trust)
        class url:
            scheme = "http"

    assert https.secure(Plain()) and not auth.secure(Plain())


def test_cluster_without_a_shared_folder_refuses_console_uploads_and_retries_from_the_urls(tmp_path):
    """With a Redis queue the worker may be on another machine: files kept on this box cannot reach it."""
    from appliance.jobdir import JobFolder
    from appliance.refs import InputRef
    from appliance.service import InputsNotShared, JobService, JobSpec

    def service(**cluster):
        settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", **cluster)
        return JobService(settings, JobStore(settings.jobs_db), RenderQueue(tmp_path / "queue.db")), settings

    remote, settings = service(queue_url="redis://queue.lan:6379/0")
    upload = JobSpec(image=InputRef.upload("photo.jpg"), texture=InputRef.parse("#aabbcc"))
    with pytest.raises(InputsNotShared, match="shared_data_dir"):
        remote.submit(upload)
    assert remote.store.active_count() == 0
    # A retry of a URL job does not point the new job at the files this box kept: the URL is fetched again.
    url = "http://example.com/house.jpg"
    job, _ = remote.submit(JobSpec(image=InputRef.parse(url), texture=InputRef.parse("#aabbcc")))
    JobFolder(settings, job.job_id).write("photo.jpg", b"\xff\xd8\xff kept download")
    assert remote.retry(job).image_url == url
    # One shared folder (or no Redis queue): uploads and kept files are fine.
    shared, settings = service(queue_url="redis://queue.lan:6379/0", shared_data_dir=True)
    again = shared.retry(job)
    assert again.image_url == "upload:photo.jpg"  # the kept download, linked into the new job's folder


def _upload_rig(tmp_path, shared_dir, stack, **settings_extra):
    """A worker factory over one job store, a real photo server and the Storage contract double, and a job
    creator: what the upload-retry tests below share."""
    import dataclasses

    from appliance.storage.supabase import SupabaseStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry
    from service_fixtures import SMALL_HOUSE, photo_server
    from supabase_storage_server import running_storage_server

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models",
                        fetch_allow_networks=("127.0.0.1",), upload_retry_delay=30, max_attempts=3, **settings_extra)
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    import numpy as np
    from PIL import Image

    from service_fixtures import SMALL_HOUSE_SIZE

    w, h = SMALL_HOUSE_SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[100:300, 100:500] = 255  # a client mask: no segmentation model needed
    extra = tmp_path / "www-extra"
    extra.mkdir()
    Image.fromarray(mask).save(extra / "mask.png")
    photos = stack.enter_context(photo_server(shared_dir / "data", extra))
    bucket = stack.enter_context(running_storage_server())

    def worker(name: str, **storage_options):
        storage = SupabaseStorage(bucket.url, bucket.service_key, **storage_options)
        storage.backoff_seconds = 0.05
        return Worker(dataclasses.replace(settings, worker_name=name), store, queue, storage,
                      Pipeline(None, LineGeometry()))

    def new_job() -> str:
        job, _ = store.create(job_id=str(uuid.uuid4()), image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#AA0000",
                              mask_url=f"{photos}/mask.png", options={}, project_id=None, user_id="u1", idempotency_key=None,
                              request_hash=None, queue_depth=5)
        return job.job_id

    return store, bucket, worker, new_job


def test_an_upload_given_up_on_and_redone_by_another_worker_is_not_deleted_later(tmp_path, shared_dir):
    """The first worker's upload gets no answer (given up on: its path is deleted at once and was also scheduled
    for a second delete); the job goes back to the queue and a second worker (cluster mode) uploads it. The
    first worker's delayed delete must not remove that upload: result_url still answers 200 after it was due."""
    import contextlib

    import httpx

    with contextlib.ExitStack() as stack:
        store, bucket, worker, new_job = _upload_rig(tmp_path, shared_dir, stack)
        first, second = worker("w1", retries=0), worker("w2")
        first.storage.orphan_recheck_seconds = 1.5
        job_id = new_job()
        bucket.drop_next(1)  # read, then the connection closed without an answer
        first.process(job_id)
        assert store.get(job_id).status == QUEUED
        second.process(job_id)  # the delayed message, taken by the other worker
        done = store.get(job_id)
        assert done.status == COMPLETED, done
        time.sleep(2.5)  # past the first worker's second delete
        answer = httpx.get(done.result_url)
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")


def test_a_job_canceled_while_its_upload_is_retried_ends_canceled(tmp_path, shared_dir):
    import contextlib
    import threading

    with contextlib.ExitStack() as stack:
        store, bucket, worker, new_job = _upload_rig(tmp_path, shared_dir, stack)
        w = worker("w1", retry_seconds=3.0)
        job_id = new_job()
        bucket.fail_for(60, status=503)  # an outage: the upload is retried for retry_seconds

        def cancel_once_uploading():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                job = store.get(job_id)
                if job.stage == "uploading":
                    store.request_cancel(job_id)
                    return
                time.sleep(0.02)

        canceller = threading.Thread(target=cancel_once_uploading)
        canceller.start()
        w.process(job_id)
        canceller.join()
        job = store.get(job_id)
        assert (job.status, job.error_code) == (FAILED, "canceled"), job
