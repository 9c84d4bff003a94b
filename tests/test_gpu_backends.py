"""The GPU model set on the CPU: tiny random models with pinned outputs (tests/tiny_gpu_models.py), saved in hub
layout, installed with the real offline installer and run through the real loaders, backends and Pipeline."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import tiny_gpu_models as tiny
import torch

from pipeline import InputError, ModelMissingError, PipelineError
from pipeline.backends import build_pipeline, chosen_backends, resolve
from pipeline.gpu.device import choose_device
from pipeline.gpu.planes import LineCues, Plane, camera, refine_orientation, wall_planes
from pipeline.gpu.refine import composite, feather
from pipeline.models import hub, install_from, manifest, require, status

H, W = 96, 128
FAST = {"refine": {"side": 64, "steps": 4, "strength": 0.5, "prompt": "a house", "negative": "blur"}}
GPU_NAMES = tuple(n for n, s in manifest().items() if s.set == "gpu")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """The default tiny set: building everywhere, a detection in the top-left quadrant, constant depth."""
    return tiny.build(tmp_path_factory.mktemp("stage"))


@pytest.fixture(scope="module")
def gpu_dir(stage, tmp_path_factory):
    return tiny.install(stage, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pipe(gpu_dir):
    return build_pipeline(gpu_dir, segment="gpu", geometry="gpu", refine="gpu", options=FAST)


def photo(seed: int = 0) -> np.ndarray:
    """A smooth, line-free photo (so the line method finds no vanishing points)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([120 + 20 * np.sin(xx / 17.0), 110 + 15 * np.cos(yy / 13.0), 100 + 0 * xx], -1)
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def variant(tmp_path, stage, **knobs):
    """A model folder with the default set except the models rebuilt with `knobs`."""
    names = {"winner": ("oneformer-ade20k",), "box": ("grounding-dino",), "disparity": ("depth-anything-v2",)}
    rebuilt = tuple(n for k in knobs for n in names[k])
    tiny.build(tmp_path / "variant", only=rebuilt, **knobs)
    model_dir = tmp_path / "models"
    tiny.install(tmp_path / "variant", model_dir, names=rebuilt)
    tiny.install(stage, model_dir, names=tuple(n for n in GPU_NAMES if n not in rebuilt))
    return model_dir


# -- model folder: install, revision, missing -----------------------------------------------------------------

def test_install_from_marks_revision_and_status_reports_it(gpu_dir, tmp_path):
    assert set(status(gpu_dir, model_set="gpu").values()) == {"ok"}
    assert "oneformer-ade20k" not in status(gpu_dir)  # the default (embedded) status is unchanged
    marker = hub.read_marker(gpu_dir / manifest()["sam"].folder)
    assert marker["hub_id"] == "facebook/sam-vit-base" and marker["revision"] == manifest()["sam"].revision

    copy = tmp_path / "models"
    shutil.copytree(gpu_dir, copy)
    folder = copy / manifest()["sam"].folder
    data = json.loads((folder / hub.MARKER).read_text())
    data.update(revision="0123456789abcdef0123456789abcdef01234567", commit="0123456789abcdef0123456789abcdef01234567")
    (folder / hub.MARKER).write_text(json.dumps(data))
    assert status(copy, ["sam"])["sam"].startswith("wrong revision")
    with pytest.raises(ModelMissingError, match="revision.*models pull --set gpu"):
        require(copy, "sam")
    with pytest.raises(ModelMissingError, match="revision"):
        build_pipeline(copy, segment="gpu", geometry="embedded", refine="none")
    # an import from a folder of the wrong revision is refused too
    with pytest.raises(ModelMissingError, match="wrong revision"):
        hub.install_from(manifest()["sam"], folder, tmp_path / "other")


def test_install_from_huggingface_cli_folder(stage, tmp_path):
    """A `huggingface-cli download --local-dir` folder: the commit comes from its download metadata."""
    spec = manifest()["grounding-dino"]
    src = tmp_path / "src" / spec.folder
    shutil.copytree(stage / spec.folder, src, ignore=shutil.ignore_patterns(hub.MARKER))
    meta = src / ".cache/huggingface/download/config.json.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text(f"{spec.revision}\netag\n0\n")
    hub.install_from(spec, src, tmp_path / "models", log=lambda _m: None)
    assert status(tmp_path / "models", ["grounding-dino"])["grounding-dino"] == "ok"
    meta.write_text("f" * 40 + "\netag\n0\n")
    with pytest.raises(ModelMissingError, match="wrong revision"):
        hub.install_from(spec, src, tmp_path / "again", log=lambda _m: None)
    (meta).unlink()
    with pytest.raises(ModelMissingError, match="cannot tell which revision"):
        hub.install_from(spec, src, tmp_path / "again", log=lambda _m: None)


def test_missing_models(tmp_path, stage):
    with pytest.raises(ModelMissingError, match="not installed.*models pull --set gpu"):
        require(tmp_path, "oneformer-ade20k")
    with pytest.raises(ModelMissingError, match="lacks"):
        install_from(tmp_path / "empty", tmp_path / "models", model_set="gpu", log=lambda _m: None)
    with pytest.raises(ModelMissingError, match="depth-anything-v2"):
        build_pipeline(tmp_path, segment="embedded", geometry="gpu", refine="none")
    # a half-installed set: the stage that lacks a model is not picked by auto, the others are
    tiny.install(stage, tmp_path / "partial", names=("depth-anything-v2", "oneformer-ade20k"))
    assert resolve(tmp_path / "partial", "geometry", "auto") == "gpu"
    assert resolve(tmp_path / "partial", "segment", "auto") == "embedded"
    assert resolve(tmp_path / "partial", "refine", "auto") == "none"
    with pytest.raises(ModelMissingError, match="grounding-dino"):
        build_pipeline(tmp_path / "partial", segment="gpu", geometry="gpu", refine="none")


def test_pull_downloads_the_pinned_revision(tmp_path, stage, monkeypatch):
    import huggingface_hub

    spec = manifest()["sam"]
    calls = {}

    class Info:
        sha = spec.revision

    def fake_download(repo_id, *, revision, local_dir, allow_patterns):
        calls.update(repo=repo_id, revision=revision, allow=allow_patterns)
        shutil.copytree(stage / spec.folder, local_dir, ignore=shutil.ignore_patterns(hub.MARKER))
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo, revision=None: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    hub.pull(spec, tmp_path, log=lambda _m: None)
    assert calls == {"repo": "facebook/sam-vit-base", "revision": spec.revision, "allow": list(spec.allow)}
    assert hub.state(spec, tmp_path) == "ok"


def test_auto_uses_installed_gpu_models(gpu_dir):
    assert {s: resolve(gpu_dir, s, "auto") for s in ("segment", "geometry", "refine")} == \
        {"segment": "gpu", "geometry": "gpu", "refine": "gpu"}
    with pytest.raises(ValueError):
        resolve(gpu_dir, "refine", "embedded")


# -- device -----------------------------------------------------------------------------------------------------

def test_device_choice(monkeypatch):
    monkeypatch.delenv("AI_FORCE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device().device.type == "cpu" and choose_device().dtype == torch.float32
    with pytest.raises(PipelineError, match="CUDA is not available"):
        choose_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert (choose_device().device, choose_device().dtype) == (torch.device("cuda", 0), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_device("cuda:1").dtype == torch.float16 and choose_device("cuda:1").label == "cuda:1 fp16"
    monkeypatch.setenv("AI_FORCE_CPU", "1")
    assert choose_device("cuda:0").device.type == "cpu"


# -- segment ----------------------------------------------------------------------------------------------------

def test_segment_building_minus_detected_quadrant(pipe):
    layers = pipe.segmenter.layers(photo())
    assert layers["building"].min() > 0.99  # the class head makes "building" win everywhere
    assert len(layers["boxes"]) > 0 and np.allclose(layers["boxes"], [0, 0, W / 2, H / 2], atol=0.5)
    expected = np.ones((H, W), bool)
    expected[: H // 2, : W // 2] = False  # SAM's mask of the top-left box
    paint = layers["paint"] > 0.5
    iou = (paint & expected).sum() / (paint | expected).sum()
    assert iou > 0.93, iou
    assert not paint[: H // 2 - 4, : W // 2 - 4].any()


def test_segment_nothing_detected_paints_the_building(tmp_path, stage):
    seg = build_pipeline(variant(tmp_path, stage, box=None), segment="gpu", geometry="embedded",
                         refine="none").segmenter
    layers = seg.layers(photo())
    assert len(layers["boxes"]) == 0
    assert (layers["paint"] > 0.5).all()


def test_segment_sky_everywhere_is_refused(tmp_path, stage):
    pipe = build_pipeline(variant(tmp_path, stage, winner="sky"), segment="gpu", geometry="gpu", refine="none")
    assert pipe.segmenter.paint_probability(photo()).max() < 0.01
    with pytest.raises(InputError, match="no paintable wall"):
        pipe.run(photo(), "#aa3322")


# -- geometry ---------------------------------------------------------------------------------------------------

def test_constant_depth_gives_one_fronto_parallel_wall(pipe):
    mask = np.zeros((H, W), bool)
    mask[20:90, 10:120] = True
    geometry = pipe.geometry.estimate(photo(), mask)
    assert geometry.backend.startswith("gpu:depth-anything-v2")
    assert len(geometry.walls) == 1
    wall = geometry.walls[0]
    Hm = wall.homography / wall.homography[2, 2]
    assert np.allclose(Hm[2, :2], 0, atol=1e-6), Hm  # no perspective: the plane faces the camera
    assert abs(Hm[0, 1]) < 1e-6 and abs(Hm[1, 0]) < 1e-6 and Hm[0, 0] == pytest.approx(Hm[1, 1])
    assert (wall.mask == mask).all() and wall.width == pytest.approx(110, abs=1.5)


def corner_disparity(h=120, w=160, f=100.0):
    """A convex house corner in front of the camera: two vertical walls at +-45 degrees meeting at the centre."""
    K = camera((h, w), f)
    xn = (np.mgrid[0:h, 0:w][1] - K[0, 2]) / K[0, 0]
    depth = np.maximum(5 / (1 + xn), 5 / (1 - xn))  # the farther of the two planes is the visible one
    return 1 / depth, K


def yaw(n):
    return math.degrees(math.atan2(n[0], n[2]))


def test_ransac_finds_the_two_walls_of_a_corner():
    disparity, K = corner_disparity()
    planes, labels, _, _ = wall_planes(disparity, np.ones(disparity.shape, bool), K, np.array([0.0, 1, 0]))
    assert sorted(round(yaw(p.normal)) for p in planes) == [-45, 45]
    left = next(i for i, p in enumerate(planes) if yaw(p.normal) > 0)  # left wall faces right
    assert (labels[:, :75] == left).mean() > 0.98 and (labels[:, 85:] != left).mean() > 0.98


def test_vanishing_point_refines_orientation_within_limit():
    K = camera((120, 160), 100.0)
    down = np.array([0.0, 1, 0])
    pts = np.array([[0.0, 0, 5], [1, 0, 5.6]])

    def plane(deg):
        return Plane(np.array([math.sin(math.radians(deg)), 0, math.cos(math.radians(deg))]), 5.0, np.arange(2))

    def vp(deg):  # the vanishing point of the horizontal direction of a wall with this yaw
        return K @ np.array([math.cos(math.radians(deg)), 0, -math.sin(math.radians(deg))])

    near, far = plane(30), plane(30)
    refine_orientation([near], LineCues(horizontal=[vp(38)]), K, down, pts)
    refine_orientation([far], LineCues(horizontal=[vp(60)]), K, down, pts)
    assert near.refined and yaw(near.normal) == pytest.approx(38)
    assert not far.refined and yaw(far.normal) == pytest.approx(30)


# -- refine and the whole pipeline ------------------------------------------------------------------------------

def test_pipeline_reports_backends_and_refines_deterministically(pipe):
    image = photo(3)
    plain = pipe.run(image, "#aa3322", {"enable_refinement": False})
    assert plain.backends["segment"] == chosen_backends(pipe)["segment"] == \
        "gpu:oneformer-ade20k+grounding-dino+sam (cpu fp32)"
    assert plain.backends["geometry"].startswith("gpu:depth-anything-v2")
    a = pipe.run(image, "#aa3322", {"enable_refinement": True, "refinement_seed": 7})
    b = pipe.run(image, "#aa3322", {"enable_refinement": True, "refinement_seed": 7})
    c = pipe.run(image, "#aa3322", {"enable_refinement": True, "refinement_seed": 8})
    assert a.backends["refine"] == "gpu:sd15-inpaint+controlnet-depth (cpu fp32)"
    assert (a.image == b.image).all()  # same seed, same device: same pixels
    assert (a.mask == plain.mask).all()
    outside = ~a.mask
    assert (a.image[outside] == plain.image[outside]).all()  # bit-identical outside the mask
    assert (c.image[outside] == plain.image[outside]).all()
    inside = a.mask & (feather(a.mask, 1) > 0.99)
    assert (a.image[inside] != plain.image[inside]).any() and (a.image[inside] != c.image[inside]).any()


def test_composite_keeps_pixels_outside_the_feathered_mask():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    refined = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:45] = True
    alpha = feather(mask, 3)
    out = composite(base, refined, alpha)
    assert alpha[~mask].max() == 0 and alpha[18:22, 20:30].min() == 1
    assert (out[alpha == 0] == base[alpha == 0]).all() and (out[alpha == 1] == refined[alpha == 1]).all()


def test_out_of_memory_is_a_clear_pipeline_error_and_memory_is_released(pipe, monkeypatch):
    released = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: released.append(True))
    model = pipe.segmenter.semantic.model

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", oom)
    with pytest.raises(PipelineError, match="out of memory in stage 'segment'") as info:
        pipe.run(photo(), "#aa3322")
    assert info.value.code == "pipeline_error" and released
    monkeypatch.undo()
    assert pipe.run(photo(), "#aa3322").mask.any()  # the device lock was released with the error


def test_warm_up_runs_every_gpu_stage(pipe):
    from pipeline.backends import warm_up

    warm_up(pipe, side=128)


def test_gpu_bench_tiny_smoke(capsys):
    from bench.gpu import main

    report = main(["--tiny", "--photos", "1", "--repeats", "1", "--side", "384"])
    for row in ("| segment |", "| geometry |", "| refine |", "| total (with refine) |"):
        assert row in report
