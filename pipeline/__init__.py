"""The render pipeline: segment -> geometry -> project -> (refine) -> final image."""

from .errors import Cancelled, InputError, ModelMissingError, PipelineError, StageTimeout
from .images import Texture, load_mask, load_photo, load_texture
from .options import RenderOptions
from .entry import run_render_pipeline
from .runner import Pipeline, RenderResult
from .surfaces import PAINT_ORDER, Surface, SurfaceMaterial

__all__ = [
    "Cancelled", "InputError", "ModelMissingError", "PipelineError", "StageTimeout", "Texture", "load_mask",
    "load_photo", "load_texture", "RenderOptions", "Pipeline", "RenderResult", "run_render_pipeline",
    "PAINT_ORDER", "Surface", "SurfaceMaterial",
]
