"""Several surfaces through the real service: a served `render-appliance serve` with its consumer, photos, swatches
and masks over real HTTP, the real embedded pipeline. Each surface changes where its mask says and nothing else."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from pipeline.project import feather_alpha
from service_fixtures import SMALL_HOUSE, SWATCH, Appliance, free_port, photo_server, write_config

ROOF_SWATCH = "textures/roof_slates_polyhaven_roof_slates_02.png"


def region_masks(size):
    """Disjoint masks on the 640x427 photo: roof band, wall, a trim strip under it, a door cut out of the wall."""
    w, h = size
    masks = {name: np.zeros((h, w), bool) for name in ("roof", "wall", "trim", "door")}
    masks["roof"][40:110, 80:560] = True
    masks["wall"][125:330, 80:560] = True
    masks["trim"][345:360, 80:560] = True
    masks["door"][200:330, 300:360] = True
    masks["wall"] &= ~masks["door"]
    return masks


@pytest.fixture(scope="module")
def house(shared_dir):
    return np.asarray(Image.open(shared_dir / "data" / SMALL_HOUSE).convert("RGB"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_dir, house):
    extra = tmp_path_factory.mktemp("surface-files")
    for name, mask in region_masks((house.shape[1], house.shape[0])).items():
        Image.fromarray(mask.astype(np.uint8) * 255).save(extra / f"mask-{name}.png")
    Image.new("L", (64, 64), 255).save(extra / "small-mask.png")
    with photo_server(shared_dir / "data", extra) as base:
        yield base


@pytest.fixture(scope="module")
def svc(tmp_path_factory, model_dir, photos):
    tmp = tmp_path_factory.mktemp("svc-surfaces")
    port = free_port()
    config = write_config(tmp / "config.toml", {
        "paths": {"data_dir": str(tmp / "data"), "model_dir": str(model_dir)},
        "server": {"port": port},
        "fetch": {"allow_networks": ["127.0.0.1"]},
    })
    app = Appliance(config, port, tmp / "server.log").start()
    app.data_dir, app.config_path = tmp / "data", config
    yield app
    app.close()


def result_image(svc, job):
    assert job["status"] == "completed", job
    return np.asarray(Image.open(io.BytesIO(svc.http.get(job["result_url"]).content)).convert("RGB"))


def test_wall_trim_roof_door_each_where_its_mask_says(svc, photos, house):
    masks = region_masks((house.shape[1], house.shape[0]))
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": f"{photos}/{SWATCH}",
                    "mask_url": f"{photos}/mask-wall.png", "surfaces": [
                        {"surface": "door", "texture_url": "#A01818", "mask_url": f"{photos}/mask-door.png"},
                        {"surface": "roof", "texture_url": f"{photos}/{ROOF_SWATCH}",
                         "mask_url": f"{photos}/mask-roof.png"},
                        {"surface": "trim", "texture_url": "#F4F1EA", "mask_url": f"{photos}/mask-trim.png"}]})
    assert r.status_code == 201, r.text
    job = svc.wait(r.json()["job_id"], timeout=90)
    out = result_image(svc, job).astype(int)
    # back to front, whatever the request's order
    assert sorted(job["painted"], key=lambda n: job["painted"][n]["order"]) == ["roof", "wall", "trim", "door"]
    assert {n: p["pixels"] for n, p in job["painted"].items()} == {n: int(m.sum()) for n, m in masks.items()}
    reach = np.zeros(house.shape[:2], bool)
    for name, mask in masks.items():
        reach |= feather_alpha(mask) > 0
        core = mask & (feather_alpha(mask) == 1)
        changed = np.abs(out[core] - house[core].astype(int)).sum(1) > 0
        assert changed.mean() > 0.95, name
    assert np.array_equal(out[~reach], house[~reach])  # nothing else changed, bit for bit
    door = out[masks["door"] & (feather_alpha(masks["door"]) == 1)].mean(0)
    trim = out[masks["trim"] & (feather_alpha(masks["trim"]) == 1)].mean(0)
    assert door[0] > door[1] + 40 and door[0] > door[2] + 40  # red
    assert trim.min() > 150  # off-white
    # the job's folder keeps each surface's swatch and the mask it was painted with (for the console)
    folder = svc.data_dir / "jobs" / job["job_id"]
    assert (folder / "swatch-roof.png").is_file()
    for name in ("roof", "trim", "door"):
        kept = np.asarray(Image.open(folder / f"mask-{name}.png")) > 127
        assert np.array_equal(kept, masks[name])

    # Another set of surfaces on the same photo, through the job service (what the console does): the door blue,
    # the roof as it was, no trim. Inputs come from the first job's folder, nothing is downloaded again.
    from appliance.config import load_settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.refs import InputRef, RefKind
    from appliance.service import JobService, SurfaceSpec, job_surfaces

    settings = load_settings(svc.config_path, env={})
    store = JobStore(settings.jobs_db)
    try:
        service = JobService(settings, store, RenderQueue(settings.queue_db))
        first = store.get(job["job_id"])
        roof = next(e for e in job_surfaces(first) if e.surface == "roof")
        door = next(e for e in job_surfaces(first) if e.surface == "door")
        derived = service.with_surfaces(first, [roof, SurfaceSpec("door", InputRef.parse("#1030A0"),
                                                                   mask=door.mask)])
        assert derived.image_url.startswith("upload:") and [e["surface"] for e in derived.surfaces] == ["roof", "door"]
        assert all(e.texture.kind is RefKind.UPLOAD or e.texture.is_colour for e in job_surfaces(derived))
        again = svc.wait(derived.job_id, timeout=90)
        second = result_image(svc, again).astype(int)
    finally:
        store.close()
    assert set(again["painted"]) == {"roof", "wall", "door"}
    trim_core = masks["trim"] & (feather_alpha(masks["wall"]) == 0)
    assert np.array_equal(second[trim_core], house[trim_core])  # trim is back to the photo
    core = {n: m & (feather_alpha(m) == 1) for n, m in masks.items()}
    assert np.array_equal(second[core["roof"]], out[core["roof"]]) and np.array_equal(second[core["wall"]],
                                                                                        out[core["wall"]])
    blue = second[core["door"]].mean(0)
    assert blue[2] > blue[0] + 40


def test_parser_masks_and_a_surface_the_photo_lacks(svc, photos, house):
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99", "surfaces": [
        {"surface": "trim", "texture_url": "#F4F1EA"}, {"surface": "roof", "texture_url": "#4A3B30"},
        {"surface": "garage_door", "texture_url": "#202020"}, {"surface": "door", "texture_url": "#A01818"}]})
    assert r.status_code == 201, r.text
    job = svc.wait(r.json()["job_id"], timeout=90)
    out = result_image(svc, job)
    folder = svc.data_dir / "jobs" / job["job_id"]
    reach = np.zeros(house.shape[:2], bool)
    for name in job["painted"]:
        mask = np.asarray(Image.open(folder / ("mask.png" if name == "wall" else f"mask-{name}.png"))) > 127
        assert mask.sum() == job["painted"][name]["pixels"] and job["painted"][name]["mask"] == "parser"
        reach |= feather_alpha(mask) > 0
    assert "wall" in job["painted"] and len(job["painted"]) >= 3
    assert np.array_equal(out[~reach], house[~reach])
    missing = {"trim", "roof", "garage_door", "door"} - set(job["painted"])
    for name in missing:  # this house (an entry with columns, no garage) lacks some parts: a warning each
        assert any(w.startswith(f"surface {name}: not painted") for w in job["warnings"]), job["warnings"]


@pytest.mark.parametrize("surfaces, field", [
    ([{"surface": "chimney", "texture_url": "#FFFFFF"}], "surfaces[0].surface"),
    ([{"surface": "shutters", "texture_url": "#FFFFFF"}], "surfaces[0].surface"),
    ([{"surface": "trim", "texture_url": "#FFFFFF"}, {"surface": "trim", "texture_url": "#000000"}],
     "surfaces[1].surface"),
    ([{"surface": "roof", "texture_url": "ftp://example.com/s.jpg"}], "surfaces[0].texture_url"),
    ([{"surface": "roof", "texture_url": "#FFF"}], "surfaces[0].texture_url"),
    ([{"surface": "roof", "texture_url": "#FFFFFF", "mask_url": "file:///etc/passwd"}], "surfaces[0].mask_url"),
    ([{"surface": "roof", "texture_url": "#FFFFFF", "swatch_width_m": 0}], "surfaces[0].swatch_width_m"),
    ([{"surface": "roof"}], "surfaces[0].texture_url"),
    ([{"surface": "roof", "texture_url": "#FFFFFF", "colour": 1}], "surfaces[0].colour"),
    ([{"surface": "wall", "texture_url": "#FFFFFF"}], "surfaces[0].texture_url"),
    ({"surface": "roof"}, "surfaces"),
])
def test_surface_validation_400_names_the_field(svc, surfaces, field):
    r = svc.submit({"image_url": "http://example.com/a.jpg", "texture_url": "#AABBCC", "surfaces": surfaces})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "validation_failed" and field in r.json()["details"], r.json()


def test_a_wall_entry_with_the_top_level_texture_is_the_wall(svc, photos):
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99", "surfaces": [
        {"surface": "wall", "texture_url": "#7a8b99", "mask_url": f"{photos}/mask-wall.png"}]})
    assert r.status_code == 201, r.text
    job = svc.wait(r.json()["job_id"], timeout=90)
    assert job["status"] == "completed" and job["backends"]["segment"] == "client-mask", job


def test_a_surface_download_failure_names_the_surface(svc, photos):
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99", "surfaces": [
        {"surface": "roof", "texture_url": f"{photos}/textures/nope-{uuid.uuid4()}.jpg"}]})
    job = svc.wait(r.json()["job_id"], timeout=60)
    assert job["status"] == "failed" and job["error_code"] == "download_failed", job
    assert "surfaces[0].texture_url" in job["error_message"]
    r = svc.submit({"image_url": f"{photos}/{SMALL_HOUSE}", "texture_url": "#7A8B99", "surfaces": [
        {"surface": "door", "texture_url": "#101010", "mask_url": f"{photos}/small-mask.png"}]})
    job = svc.wait(r.json()["job_id"], timeout=60)
    assert job["status"] == "failed" and job["error_code"] == "validation_failed", job
    assert "surface door: mask" in job["error_message"]


def test_openapi_publishes_surfaces(svc):
    spec = svc.http.get("/openapi.json").json()
    entry = spec["components"]["schemas"]["SurfaceRequest"]
    assert entry["properties"]["surface"]["enum"] == ["roof", "wall", "trim", "garage_door", "door"]
    assert {"texture_url", "swatch_width_m", "mask_url"} <= set(entry["properties"])


def test_surfaces_are_stored_with_the_job_and_survive_a_restart(tmp_path):
    """The job row keeps the surfaces (a reopened store reads them back); an older store gets the columns."""
    import sqlite3

    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.refs import InputRef
    from appliance.service import JobService, JobSpec, SurfaceSpec, job_surfaces

    db = tmp_path / "data" / "jobs.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as old:  # the table as the first release made it
        old.execute("CREATE TABLE render_jobs (job_id TEXT PRIMARY KEY, project_id TEXT, user_id TEXT, "
                    "image_url TEXT NOT NULL, texture_url TEXT NOT NULL, mask_url TEXT, options TEXT NOT NULL, "
                    "status TEXT NOT NULL, stage TEXT, progress REAL NOT NULL DEFAULT 0, result_url TEXT, "
                    "error_code TEXT, error_message TEXT, timings TEXT, backends TEXT, warnings TEXT, "
                    "attempts INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, "
                    "idempotency_key TEXT UNIQUE, request_hash TEXT, lease_owner TEXT, lease_expires_at REAL, "
                    "heartbeat_at REAL, created_at REAL NOT NULL, queued_at REAL NOT NULL, started_at REAL, "
                    "completed_at REAL)")
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    store = JobStore(settings.jobs_db)
    surfaces = (SurfaceSpec("roof", InputRef.parse("https://example.com/slate.jpg"), 1.2,
                            InputRef.parse("https://example.com/roof.png")),
                SurfaceSpec("trim", InputRef.parse("#F4F1EA")))
    job, _ = JobService(settings, store, RenderQueue(settings.queue_db)).submit(JobSpec(
        image=InputRef.parse("https://example.com/house.jpg"), texture=InputRef.parse("#7A8B99"), surfaces=surfaces))
    store.close()
    reopened = JobStore(settings.jobs_db)
    try:
        assert job_surfaces(reopened.get(job.job_id)) == surfaces
    finally:
        reopened.close()


def test_with_surfaces_refuses_a_bad_set(tmp_path):
    from appliance.config import Settings
    from appliance.jobs import JobStore
    from appliance.queue import RenderQueue
    from appliance.refs import InputRef
    from appliance.service import JobService, JobSpec, SurfaceSpec

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models")
    store = JobStore(settings.jobs_db)
    service = JobService(settings, store, RenderQueue(settings.queue_db))
    job, _ = service.submit(JobSpec(image=InputRef.parse("https://example.com/h.jpg"), texture=InputRef.parse("#111111")))
    colour = InputRef.parse("#222222")
    for bad, reason in (([SurfaceSpec("shutters", colour)], "trim"), ([SurfaceSpec("wall", colour)], "own texture"),
                        ([SurfaceSpec("door", colour), SurfaceSpec("door", colour)], "twice")):
        with pytest.raises(ValueError, match=reason):
            service.with_surfaces(job, bad)
    assert len(store.list_jobs()) == 1  # nothing was made
    store.close()
