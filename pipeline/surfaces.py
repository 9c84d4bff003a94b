"""Several surfaces in one render: which house parts take a material, in which order, and on which geometry.

A job paints the wall with its main swatch (or colour) and may name more surfaces, each with its own material:
`SurfaceMaterial(surface, texture, swatch_width_m=None, mask=None)`. One segmentation serves them all (the house
parser's per-class masks, `pipeline.segment.segment_surfaces`); a client mask replaces one surface's mask.

* Order. Surfaces are composited back to front, `PAINT_ORDER`: roof (behind the walls at the eaves), wall, trim
  (frames and corner boards sit on the wall), garage door, door (the smallest, front-most parts last). The parser's
  masks do not overlap, so the order only decides who wins on the feathered fringe where two surfaces meet and
  where client masks overlap (the later one).
* Light. Every surface's shading comes from the photo itself (never from the surface painted before it), with its
  own median as reference: a paint colour keeps that surface's shading, a swatch its own mean colour.
* Geometry. The walls' planes come from the wall mask (pipeline/geometry.py). Trim, doors and garage doors lie in
  the wall planes: each pixel takes the plane of the nearest wall (`covering_geometry`). Roofs get the same
  mapping, which is the safest one we have: courses run parallel to the eave of the wall below (the eave is
  parallel to that wall, so its horizontal vanishing point is the eave's), and the down-slope direction is taken as
  the wall's vertical. Roof planes themselves (their pitch) are not estimated: rows are spaced as on an upright
  wall (a real pitched roof seen from the street looks more foreshortened), and a hip roof's side slopes take the
  courses of the wall below them.
* Size. Every surface's tile is the wall's tile (the same `real_world_scale` over the widest painted wall), unless
  that surface sets `swatch_width_m`: then it is sized from the wall's metric scale like the wall's own.
* Windows are glass and are never painted; shutters are part of the parser's `trim` class, so there is no
  separate `shutters` surface (`NOT_PAINTABLE` says why to a client that asks).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from .images import Source, Texture
from .stages import Geometry, Wall


class Surface(StrEnum):
    """The house parts a render can give a material, in back-to-front paint order."""

    ROOF = "roof"
    WALL = "wall"
    TRIM = "trim"
    GARAGE_DOOR = "garage_door"
    DOOR = "door"


PAINT_ORDER = tuple(Surface)
SURFACE_NAMES = frozenset(s.value for s in Surface)
# the surfaces a job names beside its main material (the wall's is the job's own texture), back to front
EXTRA_SURFACES = tuple(s for s in PAINT_ORDER if s != Surface.WALL)
# Names a client might try that are not surfaces of their own, with the reason.
NOT_PAINTABLE = {
    "window": "windows are glass and are never painted",
    "shutters": "shutters are part of the trim surface (the house parser does not separate them): use 'trim'",
}


def unknown_surface_reason(name: Any) -> str:
    """The reason a surface name is refused (for a name that is not a Surface)."""
    known = ", ".join(PAINT_ORDER)
    return NOT_PAINTABLE.get(str(name), f"unknown surface; one of {known}")


def is_surface(name: Any) -> bool:
    return isinstance(name, str) and name in SURFACE_NAMES


def extra_surface_refusal(name: Any, wall: str) -> str | None:
    """None when `name` is an extra surface; else why not. `wall`: what to say about the wall, whose material each
    caller takes in its own way (the job's texture, the CLI's swatch argument)."""
    if name == Surface.WALL:
        return wall
    return None if is_surface(name) else unknown_surface_reason(name)


@dataclass(frozen=True)
class SurfaceMaterial:
    """One extra surface of a job: its material (swatch image or '#RRGGBB'), optional swatch width in metres,
    optional client mask (white = paint this surface)."""

    surface: Surface
    texture: Source | Texture
    swatch_width_m: float | None = None
    mask: Source | None = None


def covering_geometry(geometry: Geometry, shape: tuple[int, int]) -> Geometry:
    """The walls' planes extended over the whole image: every pixel belongs to the nearest wall (for surfaces
    that sit in or on the wall planes: trim, doors, garage doors, and the roof's eave-parallel courses)."""
    walls = [w for w in geometry.walls if np.asarray(w.mask, bool).any()] or geometry.walls[:1]
    if len(walls) <= 1:
        return Geometry([Wall(np.ones(shape, bool), w.homography, w.width, w.confidence) for w in walls],
                        geometry.backend)
    label = np.zeros(shape, np.int32)  # 0 = no wall; k + 1 = wall k
    for k, wall in enumerate(walls):
        label[np.asarray(wall.mask, bool) & (label == 0)] = k + 1
    # nearest zero pixel of the "not a wall" image = nearest wall pixel; its own label says which wall
    _, nearest = cv2.distanceTransformWithLabels((label == 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    owner = np.zeros(int(nearest.max()) + 1, np.int32)
    zero = label == 0
    owner[nearest[~zero]] = label[~zero]
    full = np.where(zero, owner[nearest], label)
    return Geometry([Wall(full == k + 1, w.homography, w.width, w.confidence) for k, w in enumerate(walls)],
                    geometry.backend)
