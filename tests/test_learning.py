"""The appliance learns from its operators' corrections (appliance/learning.py, appliance/finetune.py).

Real parts: the job store, queue and worker in-process, photos over real HTTP, the real embedded models and the
real training core on labelled shared photos.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appliance.config import Settings

from appliance.jobs import COMPLETED, JobStore
from appliance.learning import Source, StudioData, shipped_weights
from appliance.queue import RenderQueue

from service_fixtures import SMALL_HOUSE, SMALL_HOUSE_SIZE, photo_server


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    return buffer.getvalue()


def _create(store: JobStore, **fields) -> str:
    job, _ = store.create(job_id=str(uuid.uuid4()), project_id=None, user_id=None, idempotency_key=None,
                          request_hash=None, queue_depth=10, **{"mask_url": None, "options": {}, **fields})
    return job.job_id


# --- corrections are kept -----------------------------------------------------------------------------------------

def test_corrected_masks_become_training_examples_that_retention_keeps(tmp_path, shared_dir):
    from appliance.service import JobService
    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline import Pipeline
    from pipeline.geometry import LineGeometry

    w, h = SMALL_HOUSE_SIZE
    first = np.zeros((h, w), np.uint8)
    first[100:300, 100:500] = 255
    extra = tmp_path / "www-extra"
    extra.mkdir()
    (extra / "mask.png").write_bytes(_png(first))
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "models", fetch_allow_networks=("127.0.0.1",))
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    service = JobService(settings, store, queue)
    studio = StudioData(settings.data_dir)

    def worker(s: Settings) -> Worker:  # a client-mask pipeline: no segmentation model needed
        return Worker(s, store, queue, LocalStorage(s.results_dir, "http://x"), Pipeline(None, LineGeometry()))

    with photo_server(shared_dir / "data", extra) as photos:
        photo_url = f"{photos}/{SMALL_HOUSE}"
        # A client's mask_url is not kept by default ...
        client_job = _create(store, image_url=photo_url, texture_url="#AA0000", mask_url=f"{photos}/mask.png")
        worker(settings).process(client_job)
        assert store.get(client_job).status == COMPLETED and studio.examples() == []
        # ... but a console mask fix is, with the photo, the mask the render used and where it came from.
        fixed = first.copy()
        fixed[300:380, 100:500] = 255
        before = time.time()
        fix = service.fix_mask(store.get(client_job), _png(fixed))
        worker(settings).process(fix.job_id)
        assert store.get(fix.job_id).status == COMPLETED
        [example] = studio.examples()
        assert (example.job_id, example.source) == (fix.job_id, Source.MASK_FIX)
        assert before <= example.created_at <= time.time() and not example.has_classes
        assert example.photo.read_bytes() == (shared_dir / "data" / SMALL_HOUSE).read_bytes()
        assert np.array_equal(np.asarray(Image.open(example.mask)) > 127, fixed > 127)
        meta = json.loads((example.path / "example.json").read_text())
        assert meta["job_id"] == fix.job_id and meta["source"] == "mask_fix"
        # The same fix rendered again (a retry) is one example, not two.
        again = service.retry(store.get(fix.job_id))
        worker(settings).process(again.job_id)
        assert len(studio.examples()) == 1
        # With learning.collect_client_masks, API masks are kept too.
        collecting = settings.with_overrides(collect_client_masks=True)
        client_job2 = _create(store, image_url=photo_url, texture_url="#00AA00", mask_url=f"{photos}/mask.png")
        worker(collecting).process(client_job2)
    examples = studio.examples()
    assert [e.source for e in examples] == [Source.MASK_FIX, Source.CLIENT_MASK]
    assert examples[1].job_id == client_job2

    # Retention deletes every job and its folder, never the examples.
    assert worker(settings).prune(now=time.time() + 1000 * 3600) == 4
    assert not settings.jobs_dir.exists() or not any(settings.jobs_dir.iterdir())
    assert [e.id for e in studio.examples()] == [e.id for e in examples]
    assert all(e.photo.is_file() and e.mask.is_file() for e in studio.examples())
    # The operator deletes one.
    assert studio.delete_example(examples[0].id) and not studio.delete_example(examples[0].id)
    assert [e.id for e in studio.examples()] == [examples[1].id]


# --- a worker reloads new weights between jobs ----------------------------------------------------------------------

def test_worker_loads_installed_weights_before_its_next_job_and_rollback_restores_them(tmp_path, shared_dir,
                                                                                        model_dir):
    import torch

    from appliance.storage.local import LocalStorage
    from appliance.worker import Worker
    from pipeline.backends import build_pipeline
    from pipeline.facade_parser import PAINT_CLASS, load_facade_parser, save_facade_parser

    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, fetch_allow_networks=("127.0.0.1",))
    store, queue = JobStore(settings.jobs_db), RenderQueue(settings.queue_db)
    pipeline = build_pipeline(model_dir, segment="embedded", geometry="embedded", refine="none")
    worker = Worker(settings, store, queue, LocalStorage(settings.results_dir, "http://x"), pipeline)
    studio = StudioData(settings.data_dir)
    shipped = shipped_weights(model_dir)
    # Other weights: the shipped ones with the wall class made far more likely (they paint much more).
    eager = load_facade_parser(shipped)
    with torch.no_grad():
        eager.head.bias[PAINT_CLASS] += 4.0
    save_facade_parser(eager, tmp_path / "eager.pt", {"test": "wall bias + 4"})

    def render(photos: str) -> np.ndarray:
        job_id = _create(store, image_url=f"{photos}/{SMALL_HOUSE}", texture_url="#AA0000")
        worker.process(job_id)
        assert store.get(job_id).status == COMPLETED, store.get(job_id)
        return np.asarray(Image.open(settings.job_dir(job_id) / "mask.png")) > 127

    with photo_server(shared_dir / "data", tmp_path) as photos:
        shipped_mask = render(photos)
        parser_before = pipeline.segmenter.parser
        studio.install(tmp_path / "eager.pt", shipped)  # what a fine-tune does, while the worker idles
        assert _sha(studio.current) == _sha(tmp_path / "eager.pt") and _sha(studio.previous) == _sha(shipped)
        eager_mask = render(photos)
        assert pipeline.segmenter.parser is not parser_before
        assert eager_mask.mean() > shipped_mask.mean() + 0.05 and (eager_mask | ~shipped_mask).all()
        same = render(photos)  # nothing new installed: nothing reloaded
        assert np.array_equal(same, eager_mask)
        assert studio.rollback()
        assert _sha(studio.current) == _sha(shipped) and _sha(studio.previous) == _sha(tmp_path / "eager.pt")
        assert np.array_equal(render(photos), shipped_mask)


# --- fine-tune --------------------------------------------------------------------------------------------------

# Stand-in studio photos: CMP facades (rectified European street fronts; evaluation data, nothing here ships),
# a kind of photo the shipped parser was never trained on. CMP index -> house index: facade -> wall,
# window / shop -> window, door -> door, balcony / blind -> trim, background -> other; cornice, sill, deco,
# molding and pillar are rectangles too coarse to trust: unlabelled.
CMP_TO_HOUSE = np.zeros(256, np.uint8)
for _cmp, _house in {1: 10, 2: 1, 3: 3, 4: 4, 7: 6, 8: 6, 12: 3}.items():
    CMP_TO_HOUSE[_cmp] = _house


def _import_cmp(studio: StudioData, shared_dir: Path, n: int) -> list[str]:
    root = shared_dir / "data" / "facades-cmp"
    ids = []
    for photo in sorted((root / "images").glob("*.jpg"))[::7][:n]:
        classes = CMP_TO_HOUSE[np.array(Image.open(root / "labels" / (photo.stem + ".png")))]
        ids.append(studio.add_example(photo.read_bytes(), classes == 1, job_id=None, source=Source.IMPORTED,
                                      classes=classes))
    return ids


def _config(tmp_path: Path, settings: Settings) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[paths]\ndata_dir = "{settings.data_dir}"\nmodel_dir = "{settings.model_dir}"\n'
                   f'[render]\nforce_cpu = true\n')
    return cfg
