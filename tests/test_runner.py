"""The pipeline runner: stage time limits, cancel, up-front refusals, client masks, output contract."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipeline import Cancelled, InputError, Pipeline, PipelineError, RenderOptions, StageTimeout
from pipeline.runner import run_stage


class SleepingSegmenter:
    """A segmenter that never comes back in time: the runner must not wait for it."""

    name = "test:sleeping"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.release = threading.Event()

    def paint_probability(self, image):
        self.release.wait(self.seconds)
        return np.ones(image.shape[:2], np.float32)


@pytest.fixture(scope="module")
def embedded(model_dir):
    return Pipeline.embedded(model_dir)


@pytest.fixture(scope="module")
def house(shared_dir):
    return np.asarray(Image.open(shared_dir / "data/houses/house_100.jpg").convert("RGB"))


def test_run_stage_gives_up_on_a_wedged_stage():
    started = time.perf_counter()
    with pytest.raises(StageTimeout, match="stage 'segment' exceeded its time limit of 0.2 s"):
        run_stage("segment", lambda: time.sleep(30), 0.2)
    assert time.perf_counter() - started < 2


def test_stage_timeout_carries_the_abandoned_stage():
    release = threading.Event()
    with pytest.raises(StageTimeout) as info:
        run_stage("geometry", lambda: release.wait(30), 0.1)
    assert info.value.abandoned is not None and not info.value.stage_finished(0.05)
    release.set()
    assert info.value.stage_finished(5)


def test_run_render_pipeline_is_the_library_entry_point(house):
    from pipeline import run_render_pipeline
    from pipeline.geometry import LineGeometry

    mask = np.zeros(house.shape[:2], bool)
    mask[house.shape[0] // 4:-house.shape[0] // 4, house.shape[1] // 4:-house.shape[1] // 4] = True
    result = run_render_pipeline(house, "#AA3322", {"real_world_scale": 8}, mask=mask,
                                 pipeline=Pipeline(None, LineGeometry()))
    assert result.image.shape == house.shape and result.backends["segment"] == "client-mask"
    assert (result.image[:10] == house[:10]).all() and not (result.image[mask] == house[mask]).all()


def test_run_stage_reraises_stage_errors():
    def broken():
        raise PipelineError("boom")

    with pytest.raises(PipelineError, match="boom"):
        run_stage("project", broken, 5)


def test_stage_timeout_option_is_enforced(embedded, house):
    slow = SleepingSegmenter(60)
    pipe = Pipeline(slow, embedded.geometry)
    started = time.perf_counter()
    with pytest.raises(StageTimeout) as info:
        pipe.run(house, "#AA3322", RenderOptions(stage_timeout_seconds=0.5))
    slow.release.set()
    assert info.value.stage == "segment" and info.value.code == "timeout"
    assert time.perf_counter() - started < 5


def test_cancel_is_checked_between_stages(embedded, house):
    seen = []

    def progress(stage, fraction):
        seen.append((stage, fraction))

    with pytest.raises(Cancelled):
        embedded.run(house, "#AA3322", None, progress=progress, cancelled=lambda: ("segment", 1.0) in seen)
    assert ("geometry", 0.0) not in seen  # stopped before the next stage began


def test_refinement_without_a_refiner_is_refused_up_front(embedded, house):
    with pytest.raises(PipelineError, match="no refinement model is installed"):
        embedded.run(house, "#AA3322", {"enable_refinement": True},
                     progress=lambda s, f: pytest.fail("no stage may start"))


def test_client_mask_replaces_segmentation_and_output_keeps_size(embedded, house):
    h, w = house.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 4: h // 2, w // 4: w // 2] = True
    result = embedded.run(house, "#3366CC", None, mask=Image.fromarray(mask.astype(np.uint8) * 255))
    assert result.backends["segment"] == "client-mask" and "segment" not in result.timings
    assert np.array_equal(result.mask, mask)
    assert result.image.shape == house.shape and result.image.dtype == np.uint8
    # Far from the mask nothing changes; inside it the wall turned blue.
    assert np.array_equal(result.image[: h // 8], house[: h // 8])
    inner = result.image[h // 4 + 10: h // 2 - 10, w // 4 + 10: w // 2 - 10].reshape(-1, 3).mean(0)
    assert inner[2] > inner[0]


def test_automatic_run_reports_every_stage(embedded, house):
    result = embedded.run(house, "#3366CC")
    assert set(result.timings) == {"segment", "geometry", "project"}
    assert result.backends["segment"].startswith("embedded")
    assert 0.02 < result.mask.mean() < 0.9


def test_a_photo_without_a_wall_says_so(embedded):
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[...] = (120, 170, 235)
    with pytest.raises(InputError, match="no paintable wall"):
        embedded.run(sky, "#3366CC")
