"""GET /render/jobs: newest first, filters, cursor paging, limit bounds, behind the API key.

The job store's keyset paging on SQLite and PostgreSQL (ties on created_at included), the index the SQLite
planner picks, and the route through a real `render-appliance serve` (no worker: the jobs stay queued)."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from appliance.jobs import JobStore
from appliance.listing import decode_cursor
from service_fixtures import NO_POSTGRES, POSTGRES_URL, Appliance, free_port, postgres_schema, write_config

KEY = "listing-test-key"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = JobStore(tmp_path / "jobs.db")
        yield s
        s.close()
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with postgres_schema(POSTGRES_URL) as url:
        s = JobStore(url)
        yield s
        s.close()


def _add(store: JobStore, n: int, **fields) -> list[str]:
    ids = []
    for _ in range(n):
        job, _ = store.create(job_id=str(uuid.uuid4()), image_url="http://x/p.jpg", texture_url="#112233",
                              mask_url=None, options={}, project_id=fields.get("project_id"),
                              user_id=fields.get("user_id"), idempotency_key=None, request_hash=None,
                              queue_depth=100_000)
        ids.append(job.job_id)
    return ids


def test_store_pages_in_a_total_order_with_ties(store):
    project, user = str(uuid.uuid4()), str(uuid.uuid4())
    ids = _add(store, 130, project_id=project, user_id=user) + _add(store, 20)
    # Half of them share one created_at: the job_id breaks the tie, so no page repeats or skips a job.
    for job_id in ids[40:110]:
        store._write("UPDATE render_jobs SET created_at = ? WHERE job_id = ?", (1000.0, job_id))
    expected = [j.job_id for j in sorted((store.get(i) for i in ids), key=lambda j: (j.created_at, j.job_id),
                                         reverse=True)]
    seen, before = [], None
    while True:
        page = store.page(before=before, limit=30)
        seen += [j.job_id for j in page]
        if len(page) < 30:
            break
        before = (page[-1].created_at, page[-1].job_id)
    assert seen == expected
    mine = store.page(project_id=project, limit=1000)
    assert len(mine) == 130 and all(j.project_id == project for j in mine)
    assert [j.job_id for j in store.page(user_id=user, limit=1000)] == [j.job_id for j in mine]
    store.request_cancel(ids[0])
    assert [j.job_id for j in store.page(statuses=("failed",), error_code="canceled", limit=10)] == [ids[0]]
    assert len(store.page(statuses=("queued", "running"), limit=1000)) == 149


def test_sqlite_listing_uses_an_index(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    db = store._db
    for where in ("", "WHERE project_id = ? ", "WHERE user_id = ? ", "WHERE status IN (?, ?) "):
        params = {"": (), "WHERE project_id = ? ": ("p",), "WHERE user_id = ? ": ("u",)}.get(where, ("a", "b"))
        plan = " ".join(str(r[-1]) for r in db.execute(
            f"EXPLAIN QUERY PLAN SELECT job_id FROM render_jobs {where}ORDER BY created_at DESC, job_id DESC "
            "LIMIT 21", params).fetchall())
        assert "USING INDEX render_jobs_" in plan or "USING COVERING INDEX render_jobs_" in plan, (where, plan)
        if where != "WHERE status IN (?, ?) ":  # an IN list is merged; one filter reads its range in order
            assert "TEMP B-TREE" not in plan, (where, plan)
    store.close()


@pytest.mark.parametrize("raw", [b"[" * 6000, b'{"a": 1}', b"[1]", b'[1, 2, 3]', b"\xff\xfe", b'["1", "x"]'])
def test_a_cursor_not_made_by_the_listing_is_a_value_error(raw):
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(base64.urlsafe_b64encode(raw).decode())


def serve(tmp, model_dir, api_key: str | None) -> Appliance:
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port, **({"api_key": api_key} if api_key else {})},
        "queue": {"depth": 100},
        "worker": {"enabled": False},  # jobs stay queued: the listing sees a stable set
    })
    app = Appliance(config, port, tmp / "server.log", api_key=api_key).start(wait_ready=False)
    app.wait_alive(60)
    return app


@pytest.fixture(scope="module")
def api(tmp_path_factory, model_dir):
    app = serve(tmp_path_factory.mktemp("listing"), model_dir, KEY)
    yield app
    app.close()


def test_without_an_api_key_the_listing_is_disabled(tmp_path, model_dir):
    """No api_key: every route is open, so a listing would show anyone every user's jobs and result URLs."""
    app = serve(tmp_path, model_dir, None)
    try:
        job_id = app.submit({"image_url": "http://127.0.0.1:9/house.jpg", "texture_url": "#A0B0C0"}).json()["job_id"]
        r = app.http.get("/render/jobs")
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "listing_disabled" and "server.api_key" in r.json()["message"]
        assert job_id not in r.text
        assert app.http.get(f"/render/jobs/{job_id}").status_code == 200  # a job's own poll URL stays open
    finally:
        app.close()


def test_listing_route_pages_filters_and_validates(api):
    user_a, user_b, project = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    made = []
    for i in range(7):
        user = user_a if i % 2 == 0 else user_b
        r = api.submit({"image_url": "http://127.0.0.1:9/house.jpg", "texture_url": "#A0B0C0", "user_id": user,
                        **({"project_id": project} if user == user_a else {})})
        assert r.status_code == 201, r.text
        made.append(r.json()["job_id"])
    canceled = api.http.post(f"/render/jobs/{made[1]}/cancel").json()
    assert canceled["error_code"] == "canceled"

    ids, cursor, pages = [], None, 0
    while True:
        r = api.http.get("/render/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert len(page["jobs"]) <= 3
        ids += [j["job_id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == made[::-1] and pages == 3  # newest first, 3 + 3 + 1
    first = api.http.get("/render/jobs", params={"limit": 1}).json()["jobs"][0]
    assert first == api.job(made[-1])  # each entry is the job's poll body

    mine = api.http.get("/render/jobs", params={"project_id": project}).json()
    assert [j["job_id"] for j in mine["jobs"]] == made[::-2] and mine["next_cursor"] is None
    theirs = api.http.get("/render/jobs", params={"user_id": user_b, "status": "processing"}).json()["jobs"]
    assert [j["job_id"] for j in theirs] == [made[5], made[3]]
    assert all(j["status"] == "processing" and "queue_position" in j for j in theirs)
    assert [j["job_id"] for j in api.http.get("/render/jobs", params={"status": "canceled"}).json()["jobs"]] \
        == [made[1]]
    assert api.http.get("/render/jobs", params={"status": "completed"}).json() == {"jobs": [], "next_cursor": None}

    for params, field in (({"limit": 101}, "limit"), ({"limit": 0}, "limit"), ({"status": "done"}, "status"),
                          ({"user_id": "bob"}, "user_id"), ({"cursor": "not-a-cursor"}, "cursor"),
                          ({"colour": "red"}, "colour"),
                          # thousands of "[": deeper than json.loads can go; longer than any cursor
                          ({"cursor": base64.urlsafe_b64encode(b"[" * 6000).decode()}, "cursor"),
                          ({"cursor": "x" * 201}, "cursor")):
        r = api.http.get("/render/jobs", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"] == "validation_failed" and field in r.json()["details"], r.json()

    anonymous = httpx.get(f"{api.base}/render/jobs", trust_env=False)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
