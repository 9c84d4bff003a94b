"""Rectified frames of the walls the line geometry found (pipeline/geometry.py): each wall's homography from its
vanishing points, its width from the mask and its own lines, and the walls placed side by side (a corner unrolled)."""

from __future__ import annotations

import numpy as np

from . import wall_frame
from .stages import Wall


def _axes(Kinv, X0, vv_px, vh_px) -> tuple[np.ndarray, np.ndarray]:
    """The wall's horizontal and vertical unit directions (camera frame) through X0, pointing right and down."""
    q = X0 / X0[2]

    def direction(v, axis):
        r = Kinv @ v
        r = r / np.linalg.norm(r)
        motion = r[:2] - q[:2] * r[2]  # image motion of X0 + t r at t = 0
        return r if motion[axis] > 0 else -r

    r_v = direction(vv_px, 1) if vv_px is not None else None
    r_h = direction(vh_px, 0) if vh_px is not None else None
    if r_v is None:
        r_v = np.array([0.0, 1.0, 0.0])
        if r_h is not None:
            r_v = r_v - (r_v @ r_h) * r_h
            r_v /= np.linalg.norm(r_v)
    if r_h is None:
        r_h = np.array([1.0, 0.0, 0.0]) - r_v[0] * r_v
        r_h /= np.linalg.norm(r_h)
    return r_h, r_v


def wall_homography(K, Kinv, anchor, vv_px, vh_px, depth: float = 1.0) -> np.ndarray:
    """Image -> wall frame for the wall through the point at `depth` on the anchor pixel's ray with vertical /
    horizontal vanishing points vv_px, vh_px (pixels; None: an upright camera / courses fronto-parallel), frame
    axes pointing right and down. Walls that share a 3D point share the frame's unit there."""
    X0 = depth * (Kinv @ anchor)
    r_h, r_v = _axes(Kinv, X0, vv_px, vh_px)
    return wall_frame.wall_homography(K, r_h, r_v, X0, K[0, 0])


def depth_on_wall(Kinv, anchor, vv_px, vh_px, pixel) -> float:
    """The depth (in wall_homography's units: the anchor's point at depth 1) at which `pixel`'s ray meets the
    wall through the anchor with those vanishing points."""
    X0 = Kinv @ anchor
    r_h, r_v = _axes(Kinv, X0, vv_px, vh_px)
    normal = np.cross(r_h, r_v)
    return float(normal @ X0) / float(normal @ (Kinv @ pixel))  # both rays have z = 1


def place_walls(walls: list[Wall], supports: list[np.ndarray], warnings: list[str],
                unrolled: bool = False) -> None:
    """Fill `width` and move each wall's rectified mask to start at x = 0 (for a corner: unroll x across it, the
    right wall's x continuing the left wall's) and the top of all walls to y = 0."""
    ext = []
    for k, (wall, sup) in enumerate(zip(walls, supports)):
        e = rect_extent(wall.homography, wall.mask, sup)
        ext.append(e)
        if e[4] > 0.01:
            warnings.append(f"geometry: {100 * e[4]:.0f}% of wall {k}'s mask lies close to or beyond its "
                            "vanishing line (probably not on that wall); left out of its width")
        if e[5]:
            warnings.append(f"geometry: wall {k}'s mask reaches far beyond the wall's straight lines (mask spill "
                            "onto other buildings?); its width is limited to the lined part")
    y0 = min(e[2] for e in ext)
    if unrolled:
        tx = [-ext[0][0], -ext[0][0]]  # the corner is at x = 0 in both walls' unshifted frames
    else:
        tx = [-e[0] for e in ext]
    for wall, e, t in zip(walls, ext, tx):
        T = np.array([[1.0, 0, t], [0, 1.0, -y0], [0, 0, 1.0]])
        wall.homography = T @ wall.homography
        wall.width = float(e[1] - e[0])


def near_vanishing_line(H: np.ndarray, mask: np.ndarray) -> tuple[float, float | None]:
    """(share of the mask's pixels close to or beyond the wall's vanishing line, the homogeneous w below which a
    pixel counts as that: 0.3 x the mask's median w, i.e. one pixel covering ~6x the wall's median footprint;
    None when the median itself is beyond the line)."""
    ys, xs = np.nonzero(mask)
    step = max(1, len(xs) // 20000)
    w_all = H[2, 0] * xs[::step] + H[2, 1] * ys[::step] + H[2, 2]
    w_med = float(np.median(w_all))
    if w_med <= 0:
        return 1.0, None
    return float(np.mean(w_all < 0.3 * w_med)), 0.3 * w_med


def rect_extent(H: np.ndarray, mask: np.ndarray, support: np.ndarray | None = None):
    """(min x, max x, min y, max y, share of the mask left out, clamped?) of the mask in the rectified frame, from
    its boundary pixels (pixel corners included, so a frontal wall of N pixels has width N).

    `support`: (N, 2) pixel positions of the wall's own line segments' end points. The x extent is limited to their
    x range (5th to 95th percentile) widened by half its length on each side (mask spill onto buildings behind the
    wall, far along the wall's plane, would otherwise dominate the width).

    Pixels close to (or beyond) the wall's vanishing line, where one pixel covers more than ~6x the wall's median
    footprint (homogeneous w below 0.3 x its median), are left out: they are almost always mask spill onto
    something that is not this wall, and they would blow the extent up."""
    if not mask.any():
        return 0.0, 0.0, 0.0, 0.0, 0.0, False
    dropped, w_min = near_vanishing_line(H, mask)
    if w_min is None:
        return 0.0, 0.0, 0.0, 0.0, 1.0, False
    u, v = wall_frame.to_frame(H, *wall_frame.boundary_corners(mask), w_min=w_min)
    if not len(u):
        return 0.0, 0.0, 0.0, 0.0, dropped, False
    u0, u1 = float(u.min()), float(u.max())
    clamped = False
    if support is not None and len(support) >= 4:
        q = H @ np.concatenate([support.T, np.ones((1, len(support)))])
        okq = q[2] > w_min
        if okq.sum() >= 4:
            su = q[0, okq] / q[2, okq]
            lo, hi = (float(x) for x in np.percentile(su, [5, 95]))
            lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
            if u0 < lo or u1 > hi:
                clamped = (min(u1, hi) - max(u0, lo)) < 0.9 * (u1 - u0)
                u0, u1 = max(u0, lo), min(u1, hi)
                if u1 <= u0:
                    u0, u1 = float(u.min()), float(u.max())
                    clamped = False
    return u0, u1, float(v.min()), float(v.max()), dropped, clamped
