"""The rectified wall frame, shared by every geometry method (pipeline/geometry.py, pipeline/gpu/planes.py).

A wall's frame: x along the wall, y down, the wall fronto-parallel; `Wall.homography` maps image pixels into it.
"""

from __future__ import annotations

import cv2
import numpy as np


def wall_homography(K: np.ndarray, r_h: np.ndarray, r_v: np.ndarray, X0: np.ndarray, unit: float) -> np.ndarray:
    """Image -> wall frame for the plane through the 3-D point X0 (camera frame) spanned by the unit directions
    r_h (along the wall) and r_v (down it), `unit` frame units per 3-D unit; scaled so that w = 1 at X0's pixel
    (and w > 0 on the wall's side of its vanishing line)."""
    G = K @ np.stack([r_h, r_v, X0], axis=1)
    H = np.diag([unit, unit, 1.0]) @ np.linalg.inv(G)
    q = K @ X0
    return H / (H[2] @ (q / q[2]))


def boundary_corners(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the four corners of every boundary pixel of the mask: its outline at pixel-corner precision (a
    frontal wall of N pixels spans N units)."""
    m8 = mask.astype(np.uint8)
    edge = m8 - cv2.erode(m8, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(edge)
    xs = np.concatenate([xs - 0.5, xs + 0.5, xs - 0.5, xs + 0.5]).astype(np.float64)
    ys = np.concatenate([ys - 0.5, ys - 0.5, ys + 0.5, ys + 0.5]).astype(np.float64)
    return xs, ys


def to_frame(H: np.ndarray, xs: np.ndarray, ys: np.ndarray, w_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Image points -> (u, v) in the wall frame, leaving out those with homogeneous w <= w_min (at or beyond the
    wall's vanishing line, where a pixel covers an unbounded stretch of wall)."""
    p = H @ np.stack([xs, ys, np.ones_like(xs)])
    ok = p[2] > w_min
    return p[0, ok] / p[2, ok], p[1, ok] / p[2, ok]
