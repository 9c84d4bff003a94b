"""Geometry stage, GPU model set: Depth Anything V2 -> vertical wall planes -> one homography per wall.

1. Depth. Depth Anything V2 (relative) predicts disparity up to scale (its shift is taken as zero); depth = 1 /
   disparity, normalised by the median over the mask.
2. Camera. Pinhole, principal point at the centre. The focal length and the vertical direction come from the
   embedded line method (LineGeometry, run on the CPU while the GPU computes depth): its walls' homographies give
   the vanishing points (H^-1 e1: along the wall, H^-1 e2: vertical); f^2 = -(a . b) for finite orthogonal pairs.
   Without them: f = DEFAULT_FOCAL x long side, vertical = image y.
3. Planes. Pixels are back-projected, normals come from the depth's gradients; wall-like points (normal near
   horizontal) vote for the building's main directions (a histogram of azimuths modulo 90 degrees). Sequential
   RANSAC fits planes that are kept vertical by construction (two points + the vertical direction), snapped to a
   main direction when close, then every mask pixel goes to the plane that explains its depth best.
4. Orientation refinement. A wall whose direction is within REFINE_DEG of a vanishing-point direction takes the
   vanishing point's (lines are more precise than depth gradients).
5. Homographies as in the embedded method: G = K [r_h | r_v | X0], H ~ diag(u, u, 1) G^-1 with one unit u for all
   walls (pixels at the main wall's depth), a common height reference, x unrolled left to right, y = 0 at the top.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from ..geometry_vanishing import DEFAULT_FOCAL  # one typical focal length for both geometries
from ..models import require
from ..stages import Geometry, Wall
from .device import DeviceChoice, image_tensor, load_pretrained, normalisation, preprocessor_config, resized, size_spec
from .planes import LineCues, camera, down_direction, line_cues, wall_planes, walls_from_planes


class DepthModel:
    """Depth Anything V2 (transformers): image -> relative disparity (larger = nearer)."""

    def __init__(self, folder: Path, choice: DeviceChoice, side: int | None = None):
        from transformers import DepthAnythingForDepthEstimation

        self.choice = choice
        self.model = load_pretrained(DepthAnythingForDepthEstimation, folder, choice)
        pre = preprocessor_config(folder)
        size = size_spec(pre)
        self.side = side or int(size.get("height", 518))
        self.multiple = int(pre.get("ensure_multiple_of", 14))
        self.scale, self.offset = normalisation(pre, choice)

    def working_size(self, H: int, W: int) -> tuple[int, int]:
        """Aspect ratio kept, shorter side >= side, multiples of 14 (the processor's 'lower_bound' resize)."""
        s = self.side / min(H, W)
        m = self.multiple
        return max(m, math.ceil(H * s / m) * m), max(m, math.ceil(W * s / m) * m)

    def disparity(self, x: torch.Tensor) -> torch.Tensor:
        """x (1, 3, H, W) 0..255 on the device -> (h, w) float32 at the working size. Call inside choice.run()."""
        h, w = self.working_size(*x.shape[-2:])
        pixels = (resized(x, (h, w), mode="bicubic") * self.scale + self.offset).to(self.choice.dtype)
        return self.model(pixel_values=pixels).predicted_depth[0].float()


# -- the stage ----------------------------------------------------------------------------------------------------

class DepthGeometry:
    """GeometryEstimator protocol implementation: depth planes + the embedded line method (module docstring)."""

    def __init__(self, model_dir: Path | str | None, choice: DeviceChoice, *, depth: DepthModel | None = None,
                 lines=None, seed: int = 0, plane_side: int = 320):
        self.choice = choice
        self.plane_side = plane_side
        self.depth = depth or DepthModel(require(Path(model_dir), "depth-anything-v2"), choice)
        if lines is None:
            from ..geometry import LineGeometry

            lines = LineGeometry()
        self.lines = lines
        self.seed = seed
        self.name = f"gpu:depth-anything-v2+vertical-ransac+vanishing-points ({choice.label})"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geometry-lines")

    def estimate(self, image: np.ndarray, mask: np.ndarray) -> Geometry:
        image = np.ascontiguousarray(image)
        mask = np.asarray(mask, bool)
        H, W = mask.shape
        if not mask.any():
            return Geometry([Wall(mask.copy(), np.eye(3), 0.0)], self.name, ["geometry: the mask is empty"])
        pending = self._pool.submit(self.lines.estimate, image, mask)  # CPU, while the GPU computes depth
        with self.choice.run("geometry"):
            disparity = self.depth.disparity(image_tensor(image, self.choice)).cpu().numpy().astype(np.float64)
        warnings: list[str] = []
        try:
            cues = line_cues(pending.result(), (H, W))
        except Exception as exc:  # the line method is a refinement: depth alone still gives walls
            cues = LineCues()
            warnings.append(f"geometry: line detection failed ({type(exc).__name__}: {exc}); depth only")
        focal = cues.focal or DEFAULT_FOCAL * max(H, W)
        K = camera((H, W), focal)
        h, w = disparity.shape
        if max(h, w) > self.plane_side:  # planes are fitted on a coarser grid: 77k points are plenty
            s = self.plane_side / max(h, w)
            h, w = max(8, round(h * s)), max(8, round(w * s))
            disparity = cv2.resize(disparity, (w, h), interpolation=cv2.INTER_AREA)
        small = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        if not small.any():
            small = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0
        K_work = np.diag([w / W, h / H, 1.0]) @ K
        K_work[0, 2], K_work[1, 2] = (w - 1) / 2.0, (h - 1) / 2.0
        down = down_direction(cues, K)
        planes, labels, depth, more = wall_planes(disparity, small, K_work, down, cues, K, self.seed)
        warnings += more
        walls = walls_from_planes(planes, labels, mask, depth, K_work, K, down)
        if not walls:
            walls = [Wall(mask.copy(), np.eye(3), float(W))]
        return Geometry(walls, self.name, warnings)
