"""The job API's request body as a pydantic model: FastAPI validates it and publishes its JSON schema.

Extending the body (e.g. a `surfaces` list) is a new field here; its errors come back in the documented
`{error: "validation_failed", details: {field: reason}}` shape through `problems()`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Iterable, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.options import RenderOptions, SwatchWidth, option_problems, option_reason
from pipeline.surfaces import PAINT_ORDER, Surface, is_surface, unknown_surface_reason

from .fetch import check_url_syntax
from .domain import WebhookEvent
from .refs import normal_colour


def _http_url(value: str) -> str:
    reason = check_url_syntax(value)
    if reason:
        raise ValueError(reason)
    return value


def _texture(value: str) -> str:
    """A swatch URL or a paint colour; colours are stored as "#RRGGBB"."""
    if value.strip().startswith("#"):
        colour = normal_colour(value)
        if colour is None:
            raise ValueError("a paint colour must be written #RRGGBB")
        return colour
    reason = check_url_syntax(value)
    if reason:
        raise ValueError(reason + " (or give a paint colour #RRGGBB)")
    return value


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def _surface(value: str) -> str:
    if not is_surface(value):
        raise ValueError(unknown_surface_reason(value))
    return value


HttpUrl = Annotated[str, Field(strict=True, json_schema_extra={"format": "uri"}), AfterValidator(_http_url)]
SurfaceName = Annotated[str, Field(strict=True, json_schema_extra={"enum": list(PAINT_ORDER)}),
                        AfterValidator(_surface)]
TextureRef = Annotated[str, Field(strict=True), AfterValidator(_texture)]
Uuid = Annotated[str, Field(strict=True, json_schema_extra={"format": "uuid"}), AfterValidator(_uuid)]


class SurfaceRequest(BaseModel):
    """One more surface of the house with its own material (pipeline/surfaces.py)."""

    model_config = ConfigDict(extra="forbid")

    surface: SurfaceName = Field(description="roof, trim (shutters included), door or garage_door; `wall` is the "
                                             "top-level texture_url (allowed here only with the same texture)")
    texture_url: TextureRef = Field(description="this surface's swatch image URL, or a paint colour '#RRGGBB'",
                                    examples=["#F4F1EA"])
    swatch_width_m: SwatchWidth = None
    mask_url: HttpUrl | None = Field(None, description="optional mask of this surface, same size as the photo, "
                                                       "white = paint; replaces the automatic one")


def _field_problem(field: str, reason: str) -> PydanticCustomError:
    """An error about one field found by a check across fields; `problems()` reports it under `field`."""
    return PydanticCustomError("field_problem", "{field}: {reason}", {"field": field, "reason": reason})


class RenderRequest(BaseModel):
    """POST /render/jobs. Unknown fields are refused (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")

    image_url: HttpUrl = Field(description="the house photo (http/https)")
    texture_url: TextureRef = Field(description="the swatch image URL, or a paint colour '#RRGGBB'",
                                    examples=["https://example.com/swatches/brick.jpg", "#B04A3A"])
    project_id: Uuid | None = Field(None, description="optional; requires user_id")
    user_id: Uuid | None = Field(None, description="required when project_id is given", validate_default=True)
    mask_url: HttpUrl | None = Field(None, description="optional paint mask, same size as the photo, white = paint")
    options: RenderOptions | None = None
    webhook_url: HttpUrl | None = Field(None, description="POSTed a signed JSON delivery for each of "
                                        "webhook_events (the poll body + event, delivery_id, timestamp)")
    webhook_events: list[WebhookEvent] | None = Field(None, description="completed, failed, progress; default "
                                                      "completed and failed", min_length=1)
    surfaces: list[SurfaceRequest] | None = Field(
        None, max_length=len(PAINT_ORDER),
        description="more surfaces, each with its own material, painted back to front: " + ", ".join(PAINT_ORDER))

    @model_validator(mode="after")
    def _one_entry_per_surface(self) -> "RenderRequest":
        """Each surface once; a `wall` entry is folded into the top-level fields it repeats (the same texture,
        and its mask / swatch width where those are not given at the top)."""
        if not self.surfaces:
            return self
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.surfaces):
            if entry.surface in seen:
                raise _field_problem(f"surfaces[{i}].surface", f"duplicate: surfaces[{seen[entry.surface]}] is "
                                                               f"already {entry.surface}")
            seen[entry.surface] = i
        if Surface.WALL in seen:
            i = seen[Surface.WALL]
            wall = self.surfaces[i]
            if wall.texture_url != self.texture_url:
                raise _field_problem(f"surfaces[{i}].texture_url", "the wall's material is the top-level "
                                                                   "texture_url, and this one differs")
            if wall.mask_url is not None:
                if self.mask_url not in (None, wall.mask_url):
                    raise _field_problem(f"surfaces[{i}].mask_url", "differs from the top-level mask_url")
                self.mask_url = wall.mask_url
            if wall.swatch_width_m is not None:
                options = self.options or RenderOptions()
                if options.swatch_width_m not in (None, wall.swatch_width_m):
                    raise _field_problem(f"surfaces[{i}].swatch_width_m", "differs from options.swatch_width_m")
                self.options = RenderOptions(**{**options.to_dict(), "swatch_width_m": wall.swatch_width_m})
            self.surfaces = [e for e in self.surfaces if e.surface != Surface.WALL]
        return self

    @field_validator("webhook_events")
    @classmethod
    def _events_with_url(cls, value: list[WebhookEvent] | None, info: ValidationInfo) -> list[WebhookEvent] | None:
        if value is not None and info.data.get("webhook_url") is None:
            raise ValueError("needs webhook_url")
        return None if value is None else list(dict.fromkeys(value))  # each event once, in the given order

    @field_validator("user_id")
    @classmethod
    def _user_with_project(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("project_id") is not None:
            raise ValueError("required when project_id is given")
        return value


MAX_CURSOR = 200  # characters: a real cursor (a timestamp and a job id) is about 80
MAX_LIMIT, DEFAULT_LIMIT = 100, 20  # jobs per page of GET /render/jobs


def _cursor(value: str) -> str:
    from .listing import decode_cursor

    decode_cursor(value)  # raises ValueError with the reason
    return value


class ListQuery(BaseModel):
    """GET /render/jobs query: filters, page size, and the cursor of the previous page (its next_cursor)."""

    model_config = ConfigDict(extra="forbid")

    project_id: Uuid | None = Field(None, description="only this project's jobs")
    user_id: Uuid | None = Field(None, description="only this user's jobs")
    status: Literal["processing", "completed", "failed", "canceled"] | None = Field(
        None, description="processing (queued or running), completed, failed (canceled included), canceled")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"jobs per page (1-{MAX_LIMIT})")
    cursor: Annotated[str | None, AfterValidator(lambda v: v if v is None else _cursor(v))] = Field(
        None, max_length=MAX_CURSOR, description="next_cursor of the previous page")


def _reason(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_type":
        return "must be a string"
    if kind == "list_type":
        return "must be a list"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "too_long":
        return f"at most {error.get('ctx', {}).get('max_length')} entries"
    if kind == "value_error":  # our validators' own words
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return error["msg"]


def problems(errors: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """FastAPI's validation errors -> {field: reason} ("options.<name>" inside the options, "body" for the body
    as a whole, the header's name for a header)."""
    found: dict[str, str] = {}
    option_errors = []
    for error in errors:
        if error["type"] == "field_problem":  # a check across fields names its own field
            found.setdefault(error["ctx"]["field"], error["ctx"]["reason"])
            continue
        if len(error["loc"]) > 1 and error["loc"][1] == "surfaces":
            path = _path(error["loc"][1:])
            found.setdefault(path, option_reason("swatch_width_m", error) if path.endswith(".swatch_width_m")
                             else _reason(error))
            continue
        where, *loc = [part for part in error["loc"] if not isinstance(part, int)]
        if where == "header":
            found[str(loc[0]) if loc else "header"] = _reason(error)
        elif not loc:  # the body itself: absent, not JSON, not an object
            found["body"] = _body_reason(error)
        elif loc[0] == "options":
            option_errors.append({**error, "loc": tuple(loc[1:])})
        else:
            found.setdefault(str(loc[0]), _reason(error))
    found.update(option_problems(option_errors))
    return found


def _path(loc: Iterable[Any]) -> str:
    """("surfaces", 1, "surface") -> "surfaces[1].surface"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _body_reason(error: Mapping[str, Any]) -> str:
    if error["type"] in ("json_invalid", "missing"):
        return "not valid JSON"
    if isinstance(error.get("input"), (bytes, bytearray)):  # FastAPI reads only JSON content types as JSON
        return "must be JSON (Content-Type: application/json)"
    if error["type"] in ("model_attributes_type", "model_type", "dict_type"):
        return "must be a JSON object"
    return error["msg"]


def validate_request(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A parsed body -> (the job's stored fields, {}) or ({}, {field: reason}): the API's validation without HTTP."""
    from pydantic import ValidationError

    from .service import JobSpec

    try:
        request = RenderRequest.model_validate(body)
    except ValidationError as exc:
        return {}, problems({**error, "loc": ("body", *error["loc"])} for error in exc.errors())
    return JobSpec.from_request(request).fields(), {}
