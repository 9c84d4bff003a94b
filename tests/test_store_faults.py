"""Job store faults with real SQLite files and a real `render-appliance serve`: a locked, full, damaged or unreadable
store answers 503 store_unavailable or stops the start naming the file and the fix; never a 500 or a silent empty
store. A clean stop leaves the whole store in jobs.db; `render-appliance backup` copies it while it runs."""

from __future__ import annotations

import base64
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from appliance.jobs import JobStore, StoreUnavailable
from service_fixtures import NO_POSTGRES, POSTGRES_URL, ROOT, Appliance, free_port, postgres_schema, write_config

GOOD = {"image_url": "http://example.com/a.jpg", "texture_url": "#aabbcc"}


def new_job(store: JobStore) -> str:
    job_id = str(uuid.uuid4())
    store.create(job_id=job_id, image_url=GOOD["image_url"], texture_url=GOOD["texture_url"], mask_url=None,
                 options={}, project_id=None, user_id=None, idempotency_key=None, request_hash=None, queue_depth=100_000)
    return job_id


def rows(path) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0]
    finally:
        conn.close()


# --- the store alone ---------------------------------------------------------------------------------------------

def test_a_damaged_store_is_refused_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / "jobs.db"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreUnavailable) as caught:
        JobStore(path)
    assert str(path) in str(caught.value) and "restore a backup" in str(caught.value)


def test_a_deleted_write_ahead_log_is_refused_not_started_empty(tmp_path):
    path = tmp_path / "jobs.db"
    running = JobStore(path)  # a crashed process: its -wal and -shm stay
    ids = [new_job(running) for _ in range(3)]
    (tmp_path / "jobs.db-wal").unlink()  # an operator "cleaning up"
    with pytest.raises(StoreUnavailable) as caught:
        JobStore(path)
    assert "jobs.db-wal is missing" in str(caught.value) and "delete jobs.db-shm" in str(caught.value)
    running.close()
    assert ids


def test_an_unopenable_store_is_refused_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / "jobs.db"
    path.mkdir()  # a folder where the file should be: SQLite cannot open it (root ignores file modes)
    with pytest.raises(StoreUnavailable) as caught:
        JobStore(path)
    assert str(path) in str(caught.value) and "readable and writable" in str(caught.value)


def test_an_unreachable_postgresql_store_is_refused_with_the_fix():
    with pytest.raises(StoreUnavailable) as caught:
        JobStore(f"postgresql://render:secret@127.0.0.1:{free_port()}/render")
    assert "cluster.database_url" in str(caught.value) and "secret" not in str(caught.value)


def test_a_locked_store_raises_store_unavailable_and_reads_go_on(tmp_path):
    store = JobStore(tmp_path / "jobs.db", busy_timeout=0.2)
    kept = new_job(store)
    holder = sqlite3.connect(str(tmp_path / "jobs.db"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing (a stuck tool, a long transaction)
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            new_job(store)
        assert store.get(kept) is not None  # WAL: readers never wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    new_job(store)


def test_a_full_store_raises_store_unavailable(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    pages = store._db.raw.execute("PRAGMA page_count").fetchone()[0]
    store._db.raw.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(StoreUnavailable, match="full"):
        for _ in range(200):
            new_job(store)


def test_checkpoint_leaves_every_job_in_the_file_itself(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    ids = [new_job(store) for _ in range(5)]
    store.checkpoint()
    alone = tmp_path / "copy" / "jobs.db"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "jobs.db", alone)  # the file without its -wal: what a naive backup copies
    assert rows(alone) == len(ids)


def test_backup_is_consistent_while_jobs_are_written(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for _ in range(20):
        new_job(store)
    stop = threading.Event()

    def writer() -> None:
        other = JobStore(tmp_path / "jobs.db")
        while not stop.is_set():
            new_job(other)
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        count = store.backup(tmp_path / "backup.db")
    finally:
        stop.set()
        thread.join()
    assert count >= 20 and rows(tmp_path / "backup.db") == count
    assert not (tmp_path / "backup.db-wal").exists()
    copy = sqlite3.connect(str(tmp_path / "backup.db"))
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file, as written


# --- a real server -------------------------------------------------------------------------------------------------

def api_server(tmp_path, **store_keys) -> Appliance:
    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "paths": {"data_dir": str(tmp_path / "data"), "model_dir": str(tmp_path / "models")},
        "server": {"port": port},
        "store": store_keys,
        "worker": {"enabled": False},
    })
    app = Appliance(config, port, tmp_path / "server.log").start(wait_ready=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if app.proc.poll() is not None:
            return app
        try:
            if app.http.get("/healthz").status_code == 200:
                return app
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(app.log_tail())


def test_a_locked_store_answers_503_with_retry_after(tmp_path):
    app = api_server(tmp_path, busy_timeout_seconds=0.3)
    try:
        job_id = app.submit(GOOD).json()["job_id"]
        holder = sqlite3.connect(str(tmp_path / "data" / "jobs.db"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            r = app.submit(GOOD)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_unavailable" and int(r.headers["Retry-After"]) > 0
            assert str(tmp_path) not in r.text  # no paths to clients
            cancel = app.http.post(f"/render/jobs/{job_id}/cancel")
            assert cancel.status_code == 503 and cancel.json()["error"] == "store_unavailable"
            assert app.http.get(f"/render/jobs/{job_id}").status_code == 200  # reads go on
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert app.submit(GOOD).status_code == 201
    finally:
        app.close()


def test_low_disk_space_refuses_jobs_and_fails_readiness(tmp_path):
    app = api_server(tmp_path, min_free_mb=10_000_000)  # more than any disk here has free
    try:
        r = app.submit(GOOD)
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        ready = app.http.get("/readyz")
        check = ready.json()["checks"]["job_store"]
        assert ready.status_code == 503 and not check["ok"] and "MB free" in check["reason"], check
    finally:
        app.close()


def test_start_refuses_a_damaged_store_naming_it(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jobs.db").write_bytes(b"\x00garbage" * 1000)
    app = api_server(tmp_path)
    try:
        assert app.proc.wait(60) != 0
        tail = app.log_tail()
        assert str(tmp_path / "data" / "jobs.db") in tail and "restore a backup" in tail, tail
        assert "Traceback" not in tail, tail
    finally:
        app.close()


def test_a_clean_stop_leaves_the_jobs_in_jobs_db_and_a_backup_restores(tmp_path):
    app = api_server(tmp_path)
    try:
        ids = [app.submit(GOOD).json()["job_id"] for _ in range(3)]
        backup = subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(app.config), "backup",
                                 str(tmp_path / "backup.db")], cwd=ROOT, env=app.env, capture_output=True, text=True,
                                timeout=60)
        assert backup.returncode == 0 and "backed up 3 jobs" in backup.stdout, backup.stderr
        app.stop()
    finally:
        app.close()
    data = tmp_path / "data"
    wal = data / "jobs.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed at the stop
    alone = tmp_path / "alone.db"
    shutil.copy(data / "jobs.db", alone)
    assert rows(alone) == 3
    # Restore as the README says: stopped, the backup over jobs.db, its -wal/-shm removed, start.
    (data / "jobs.db").write_bytes((tmp_path / "backup.db").read_bytes())
    for suffix in ("-wal", "-shm"):
        (data / f"jobs.db{suffix}").unlink(missing_ok=True)
    again = api_server(tmp_path)
    try:
        assert all(again.http.get(f"/render/jobs/{i}").status_code == 200 for i in ids)
    finally:
        again.close()


@pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)
def test_processes_opening_a_fresh_postgres_store_at_once_all_start():
    """A cluster's API boxes and workers start together on an empty database: each one creates and migrates the
    schema, and none may fail on another's half-done CREATE / ALTER TABLE."""
    for _round in range(3):
        with postgres_schema(POSTGRES_URL) as url:
            errors: list[BaseException] = []
            stores: list[JobStore] = []
            go = threading.Barrier(6)

            def start() -> None:
                go.wait()
                try:
                    stores.append(JobStore(url))
                except BaseException as exc:  # noqa: BLE001 - any failure to start is the bug
                    errors.append(exc)

            threads = [threading.Thread(target=start) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            for store in stores:
                store.close()
            assert not errors, errors


# --- a real server on PostgreSQL: reads that wait on a lock ------------------------------------------------------

def pg_server(tmp_path, database_url: str, **sections) -> Appliance:
    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "paths": {"data_dir": str(tmp_path / "data"), "model_dir": str(tmp_path / "models")},
        "server": {"port": port},
        "cluster": {"database_url": database_url},
        "worker": {"enabled": False},  # jobs stay queued
        **sections,
    })
    app = Appliance(config, port, tmp_path / "server.log").start(wait_ready=False)
    app.wait_alive()
    return app


@pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)
def test_metrics_answer_503_while_the_store_cannot_be_read(tmp_path):
    """A scrape whose store figures cannot be read answers like the job routes (503 store_unavailable +
    Retry-After), not 500. The server's sessions give up on a lock after 0.5 s (lock_timeout), as a database
    that an operator holds for a migration would make them."""
    import psycopg

    with postgres_schema(POSTGRES_URL) as url:
        app = pg_server(tmp_path, url + "%20-clock_timeout%3D500")
        try:
            assert app.submit(GOOD).status_code == 201
            assert app.http.get("/metrics").status_code == 200
            with psycopg.connect(url) as conn:
                conn.execute("LOCK TABLE render_jobs IN ACCESS EXCLUSIVE MODE")
                r = app.http.get("/metrics")
                conn.rollback()
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_unavailable" and int(r.headers["Retry-After"]) > 0
            assert "render_queue_depth 1.0" in app.http.get("/metrics").text  # the next scrape is whole again
        finally:
            app.close()


@pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)
def test_a_cancel_whose_view_waits_on_the_store_stalls_no_other_request(tmp_path):
    """The cancel answer reads the job's webhook deliveries (PostgreSQL round trips that can wait on locks): built
    in the thread pool, so /healthz answers meanwhile."""
    import psycopg

    with postgres_schema(POSTGRES_URL) as url:
        app = pg_server(tmp_path, url, webhooks={"secret": "whsec_" + base64.b64encode(b"k" * 32).decode(), "allow_networks": ["127.0.0.1"]})
        try:
            made = app.submit({**GOOD, "webhook_url": "http://127.0.0.1:9/hook"})
            assert made.status_code == 201, made.text
            job_id = made.json()["job_id"]
            answers: dict[str, object] = {}

            def call(name: str, method: str, path: str) -> None:
                started = time.monotonic()
                answers[name] = app.http.request(method, path, timeout=30).status_code
                answers[name + "_s"] = time.monotonic() - started

            with psycopg.connect(url) as conn:  # the deliveries held (a long migration or backup)
                conn.execute("LOCK TABLE render_webhook_deliveries IN ACCESS EXCLUSIVE MODE")
                slow = threading.Thread(target=call, args=("cancel", "POST", f"/render/jobs/{job_id}/cancel"))
                held_from = time.monotonic()
                slow.start()
                time.sleep(0.5)  # the cancel's view is waiting on the lock now
                fast = threading.Thread(target=call, args=("health", "GET", "/healthz"))
                fast.start()
                fast.join(3.0)
                time.sleep(max(0.0, held_from + 3.0 - time.monotonic()))
                conn.rollback()
            slow.join(30)
            fast.join(30)
            assert answers["cancel"] == 200 and answers["health"] == 200, answers
            assert answers["health_s"] < 2.5, answers  # not held until the lock went (about 3 s)
        finally:
            app.close()
