"""run_render_pipeline: the one-call library entry point (photo + swatch -> re-clad photo).

It sits above both `runner` (Pipeline) and `backends` (which models to load), so that neither imports the other
back: backends builds Pipelines, runner runs them, this module keeps one default Pipeline per model folder.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from .backends import build_pipeline
from .images import Source, Texture
from .options import RenderOptions
from .runner import CancelledFn, Pipeline, ProgressFn, RenderResult
from .surfaces import SurfaceMaterial

_default_pipelines: dict[str, Pipeline] = {}
_default_lock = threading.Lock()


def default_pipeline(model_dir: Path | str) -> Pipeline:
    """The best installed backend per stage for `model_dir`, loaded once per process."""
    key = str(Path(model_dir).resolve())
    with _default_lock:
        if key not in _default_pipelines:
            _default_pipelines[key] = build_pipeline(key)
        return _default_pipelines[key]


def run_render_pipeline(image: Source, texture: Source | Texture,
                        options: RenderOptions | Mapping[str, Any] | None = None, *,
                        mask: Source | None = None, surfaces: Sequence[SurfaceMaterial] = (),
                        progress: ProgressFn | None = None,
                        cancelled: CancelledFn | None = None, pipeline: Pipeline | None = None,
                        model_dir: Path | str | None = None) -> RenderResult:
    """Render `image` re-clad with `texture` (a swatch image or '#RRGGBB'), and each of `surfaces` (roof, trim,
    doors) with its own material.

    Uses `pipeline` when given, else the best installed model set from `model_dir` (default: the configured model
    folder, env RENDER_MODEL_DIR), loaded once and kept.
    """
    if pipeline is None:
        if model_dir is None:
            model_dir = os.environ.get("RENDER_MODEL_DIR") or Path.home() / ".local/share/render-appliance/models"
        pipeline = default_pipeline(model_dir)
    return pipeline.run(image, texture, options, mask=mask, surfaces=surfaces, progress=progress, cancelled=cancelled)
