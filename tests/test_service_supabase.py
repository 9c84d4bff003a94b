"""Results in Supabase Storage (the contract double tests/supabase_storage_server.py): a render lands in the
bucket; a bucket that refuses the upload makes the job fail with upload_failed."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from PIL import Image

from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, Appliance, free_port, photo_server, write_config
from supabase_storage_server import running_storage_server


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir):
    with photo_server(shared_dir / "data", tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="module")
def storage():
    with running_storage_server(buckets={"project-images": {"public": True,
                                                            "allowed_mime_types": ["image/png"]}}) as s:
        yield s


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir, storage):
    tmp = tmp_path_factory.mktemp("supa")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "fetch": {"allow_networks": ["127.0.0.1"]},
    })
    app = Appliance(config, port, tmp / "server.log",
                    env={"SUPABASE_URL": storage.url, "SUPABASE_SERVICE_ROLE_KEY": storage.service_key}).start()
    yield app
    app.close()


def test_result_uploaded_to_supabase(svc, storage, photos):
    user, project = str(uuid.uuid4()), str(uuid.uuid4())
    ready = svc.http.get("/readyz").json()
    assert ready["checks"]["storage"]["backend"] == "supabase"
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#8899AA", "user_id": user,
                    "project_id": project})
    job = svc.wait(r.json()["job_id"])
    assert job["status"] == "completed", job
    key = f"project-images/renders/{user}/{project}-{job['job_id']}.png"
    assert storage.objects[key].content_type == "image/png"
    assert job["result_url"].startswith(storage.url)
    image = Image.open(io.BytesIO(httpx.get(job["result_url"], trust_env=False).content))
    assert image.size == SMALL_HOUSE_SIZE


def test_upload_refused_is_upload_failed(svc, storage, photos):
    storage.buckets["project-images"].allowed_mime_types = ["image/jpeg"]  # the bucket now refuses PNG
    try:
        r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#8899AA"})
        job = svc.wait(r.json()["job_id"])
    finally:
        storage.buckets["project-images"].allowed_mime_types = ["image/png"]
    assert job["status"] == "failed" and job["error_code"] == "upload_failed", job
    assert "mime" in job["error_message"].lower() or "415" in job["error_message"], job
