"""Render options: one definition shared by the API, the CLI and the pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .errors import InputError

MIN_SCALE, MAX_SCALE = 1.0, 400.0
MAX_STAGE_TIMEOUT = 3600.0
MIN_SWATCH_WIDTH_M, MAX_SWATCH_WIDTH_M = 0.05, 20.0


@dataclass(frozen=True)
class RenderOptions:
    # How many times the swatch repeats horizontally across the widest painted wall,
    # measured in that wall's rectified (fronto-parallel) frame.
    real_world_scale: float = 24.0
    enable_refinement: bool = False
    refinement_seed: int = 42
    # Per-stage time limit in seconds; None means the pipeline's defaults (see runner.DEFAULT_STAGE_LIMITS).
    stage_timeout_seconds: float | None = None
    # The real width (metres) the swatch image shows. When set, the tile size comes from the walls' metric scale
    # estimated from the photo (doors, garage doors, windows) and real_world_scale is only the fallback when no
    # such cue is found. None: real_world_scale alone, as before. 0.05-20.
    swatch_width_m: float | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> "RenderOptions":
        """Validate untrusted options (e.g. JSON). Raises InputError with a {field: reason} dict."""
        raw = dict(raw or {})
        problems: dict[str, str] = {}
        known = {f.name for f in fields(cls)}
        for key in raw:
            if key not in known:
                problems[f"options.{key}"] = "unknown option"
        values: dict[str, Any] = {}

        scale = raw.get("real_world_scale", cls.real_world_scale)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            problems["options.real_world_scale"] = "must be a number"
        elif not (MIN_SCALE <= scale <= MAX_SCALE):
            problems["options.real_world_scale"] = f"must be between {MIN_SCALE:g} and {MAX_SCALE:g}"
        else:
            values["real_world_scale"] = float(scale)

        refine = raw.get("enable_refinement", cls.enable_refinement)
        if not isinstance(refine, bool):
            problems["options.enable_refinement"] = "must be true or false"
        else:
            values["enable_refinement"] = refine

        seed = raw.get("refinement_seed", cls.refinement_seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            problems["options.refinement_seed"] = "must be an integer"
        elif not (0 <= seed < 2**32):
            problems["options.refinement_seed"] = "must be between 0 and 4294967295"
        else:
            values["refinement_seed"] = seed

        timeout = raw.get("stage_timeout_seconds", cls.stage_timeout_seconds)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                problems["options.stage_timeout_seconds"] = "must be a number or null"
            elif not (0 < timeout <= MAX_STAGE_TIMEOUT):
                problems["options.stage_timeout_seconds"] = f"must be > 0 and <= {MAX_STAGE_TIMEOUT:g}"
            else:
                values["stage_timeout_seconds"] = float(timeout)

        width = raw.get("swatch_width_m", cls.swatch_width_m)
        if width is not None:
            if isinstance(width, bool) or not isinstance(width, (int, float)):
                problems["options.swatch_width_m"] = "must be a number or null"
            elif not (MIN_SWATCH_WIDTH_M <= width <= MAX_SWATCH_WIDTH_M):
                problems["options.swatch_width_m"] = (f"must be between {MIN_SWATCH_WIDTH_M:g} and "
                                                      f"{MAX_SWATCH_WIDTH_M:g} (metres)")
            else:
                values["swatch_width_m"] = float(width)

        if problems:
            err = InputError("invalid options: " + "; ".join(f"{k}: {v}" for k, v in problems.items()))
            err.details = problems  # type: ignore[attr-defined]
            raise err
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
