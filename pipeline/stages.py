"""The data that passes between stages, and the small protocols that model backends implement.

Stages are plain functions on numpy arrays; backends (embedded CPU set, GPU set) plug in behind these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


class PipelineStage(StrEnum):
    """The pipeline's stages, in running order (the names in timings, backends, progress and time limits)."""

    SEGMENT = "segment"
    GEOMETRY = "geometry"
    PROJECT = "project"
    REFINE = "refine"


class Segmenter(Protocol):
    """Paintable-wall segmentation backend."""

    name: str

    def paint_probability(self, image: np.ndarray) -> np.ndarray:
        """image: uint8 RGB (H, W, 3) -> float32 (H, W) in [0, 1], probability that a pixel is paintable wall."""


@dataclass
class Wall:
    """One planar wall. `homography` maps image pixel coords (x, y, 1) to the wall's rectified plane, in which
    the wall is fronto-parallel, x runs along the wall and y runs down, with vertical lines staying vertical.
    Units are arbitrary but isotropic (one unit is the same length along x and y)."""

    mask: np.ndarray  # bool (H, W): pixels of the paint mask that belong to this wall
    homography: np.ndarray  # float64 (3, 3)
    width: float = 0.0  # extent of `mask` along x in the rectified frame (same units as the homography)
    # how well the image's lines pin this wall's plane down (0..1); a low one means a safe fallback was used
    confidence: float = 1.0


@dataclass
class VanishingPoints:
    """The directions a line method measured (never ones it assumed): homogeneous image pixels. Other geometry
    methods (the GPU depth path) take these as cues instead of reverse-engineering walls or warning texts."""

    vertical: np.ndarray | None = None
    horizontal: list[np.ndarray] = field(default_factory=list)  # one per wall direction, 0 to 2


@dataclass
class Geometry:
    walls: list[Wall]
    backend: str
    warnings: list[str] = field(default_factory=list)
    vanishing: VanishingPoints | None = None  # what the lines measured; None when no line method ran


class GeometryEstimator(Protocol):
    name: str

    def estimate(self, image: np.ndarray, mask: np.ndarray) -> Geometry:
        """image uint8 RGB (H, W, 3), mask bool (H, W) -> walls covering the mask."""


class Refiner(Protocol):
    name: str

    def refine(self, image: np.ndarray, composite: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        """Returns a refined composite; pixels outside `mask` must be left to the caller to restore."""
