"""Result storage: the local folder backend, and the Supabase backend against the Storage contract double."""

from __future__ import annotations

import io
import time
import urllib.parse

import httpx
import pytest
from PIL import Image

from appliance.storage import ResultStorage, UploadError, object_path
from appliance.storage.local import LocalStorage
from appliance.storage.supabase import SupabaseStorage
from supabase_storage_server import make_key, running_storage_server

BUCKET = "project-images"


@pytest.fixture(scope="module")
def png(shared_dir) -> bytes:
    """A real render-sized PNG made from one of the shared house photos."""
    with Image.open(shared_dir / "data" / "houses" / "house_113.jpg") as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "PNG")
    return out.getvalue()


# --- object paths ---------------------------------------------------------------------------------------------


def test_object_path_layout():
    assert object_path("job1", "user-7", "proj_3") == "renders/user-7/proj_3-job1.png"
    assert object_path("job1", "user-7", None) == "renders/user-7/job1.png"
    assert object_path("job1", None, "proj_3") == "renders/anonymous/proj_3-job1.png"
    assert object_path("job1", None, None) == "renders/anonymous/job1.png"


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "a\\b", "x" * 129, "é"])
def test_object_path_refuses_unsafe_ids(bad):
    with pytest.raises(ValueError):
        object_path("job1", bad, None)
    with pytest.raises(ValueError):
        object_path(bad, None, None)


# --- local ----------------------------------------------------------------------------------------------------


def test_local_save_url_and_resolve(tmp_path, png):
    store = LocalStorage(tmp_path, "http://appliance.local:8000/")
    assert isinstance(store, ResultStorage)
    url = store.save("job1", "u1", "p1", png)
    assert url == "http://appliance.local:8000/results/renders/u1/p1-job1.png"
    relative = urllib.parse.urlsplit(url).path.removeprefix("/results/")
    path = store.resolve(relative)
    assert path is not None and path.read_bytes() == png
    assert [p.name for p in path.parent.iterdir()] == ["p1-job1.png"]  # no temp file left behind
    assert store.check() is None

    store.save("job1", "u1", "p1", png[:100] + b"x")  # overwrite (atomically replaced)
    assert path.read_bytes() == png[:100] + b"x"
    store.delete("job1", "u1", "p1")
    assert store.resolve(relative) is None
    store.delete("job1", "u1", "p1")  # best effort: a second delete is fine


@pytest.mark.parametrize(
    "relative",
    ["../secret.txt", "renders/../../secret.txt", "/etc/passwd", "renders/u1/..", "renders//u1/p1-job1.png",
     "renders\\u1\\p1-job1.png", "renders/u1/.p1-job1.png.tmp", "renders/u1/link.png", "", "renders/u1"],
)
def test_local_resolve_refuses_traversal(tmp_path, png, relative):
    root = tmp_path / "root"
    store = LocalStorage(root, "http://x")
    store.save("job1", "u1", "p1", png)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "renders/u1/.p1-job1.png.tmp").write_bytes(png)
    (root / "renders/u1/link.png").symlink_to(tmp_path / "secret.txt")
    assert store.resolve("renders/u1/p1-job1.png") is not None
    assert store.resolve(relative) is None


def test_local_refuses_non_png(tmp_path):
    with pytest.raises(ValueError):
        LocalStorage(tmp_path, "http://x").save("job1", None, None, b"GIF89a....")


def test_local_unwritable_root(tmp_path, png):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = LocalStorage(blocker / "results", "http://x")
    assert store.check() is not None
    with pytest.raises(UploadError, match="could not write result"):
        store.save("job1", None, None, png)


# --- supabase -------------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    with running_storage_server(
        buckets={BUCKET: {"public": True, "allowed_mime_types": ["image/png"]}, "private": {"public": False}}
    ) as srv:
        yield srv


def fast(storage: SupabaseStorage) -> SupabaseStorage:
    storage.backoff_seconds = 0.01
    return storage


def test_supabase_upload_and_public_url(server, png):
    store = SupabaseStorage(server.url, server.service_key)
    assert isinstance(store, ResultStorage)
    url = store.save("job1", "u1", "p1", png)
    assert url == f"{server.url}/storage/v1/object/public/{BUCKET}/renders/u1/p1-job1.png"
    stored = server.objects[f"{BUCKET}/renders/u1/p1-job1.png"]
    assert stored.content_type == "image/png" and stored.body == png
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content == png
    assert store.check() is None


def test_supabase_signed_url(server, png):
    store = SupabaseStorage(server.url, server.service_key, bucket="private", signed_url_seconds=60)
    url = store.save("job2", None, None, png)
    assert url.startswith(f"{server.url}/storage/v1/object/sign/private/renders/anonymous/job2.png?token=")
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == png
    assert httpx.get(url.split("?")[0].replace("/sign/", "/public/")).status_code == 400  # private: no public URL
    assert store.check() is None
    assert "not public" in SupabaseStorage(server.url, server.service_key, bucket="private").check()


def test_supabase_duplicate_is_overwritten_by_upsert(server, png):
    store = SupabaseStorage(server.url, server.service_key)
    store.save("job3", "u1", None, png[:64])
    store.save("job3", "u1", None, png)
    assert server.objects[f"{BUCKET}/renders/u1/job3.png"].body == png
    assert [r[2] for r in server.requests] == [200, 200]


def test_supabase_missing_bucket_fails_without_retry(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, bucket="nope"))
    with pytest.raises(UploadError, match="^Supabase Storage refused the upload: 404 Bucket not found$"):
        store.save("job4", None, None, png)
    assert len(server.requests) == 1
    assert "Bucket not found" in store.check()


@pytest.mark.parametrize(
    "key, message",
    [
        (make_key("service_role", secret="another-secret-of-at-least-32-characters!"), "403 signature verification failed"),
        ("not-a-jwt", "403 Invalid Compact JWS"),
        (make_key("service_role", expires_in=-10), '403 "exp" claim timestamp check failed'),
        ("ANON", "403 new row violates row-level security policy"),
    ],
)
def test_supabase_bad_key_fails_without_retry(server, png, key, message):
    store = fast(SupabaseStorage(server.url, server.anon_key if key == "ANON" else key))
    with pytest.raises(UploadError, match=f"^Supabase Storage refused the upload: {message}$"):
        store.save("job5", None, None, png)
    assert len(server.requests) == 1
    assert not server.objects


def test_supabase_mime_type_refused_by_bucket(png):
    with running_storage_server(buckets={BUCKET: {"public": True, "allowed_mime_types": ["image/jpeg"]}}) as srv:
        with pytest.raises(UploadError, match="415 mime type image/png is not supported"):
            fast(SupabaseStorage(srv.url, srv.service_key)).save("job6", None, None, png)
        assert len(srv.requests) == 1


@pytest.mark.parametrize("in_body", [False, True], ids=["gateway-5xx", "status-in-body"])
def test_supabase_5xx_twice_then_success(server, png, in_body):
    store = fast(SupabaseStorage(server.url, server.service_key, retries=2))
    server.fail_next(2, status=503, in_body=in_body)
    url = store.save("job7", None, None, png)
    assert [r[2] for r in server.requests] == ([503, 503, 200] if not in_body else [400, 400, 200])
    assert httpx.get(url).content == png


def test_supabase_5xx_forever_gives_up_after_bounded_attempts(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, retries=2))
    server.fail_next(100, status=502)
    start = time.monotonic()
    with pytest.raises(UploadError, match="^Supabase Storage upload failed after 3 attempts: 502"):
        store.save("job8", None, None, png)
    assert len(server.requests) == 3
    assert time.monotonic() - start < 5  # bounded (a loaded CI box is slow, but not 100 attempts slow)


def test_supabase_dropped_connection_is_retried(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, retries=2))
    server.drop_next(1)
    store.save("job9", None, None, png)
    assert [r[2] for r in server.requests] == ["dropped", 200]
    assert f"{BUCKET}/renders/anonymous/job9.png" in server.objects


def test_supabase_unreachable(png):
    with running_storage_server() as srv:
        url = srv.url
    store = fast(SupabaseStorage(url, "key", retries=1, timeout=2))
    with pytest.raises(UploadError, match="^Supabase Storage upload failed after 2 attempts: ConnectError"):
        store.save("job10", None, None, png)
    assert "unreachable" in store.check()


def test_supabase_delete(server, png):
    store = SupabaseStorage(server.url, server.service_key)
    store.save("job11", "u1", "p1", png)
    store.delete("job11", "u1", "p1")
    assert not server.objects
    store.delete("job11", "u1", "p1")  # already gone: fine
    server.drop_next(5)
    store.delete("job11", "u1", "p1")  # network trouble: logged, not raised


def test_supabase_upload_outlasts_a_storage_restart(server, png):
    """A restart answers 5xx for a few seconds (3-8 s on the recorded box): the retry window covers it."""
    store = fast(SupabaseStorage(server.url, server.service_key, retry_seconds=10))
    server.fail_for(1.5, status=503)
    started = time.monotonic()
    url = store.save("job12", None, None, png)
    assert httpx.get(url).content == png
    assert 1.4 < time.monotonic() - started < 8
    assert [r[2] for r in server.requests][-1] == 200 and len(server.requests) > 3


def test_supabase_default_retry_window_is_at_least_a_minute(server):
    assert SupabaseStorage(server.url, server.service_key).retry_seconds >= 60


def test_supabase_retry_window_is_bounded(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, retry_seconds=0.5))
    server.fail_for(30, status=503)
    started = time.monotonic()
    with pytest.raises(UploadError, match="^Supabase Storage upload failed after [0-9]+ attempts: 503"):
        store.save("job13", None, None, png)
    assert time.monotonic() - started < 6


def test_supabase_retries_stop_at_the_jobs_deadline(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, retry_seconds=60))
    server.fail_for(30, status=503)
    started = time.monotonic()
    with pytest.raises(UploadError, match="failed after [0-9]+ attempts: 503"):
        store.save("job18", None, None, png, deadline=started + 1.0)
    assert time.monotonic() - started < 4  # the 1 s deadline, not the 60 s window


def test_supabase_upload_given_up_on_leaves_no_orphan(server, png):
    """The client times out, the stalled server finishes the upload later: the path is deleted again after it."""
    store = fast(SupabaseStorage(server.url, server.service_key, timeout=0.5, retry_seconds=0.2))
    store.orphan_recheck_seconds = 2.5
    server.stall_next(1, 1.5)
    with pytest.raises(UploadError, match="failed after 1 attempts: timed out"):
        store.save("job14", None, None, png)
    key = f"{BUCKET}/renders/anonymous/job14.png"
    deadline = time.monotonic() + 5
    while key not in server.objects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert key in server.objects  # the late upload landed...
    while key in server.objects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert key not in server.objects  # ...and was deleted


def test_supabase_a_later_upload_of_the_path_cancels_the_second_delete(server, png):
    store = fast(SupabaseStorage(server.url, server.service_key, retries=0))
    store.orphan_recheck_seconds = 1.0
    server.drop_next(1)
    with pytest.raises(UploadError):
        store.save("job15", None, None, png)
    store.save("job15", None, None, png)
    time.sleep(1.5)
    assert f"{BUCKET}/renders/anonymous/job15.png" in server.objects


def test_supabase_result_over_a_size_limit_fails_before_sending(png):
    with running_storage_server(buckets={BUCKET: {"public": True, "file_size_limit": 1000}}) as srv:
        store = SupabaseStorage(srv.url, srv.service_key)
        assert store.check() is None  # reads the bucket (and its limit) once
        with pytest.raises(UploadError, match="over bucket 'project-images''s file_size_limit"):
            store.save("job16", None, None, png)
        assert [r[0] for r in srv.requests] == ["GET"]  # nothing was sent
    with running_storage_server() as srv:
        store = SupabaseStorage(srv.url, srv.service_key, max_upload_bytes=1000)
        with pytest.raises(UploadError, match="standard upload limit"):
            store.save("job17", None, None, png)
        assert not srv.requests
        srv.upload_limit = 1000  # the server itself refuses, as the recorded one does above its limit
        with pytest.raises(UploadError, match="413"):
            SupabaseStorage(srv.url, srv.service_key).save("job17", None, None, png)


def test_retention_deletes_supabase_objects_of_pruned_jobs(server, png, tmp_path):
    import uuid

    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.worker import Worker

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", retention_hours=1)
    jobs = JobStore(settings.jobs_db)
    storage = SupabaseStorage(server.url, server.service_key)
    worker = Worker(settings, jobs, RenderQueue(settings.queue_db), storage, None)
    ids = []
    for outcome in ("completed", "upload_failed"):
        job_id = str(uuid.uuid4())
        jobs.create(job_id=job_id, image_url="http://example.com/a.jpg", texture_url="#aabbcc", mask_url=None,
                    options={}, project_id=None, user_id=None, idempotency_key=None, request_hash=None, queue_depth=9)
        jobs.claim(job_id, "w", 30)
        url = storage.save(job_id, None, None, png)  # an upload_failed job's object: one that landed late
        if outcome == "completed":
            jobs.complete(job_id, "w", result_url=url)
        else:
            jobs.fail(job_id, "w", "upload_failed", "gave up")
        ids.append(job_id)
    assert worker.prune(now=time.time() + 2 * 3600) == 2
    assert not server.objects


# --- the double itself answers as SUPABASE_STORAGE.md records -----------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plain create_client: storage3's own timeout/verify args
def test_double_matches_recorded_wire_behaviour(server, png):
    from storage3.exceptions import StorageApiError
    from supabase import create_client

    base = f"{server.url}/storage/v1"
    auth = {"Authorization": f"Bearer {server.service_key}"}
    files = {"file": ("a.png", png, "image/png")}

    def post(path, headers, **kw):
        return httpx.post(f"{base}/object/{path}", headers=headers, **kw)

    assert post(f"{BUCKET}/a.png", auth, files=files).status_code == 200
    recorded = [
        (post(f"{BUCKET}/a.png", auth, files=files),
         {"statusCode": "409", "error": "Duplicate", "message": "The resource already exists", "code": "KeyAlreadyExists"}),
        (post("nope/a.png", auth, files=files),
         {"statusCode": "404", "error": "Bucket not found", "message": "Bucket not found", "code": "NoSuchBucket"}),
        (httpx.get(f"{base}/object/public/{BUCKET}/missing.png"),
         {"statusCode": "404", "error": "not_found", "message": "Object not found", "code": "NoSuchKey"}),
        (post(f"{BUCKET}/b.png", {"Authorization": "Bearer garbage"}, files=files),
         {"statusCode": "403", "error": "Unauthorized", "message": "Invalid Compact JWS", "code": "AccessDenied"}),
        (post(f"{BUCKET}/b.png", {}, files=files),
         {"statusCode": "400", "message": "headers must have required property 'authorization'", "code": "InvalidRequest"}),
        (post(f"{BUCKET}/b.txt", auth, files={"file": ("b.txt", b"hi", "text/plain;charset=UTF-8")}),
         {"statusCode": "415", "error": "invalid_mime_type", "message": "mime type text/plain is not supported",
          "code": "InvalidMimeType"}),
    ]
    for answer, body in recorded:
        assert answer.status_code == 400
        assert answer.json() == body
    anon = post(f"{BUCKET}/b.png", {"Authorization": f"Bearer {server.anon_key}"}, files=files).json()
    assert (anon["statusCode"], anon["message"]) == ("403", "new row violates row-level security policy")

    # what storage3 makes of it: StorageApiError with the status as a string
    with pytest.raises(StorageApiError) as caught:
        create_client(server.url, server.service_key).storage.from_(BUCKET).upload("a.png", png, {"content-type": "image/png"})
    assert (caught.value.status, caught.value.code) == ("409", "Duplicate")
    # the client's default type is text/plain, stored as told (no sniffing) when the bucket allows it
    create_client(server.url, server.service_key).storage.from_("private").upload("c.png", png)
    assert server.objects["private/c.png"].content_type == "text/plain;charset=UTF-8"
