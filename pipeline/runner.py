"""Pipeline.run: photo + swatch -> re-clad photo, stage by stage.

`Pipeline` holds the loaded models (load once per worker, run many jobs); `run_render_pipeline`
(pipeline/entry.py) is the one-call entry point that keeps one default Pipeline per model folder. Each stage runs
in its own daemon thread so that the caller can stop waiting when the stage's time limit passes: a stage that never
returns is abandoned, never wedges the caller. (A Python thread cannot be killed; the abandoned stage finishes or
dies with the process. The StageTimeout carries the abandoned thread, so a worker that needs the CPU back can wait
for it and restart itself if it keeps running, see appliance/worker.py.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import Cancelled, InputError, PipelineError, StageTimeout
from .images import DEFAULT_MAX_PIXELS, Source, Texture, load_mask, load_photo, load_texture
from .options import RenderOptions
from .stages import Geometry, GeometryEstimator, PipelineStage, Refiner, Segmenter
from .surfaces import SurfaceMaterial

STAGES = tuple(PipelineStage)
# Generous defaults: a stage normally takes well under a second on a CPU; these catch a wedged stage.
DEFAULT_STAGE_LIMITS = {PipelineStage.SEGMENT: 120.0, PipelineStage.GEOMETRY: 60.0, PipelineStage.PROJECT: 120.0,
                        PipelineStage.REFINE: 600.0}

ProgressFn = Callable[[str, float], None]
CancelledFn = Callable[[], bool]


@dataclass
class RenderResult:
    image: np.ndarray  # uint8 RGB, same size and orientation as the (EXIF-upright) input photo
    mask: np.ndarray  # bool, the paint mask that was used
    # bool mask per house part found by the segmenter (pipeline.facade_parser.SURFACES: wall = `mask`, roof,
    # window, door, garage_door, trim; only "wall" with a client mask or a wall-only segmenter). The parser's never
    # overlap; a painted surface's entry is the mask it was painted with (a client mask may overlap others).
    surfaces: dict[str, np.ndarray] = field(default_factory=dict)
    # the surfaces that got a material: {"order": 0.. (back to front), "pixels": n, "mask": "parser"|"client",
    # "scale"?: {...} (that surface's own swatch_width_m)}
    painted: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    backends: dict[str, str] = field(default_factory=dict)  # stage -> backend name
    warnings: list[str] = field(default_factory=list)
    # with options.swatch_width_m: how the tile was sized (pipeline.scale.physical_tile: metres_per_unit,
    # confidence, cues, wall_width_m, repeats; source "estimated" or "real_world_scale")
    scale: dict[str, Any] | None = None


def run_stage(name: str, fn: Callable[[], Any], limit: float | None) -> Any:
    """Run fn in a daemon thread; give up after `limit` seconds with StageTimeout(name)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"stage-{name}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise StageTimeout(name, limit, abandoned=thread)
    if "error" in box:
        raise box["error"]
    return box["value"]


class Pipeline:
    """The loaded model set. Thread-compatible, not thread-safe: one run at a time (one per GPU)."""

    def __init__(self, segmenter: Segmenter | None, geometry: GeometryEstimator, refiner: Refiner | None = None,
                 *, max_pixels: int = DEFAULT_MAX_PIXELS, stage_limits: Mapping[str, float] | None = None):
        self.segmenter = segmenter
        self.geometry = geometry
        self.refiner = refiner
        self.max_pixels = max_pixels
        self.stage_limits = dict(DEFAULT_STAGE_LIMITS, **(stage_limits or {}))

    @classmethod
    def embedded(cls, model_dir: Path | str, *, threads: int = 2, **kwargs: Any) -> "Pipeline":
        """The default CPU model set, loaded from `model_dir` (raises ModelMissingError naming the fix)."""
        from .geometry import LineGeometry
        from .segment import EmbeddedSegmenter

        return cls(EmbeddedSegmenter(Path(model_dir), threads=threads), LineGeometry(), None, **kwargs)

    def run(self, image: Source, texture: Source | Texture, options: RenderOptions | Mapping[str, Any] | None = None,
            *, mask: Source | None = None, surfaces: Sequence[SurfaceMaterial] = (),
            progress: ProgressFn | None = None, cancelled: CancelledFn | None = None) -> RenderResult:
        """Render `image` with the wall re-clad in `texture` (mask: the client's wall mask) and each of `surfaces`
        (trim, roof, doors, ...) in its own material; see pipeline/surfaces.py."""
        from .project import project_texture, widest_painted_wall
        from .scale import physical_tile
        from .segment import segment_surfaces
        from .surfaces import PAINT_ORDER, Surface, covering_geometry

        opts = options if isinstance(options, RenderOptions) else RenderOptions.from_mapping(options)
        report = progress or (lambda stage, fraction: None)
        is_cancelled = cancelled or (lambda: False)

        def limit(stage: str) -> float:
            return opts.stage_timeout_seconds or self.stage_limits[stage]

        def checkpoint() -> None:
            if is_cancelled():
                raise Cancelled("canceled by request")

        # Everything that can be refused is refused before any model runs.
        if opts.enable_refinement and self.refiner is None:
            raise PipelineError("refinement was requested (enable_refinement=true) but no refinement model is "
                                "installed: it needs the GPU model set (diffusers); render without refinement "
                                "or install the GPU set")
        photo = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
            else load_photo(image, max_pixels=self.max_pixels)
        swatch = load_texture(texture, max_pixels=self.max_pixels)
        client_mask = None if mask is None else load_mask(mask, photo.shape[:2], max_pixels=self.max_pixels)
        extras = _load_surfaces(surfaces, photo.shape[:2], self.max_pixels)
        if client_mask is None and self.segmenter is None:
            raise PipelineError("no segmentation model is loaded; pass a mask or install the models")

        result = RenderResult(image=photo, mask=np.zeros(photo.shape[:2], bool))

        def timed(stage: str, fn: Callable[[], Any]) -> Any:
            checkpoint()
            report(stage, 0.0)
            start = time.perf_counter()
            value = run_stage(stage, fn, limit(stage))
            result.timings[stage] = time.perf_counter() - start
            report(stage, 1.0)
            return value

        # one segmentation for every surface; skipped when the client's masks cover all of them
        needs_parts = any(m is None for _, _, m in extras.values()) and self.segmenter is not None
        if client_mask is None or needs_parts:
            segmentation = timed(PipelineStage.SEGMENT, lambda: segment_surfaces(photo, self.segmenter))
            result.surfaces = segmentation.surfaces
            result.backends[PipelineStage.SEGMENT] = self.segmenter.name
        if client_mask is not None:
            paint = client_mask
            result.surfaces["wall"] = paint
            result.backends[PipelineStage.SEGMENT] = "client-mask" if not needs_parts else \
                result.backends[PipelineStage.SEGMENT] + "+client-mask"
        else:
            paint = segmentation.paint
            if not paint.any():
                raise InputError("no paintable wall was found in the photo; send a mask (mask_url) to choose the wall")
        result.mask = paint

        geometry: Geometry = timed(PipelineStage.GEOMETRY, lambda: self.geometry.estimate(photo, paint))
        result.backends[PipelineStage.GEOMETRY] = geometry.backend
        result.warnings.extend(geometry.warnings)

        def tile_for(name: str, material: Texture, width_m: float | None) -> float | None:
            """The tile width in rectified units from `width_m` and the wall's metric scale (None: keep
            real_world_scale; then the scale report goes with a warning)."""
            if width_m is None or material.is_colour:
                return None
            tile, scale_report, notes = physical_tile(result.surfaces or {"wall": paint}, geometry,
                                                      widest_painted_wall(geometry, paint), width_m)
            if name == Surface.WALL:
                result.scale = scale_report
            else:
                result.painted[name]["scale"] = scale_report
            result.warnings.extend(notes if name == Surface.WALL else [f"{name}: {n}" for n in notes])
            return tile

        def project() -> np.ndarray:
            wall_tile = widest_painted_wall(geometry, paint) / opts.real_world_scale
            cover = None
            canvas = photo
            for name in PAINT_ORDER:
                if name == Surface.WALL:
                    result.painted[name] = {"order": len(result.painted), "pixels": int(paint.sum()),
                                            "mask": "client" if client_mask is not None else "parser"}
                    canvas = project_texture(photo, paint, geometry, swatch, opts.real_world_scale,
                                             tile_units=tile_for(name, swatch, opts.swatch_width_m), canvas=canvas)
                    continue
                if name not in extras:
                    continue
                material, width_m, own_mask = extras[name]
                region = own_mask if own_mask is not None else result.surfaces.get(name)
                if region is None or not region.any():
                    why = "its mask is empty" if own_mask is not None else "the house parser found none in the photo"
                    result.warnings.append(f"surface {name}: not painted, {why}")
                    continue
                result.surfaces[name] = region
                result.painted[name] = {"order": len(result.painted), "pixels": int(region.sum()),
                                        "mask": "client" if own_mask is not None else "parser"}
                cover = cover or covering_geometry(geometry, paint.shape)
                tile = tile_for(name, material, width_m) or wall_tile
                canvas = project_texture(photo, region, cover, material, opts.real_world_scale, tile_units=tile,
                                         canvas=canvas)
            return canvas

        composite = timed(PipelineStage.PROJECT, project)
        result.backends[PipelineStage.PROJECT] = "embedded:homography-tiling+shading"

        if opts.enable_refinement:
            painted = np.zeros(paint.shape, bool)
            for name in result.painted:
                painted |= result.surfaces.get(name, paint)
            refined = timed(PipelineStage.REFINE,
                            lambda: self.refiner.refine(photo, composite, painted, opts.refinement_seed))
            result.backends[PipelineStage.REFINE] = self.refiner.name
            composite = refined
        checkpoint()
        result.image = composite
        return result


def _load_surfaces(surfaces: Sequence[SurfaceMaterial], shape: tuple[int, int], max_pixels: int) \
        -> dict[str, tuple[Texture, float | None, np.ndarray | None]]:
    """The extra surfaces' materials and masks, decoded and checked up front (InputError naming the surface)."""
    from .surfaces import extra_surface_refusal

    loaded: dict[str, tuple[Texture, float | None, np.ndarray | None]] = {}
    for spec in surfaces:
        name = str(spec.surface)
        if reason := extra_surface_refusal(name, wall="the wall's material is the main texture (and mask), not an "
                                                  "extra surface"):
            raise InputError(f"surface {name!r}: {reason}")
        if name in loaded:
            raise InputError(f"surface {name!r} is given twice")
        try:
            material = load_texture(spec.texture, max_pixels=max_pixels)
            own = None if spec.mask is None else load_mask(spec.mask, shape, max_pixels=max_pixels)
        except InputError as exc:
            raise InputError(f"surface {name}: {exc}") from None
        loaded[name] = (material, spec.swatch_width_m, own)
    return loaded
