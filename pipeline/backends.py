"""Choose a backend per stage and build the Pipeline: the embedded CPU set, the GPU set, or the best installed.

    build_pipeline(model_dir, segment="auto", geometry="auto", refine="auto", device=None) -> Pipeline

    segment   "embedded" | "gpu" | "auto"   auto: gpu when its models are installed, else embedded
    geometry  "embedded" | "gpu" | "auto"   (same)
    refine    "none" | "gpu" | "auto"       auto: gpu when installed, else none (refinement requests are refused)

"gpu" names the GPU model set (pipeline/gpu); it runs on CUDA when present, else on the CPU (slowly), and always on
the CPU under AI_FORCE_CPU. A backend asked for by name whose models are missing raises ModelMissingError naming the
install command. Models are loaded here, once: keep the Pipeline for the life of the worker. The Depth Anything
model is shared by geometry and refine. Every stage's backend name (with its device) lands in each job result
(RenderResult.backends); `chosen_backends(pipeline)` gives them up front.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .models import status
from .runner import STAGES, Pipeline

log = logging.getLogger(__name__)

GPU_MODELS = {
    "segment": ("oneformer-ade20k", "grounding-dino", "sam"),
    "geometry": ("depth-anything-v2",),
    "refine": ("sd15-inpaint", "controlnet-depth", "depth-anything-v2"),
}
CHOICES = {"segment": ("auto", "embedded", "gpu"), "geometry": ("auto", "embedded", "gpu"),
           "refine": ("auto", "none", "gpu")}


def gpu_installed(model_dir: Path | str, stage: str) -> bool:
    """Are the stage's GPU models installed at the manifest revision, and are their libraries importable?"""
    if any(state != "ok" for state in status(model_dir, GPU_MODELS[stage], check_hash=False).values()):
        return False
    try:
        import transformers  # noqa: F401

        if stage == "refine":
            import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(model_dir: Path | str, stage: str, choice: str) -> str:
    """'auto' -> the concrete backend for this model folder."""
    if choice not in CHOICES[stage]:
        raise ValueError(f"{stage} backend must be one of {', '.join(CHOICES[stage])}, not {choice!r}")
    if choice != "auto":
        return choice
    if gpu_installed(model_dir, stage):
        return "gpu"
    return "none" if stage == "refine" else "embedded"


def build_pipeline(model_dir: Path | str, *, segment: str = "auto", geometry: str = "auto", refine: str = "auto",
                   device: str | None = None, threads: int = 2, options: dict[str, dict] | None = None,
                   **pipeline_kwargs: Any) -> Pipeline:
    """The Pipeline with the chosen backend per stage (see the module docstring). `options`: keyword arguments per
    GPU backend ({"segment": {...}, "geometry": {...}, "refine": {...}, "depth": {...}}, e.g. working sizes,
    steps); `pipeline_kwargs` go to Pipeline (max_pixels, stage_limits)."""
    model_dir = Path(model_dir)
    options = options or {}
    chosen = {stage: resolve(model_dir, stage, c)
              for stage, c in (("segment", segment), ("geometry", geometry), ("refine", refine))}
    choice = None
    if "gpu" in chosen.values():
        from .gpu.device import choose_device

        choice = choose_device(device)
        log.info("GPU model set on %s (%s)", choice.label, choice.reason)

    depth = None
    if chosen["geometry"] == "gpu" or chosen["refine"] == "gpu":
        from .gpu.depth import DepthModel
        from .models import require

        depth = DepthModel(require(model_dir, "depth-anything-v2"), choice, **options.get("depth", {}))

    if chosen["segment"] == "gpu":
        from .gpu.segment import GpuSegmenter

        segmenter = GpuSegmenter(model_dir, choice, **options.get("segment", {}))
    else:
        from .segment import EmbeddedSegmenter

        segmenter = EmbeddedSegmenter(model_dir, threads=threads)

    if chosen["geometry"] == "gpu":
        from .gpu.depth import DepthGeometry

        geometry_stage = DepthGeometry(model_dir, choice, depth=depth, **options.get("geometry", {}))
    else:
        from .geometry import LineGeometry

        geometry_stage = LineGeometry()

    refiner = None
    if chosen["refine"] == "gpu":
        from .gpu.refine import DiffusionRefiner

        refiner = DiffusionRefiner(model_dir, choice, depth=depth, **options.get("refine", {}))

    pipeline = Pipeline(segmenter, geometry_stage, refiner, **pipeline_kwargs)
    log.info("pipeline backends: %s", chosen_backends(pipeline))
    return pipeline


def chosen_backends(pipeline: Pipeline) -> dict[str, str]:
    """stage -> backend name, as the job result will report it."""
    return {"segment": pipeline.segmenter.name if pipeline.segmenter is not None else "none",
            "geometry": getattr(pipeline.geometry, "name", type(pipeline.geometry).__name__),
            "refine": pipeline.refiner.name if pipeline.refiner is not None else "none"}


def warm_up(pipeline: Pipeline, side: int = 256) -> None:
    """One pass of every GPU stage on a synthetic photo, so the first job does not pay for CUDA initialisation,
    kernel selection and allocator growth."""
    rng = np.random.default_rng(0)
    image = (rng.random((side * 3 // 4, side, 3)) * 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[side // 8:-side // 8, side // 8:-side // 8] = True
    if pipeline.segmenter is not None and pipeline.segmenter.name.startswith("gpu:"):
        pipeline.segmenter.paint_probability(image)
    if getattr(pipeline.geometry, "name", "").startswith("gpu:"):
        pipeline.geometry.estimate(image, mask)
    if pipeline.refiner is not None:
        pipeline.refiner.refine(image, image, mask, 0)


def from_settings(settings: Any) -> Pipeline:
    """Worker hook (`worker.pipeline = "pipeline.backends:from_settings"`): the appliance settings -> Pipeline.
    Reads model_dir, worker_device, worker_threads, max_pixels, stage_timeout and, when the config has them,
    segment_backend / geometry_backend / refine_backend (default "auto")."""
    limits = {stage: settings.stage_timeout for stage in STAGES} if getattr(settings, "stage_timeout", None) else None
    device = getattr(settings, "worker_device", None)
    return build_pipeline(settings.model_dir, segment=getattr(settings, "segment_backend", None) or "auto",
                          geometry=getattr(settings, "geometry_backend", None) or "auto",
                          refine=getattr(settings, "refine_backend", None) or "auto",
                          device=None if device in (None, "auto") else device,
                          threads=getattr(settings, "worker_threads", 2), max_pixels=settings.max_pixels,
                          stage_limits=limits)
