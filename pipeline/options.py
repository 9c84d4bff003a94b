"""Render options: one definition (fields, defaults, bounds) shared by the API, the CLI, the console and the pipeline.

`RenderOptions` is a pydantic dataclass: the job API validates the request's `options` against it and publishes
its JSON schema, the CLI and the console build it through `from_mapping`, and the bounds below are the only copy of
each limit. Fields are strict (no "24" for 24, no true for 1): a client's typo is refused, never coerced.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Iterable, Mapping

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from .errors import InputError

MIN_SCALE, MAX_SCALE = 1.0, 400.0
MAX_SEED = 2**32 - 1
MAX_STAGE_TIMEOUT = 3600.0
MIN_SWATCH_WIDTH_M, MAX_SWATCH_WIDTH_M = 0.05, 20.0


# The real width a swatch image shows; also a per-surface field of the job API's `surfaces` entries.
SwatchWidth = Annotated[float | None, Field(
    ge=MIN_SWATCH_WIDTH_M, le=MAX_SWATCH_WIDTH_M, strict=True,
    description="real width (m) the swatch image shows: tile size from the wall's estimated metric scale; "
                "real_world_scale is the fallback")]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RenderOptions:
    real_world_scale: Annotated[float, Field(
        ge=MIN_SCALE, le=MAX_SCALE, strict=True,
        description="how many times the swatch repeats horizontally across the widest painted wall, measured in "
                    "that wall's rectified (fronto-parallel) frame; larger = smaller bricks")] = 24.0
    enable_refinement: Annotated[bool, Field(
        strict=True, description="diffusion refinement (needs the GPU model set; else pipeline_error)")] = False
    refinement_seed: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 42
    # None means the pipeline's defaults (see runner.DEFAULT_STAGE_LIMITS).
    stage_timeout_seconds: Annotated[float | None, Field(
        gt=0, le=MAX_STAGE_TIMEOUT, strict=True,
        description="per-stage time limit; exceeded -> failed with error_code timeout")] = None
    # When set, the tile size comes from the walls' metric scale estimated from the photo (doors, garage doors,
    # windows) and real_world_scale is only the fallback when no such cue is found. None: real_world_scale alone.
    swatch_width_m: SwatchWidth = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> "RenderOptions":
        """Validate untrusted options (e.g. JSON). Raises InputError with a {"options.<name>": reason} dict."""
        try:
            return _ADAPTER.validate_python(dict(raw or {}))
        except ValidationError as exc:
            problems = option_problems(exc.errors())
            err = InputError("invalid options: " + "; ".join(f"{k}: {v}" for k, v in problems.items()))
            err.details = problems  # type: ignore[attr-defined]
            raise err from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ADAPTER = TypeAdapter(RenderOptions)


def _limits(name: str) -> tuple[float | None, float | None, bool]:
    """(lowest, highest, lowest excluded) of option `name`, read from its Field."""
    low = high = None
    open_low = False
    for rule in RenderOptions.__pydantic_fields__[name].metadata:
        if getattr(rule, "gt", None) is not None:
            low, open_low = rule.gt, True
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high, open_low


def bounds(name: str) -> tuple[float | None, float | None]:
    """(lowest, highest) allowed value of option `name`, for forms and help texts."""
    return _limits(name)[:2]


_TYPE_WORDS = {"float_type": "must be a number", "int_type": "must be an integer", "bool_type": "must be true or false",
               "int_from_float": "must be an integer"}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def option_reason(name: str, error: Mapping[str, Any]) -> str:
    """One pydantic error about option `name` in the API's words."""
    kind = error["type"]
    field = RenderOptions.__pydantic_fields__.get(name)
    if kind in ("unexpected_keyword_argument", "extra_forbidden") or field is None:
        return "unknown option"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high, open_low = _limits(name)
        return f"must be > {_num(low)} and <= {_num(high)}" if open_low else \
            f"must be between {_num(low)} and {_num(high)}"
    word = _TYPE_WORDS.get(kind, error.get("msg", "invalid"))
    return word + " or null" if kind in _TYPE_WORDS and field.default is None else word


def option_problems(errors: Iterable[Mapping[str, Any]], prefix: str = "options") -> dict[str, str]:
    """pydantic errors located inside the options -> {"options.<name>": reason}."""
    problems: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
        if not loc:
            problems[prefix] = "must be a JSON object"
            continue
        problems.setdefault(f"{prefix}.{loc[0]}", option_reason(loc[0], error))
    return problems
