"""Wall planes from depth, pure numpy: camera, vanishing-point cues, vertical RANSAC planes, homographies.

Used by pipeline/gpu/depth.py (DepthGeometry); see its docstring for the method. Units: depth is relative (the
median over the mask is 1); every function works in the camera frame of a pinhole K (x right, y down, z forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import wall_frame
from ..stages import Geometry, Wall

REFINE_DEG = 15.0
SNAP_DEG = 15.0
WALL_NORMAL_MAX_TILT = 0.4  # |n . vertical| below this: a wall-like point (within ~24 degrees of vertical)


# -- camera and line cues -----------------------------------------------------------------------------------------

@dataclass
class LineCues:
    vertical: np.ndarray | None = None  # vanishing point, homogeneous image pixels
    horizontal: list[np.ndarray] = field(default_factory=list)
    focal: float | None = None  # pixels


def line_cues(lines: Geometry | None, shape: tuple[int, int]) -> LineCues:
    """The vanishing points the line method measured (none when it fell back or assumed a direction), with a focal
    length from their orthogonality."""
    cues = LineCues()
    if lines is None or lines.vanishing is None:
        return cues
    cues.vertical = lines.vanishing.vertical
    cues.horizontal = list(lines.vanishing.horizontal)
    h, w = shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    pairs = [(cues.vertical, v) for v in cues.horizontal]
    if len(cues.horizontal) == 2:
        pairs.append(tuple(cues.horizontal))
    est = []
    for a, b in pairs:
        if a is None or abs(a[2]) < 1e-9 or abs(b[2]) < 1e-9:
            continue
        pa, pb = a[:2] / a[2] - c, b[:2] / b[2] - c
        f2 = -float(pa @ pb)
        L = max(h, w)
        if f2 > 0 and 0.25 * L <= math.sqrt(f2) <= 4 * L and max(np.hypot(*pa), np.hypot(*pb)) < 10 * L:
            est.append(math.sqrt(f2))
    cues.focal = float(np.exp(np.mean(np.log(est)))) if est else None
    return cues


def camera(shape: tuple[int, int], focal: float) -> np.ndarray:
    h, w = shape
    return np.array([[focal, 0, (w - 1) / 2.0], [0, focal, (h - 1) / 2.0], [0, 0, 1.0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-12)


def down_direction(cues: LineCues, K: np.ndarray) -> np.ndarray:
    """Unit vector of gravity (down) in camera coordinates (y points down the image)."""
    if cues.vertical is None:
        return np.array([0.0, 1.0, 0.0])
    d = _unit(np.linalg.inv(K) @ cues.vertical)
    return d if d[1] > 0 else -d


# -- planes -------------------------------------------------------------------------------------------------------

@dataclass
class Plane:
    normal: np.ndarray  # unit, horizontal, pointing away from the camera
    offset: float  # normal . X = offset (> 0) for X on the plane
    inliers: np.ndarray  # indices into the wall-like points
    refined: bool = False  # orientation taken from a vanishing point


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1)
    return rays * depth[..., None]


def normals(points: np.ndarray) -> np.ndarray:
    """Unit normals (h, w, 3) from central differences, pointing away from the camera."""
    tx = np.zeros_like(points)
    ty = np.zeros_like(points)
    tx[:, 1:-1] = points[:, 2:] - points[:, :-2]
    ty[1:-1] = points[2:] - points[:-2]
    n = np.cross(tx, ty)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    flip = (n * points).sum(-1) < 0
    n[flip] *= -1
    return n


def main_direction(normal: np.ndarray, down: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Azimuth (radians, modulo pi/2) of the dominant wall direction, from horizontal normals (N, 3)."""
    e1 = _unit(np.array([1.0, 0, 0]) - down[0] * down)
    e2 = np.cross(down, e1)
    az = np.mod(np.arctan2(normal @ e2, normal @ e1), np.pi / 2)
    hist = np.bincount(np.minimum((az / (np.pi / 2) * 90).astype(int), 89), weights, minlength=90)
    smooth = sum(np.roll(hist, k) for k in range(-3, 4))
    peak = (int(np.argmax(smooth)) + 0.5) * (np.pi / 2) / 90
    delta = np.angle(np.exp(4j * (az - peak))) / 4  # signed difference modulo pi/2
    near = np.abs(delta) < math.radians(10)
    return float(peak + (np.average(delta[near], weights=None if weights is None else weights[near])
                         if near.any() else 0.0))


def _azimuth_normal(phi: float, down: np.ndarray) -> np.ndarray:
    e1 = _unit(np.array([1.0, 0, 0]) - down[0] * down)
    e2 = np.cross(down, e1)
    return math.cos(phi) * e1 + math.sin(phi) * e2


def _snap(n: np.ndarray, mains: np.ndarray, limit_deg: float) -> tuple[np.ndarray, bool]:
    cos = mains @ n
    k = int(np.argmax(cos))
    if cos[k] > math.cos(math.radians(limit_deg)):
        return mains[k], True
    return n, False


def fit_vertical_planes(points: np.ndarray, normal: np.ndarray, down: np.ndarray, rng: np.random.Generator, *,
                        max_planes: int = 4, hypotheses: int = 256, tol: float = 0.03,
                        min_fraction: float = 0.06) -> list[Plane]:
    """Sequential RANSAC for vertical planes through wall-like points (N, 3) with normals (N, 3).
    tol: residual tolerance relative to each point's depth."""
    n_all = len(points)
    if n_all < 20:
        return []
    phi0 = main_direction(normal, down)
    mains = np.array([_azimuth_normal(phi0 + k * np.pi / 2, down) for k in range(4)])
    scale = tol * points[:, 2]
    remaining = np.arange(n_all)
    planes: list[Plane] = []
    min_count = max(20, int(min_fraction * n_all))
    cos_agree = math.cos(math.radians(30))
    while len(planes) < max_planes and len(remaining) >= min_count:
        P, N, S = points[remaining], normal[remaining], scale[remaining]
        sample = remaining if len(remaining) <= 4000 else rng.choice(remaining, 4000, replace=False)
        Ps, Ns, Ss = points[sample], normal[sample], scale[sample]
        i = rng.choice(len(sample), hypotheses)
        j = rng.choice(len(sample), hypotheses)
        t = points[sample[j]] - points[sample[i]]
        t -= (t @ down)[:, None] * down
        ok = np.linalg.norm(t, axis=1) > 1e-6
        if not ok.any():
            break
        cand = np.cross(down, t[ok])
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        mid = 0.5 * (points[sample[i[ok]]] + points[sample[j[ok]]])
        cand[(cand * mid).sum(1) < 0] *= -1
        cos = cand @ mains.T
        nearest = np.argmax(cos, 1)
        snap = cos[np.arange(len(cand)), nearest] > math.cos(math.radians(SNAP_DEG))
        cand[snap] = mains[nearest[snap]]
        off = (cand * mid).sum(1)
        votes = ((np.abs(Ps @ cand.T - off) < Ss[:, None]) & (Ns @ cand.T > cos_agree)).sum(0)  # on the sample
        best = int(np.argmax(votes))
        n = cand[best]
        members = remaining[(np.abs(P @ n - off[best]) < S) & (N @ n > cos_agree)]
        if len(members) < min_count:
            break
        if not any(np.allclose(n, m) for m in mains):  # unsnapped: refit the direction to the inliers (vertical)
            flat = points[members] - np.outer(points[members] @ down, down)
            flat -= flat.mean(0)
            direction = np.linalg.svd(flat, full_matrices=False)[2][0]
            n = _unit(np.cross(down, direction))
            n = n if n @ points[members].mean(0) > 0 else -n
            n, _ = _snap(n, mains, SNAP_DEG)
        offset = float(np.median(points[members] @ n))
        members = remaining[(np.abs(P @ n - offset) < S) & (N @ n > cos_agree)]
        if len(members) < min_count:
            break
        planes.append(Plane(n, offset, members))
        remaining = np.setdiff1d(remaining, members, assume_unique=True)
    return _merge(planes, float(np.median(points[:, 2])) * tol * 2)


def _merge(planes: list[Plane], dist: float) -> list[Plane]:
    out: list[Plane] = []
    for p in planes:
        for q in out:
            if p.normal @ q.normal > math.cos(math.radians(5)) and abs(p.offset - q.offset) < dist:
                q.inliers = np.concatenate([q.inliers, p.inliers])
                break
        else:
            out.append(p)
    return out


def refine_orientation(planes: list[Plane], cues: LineCues, K: np.ndarray, down: np.ndarray,
                       points: np.ndarray) -> None:
    """Turn each plane to the vanishing-point direction within REFINE_DEG of its own, keeping it vertical."""
    Kinv = np.linalg.inv(K)
    dirs = []
    for v in cues.horizontal:
        r = Kinv @ v
        r -= (r @ down) * down
        if np.linalg.norm(r) > 1e-9:
            dirs.append(_unit(r))
    for p in planes:
        along = np.cross(p.normal, down)
        best = max(dirs, key=lambda r: abs(r @ along), default=None)
        if best is None or abs(best @ along) < math.cos(math.radians(REFINE_DEG)):
            continue
        n = _unit(np.cross(down, best))
        p.normal = n if n @ p.normal > 0 else -n
        p.offset = float(np.median(points[p.inliers] @ p.normal))
        p.refined = True


def assign(planes: list[Plane], depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Label (h, w) int: for every pixel, the plane that explains its depth best (relative residual), smoothed so
    walls are contiguous; -1 where there is no plane."""
    h, w = depth.shape
    if not planes:
        return np.full((h, w), -1)
    rays = backproject(np.ones_like(depth), K)
    resid = []
    for p in planes:
        denom = rays @ p.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(denom > 1e-6, p.offset / denom, np.inf)
        resid.append(np.abs(depth / z - 1.0))
    labels = np.argmin(np.stack(resid), 0)
    k = max(3, (round(0.03 * max(h, w)) // 2) * 2 + 1)
    votes = [cv2.blur(((labels == i) & mask).astype(np.float32), (k, k)) for i in range(len(planes))]
    labels = np.argmax(np.stack(votes), 0)
    return np.where(mask, labels, -1)


# -- homographies --------------------------------------------------------------------------------------------------

def wall_homography(K: np.ndarray, normal: np.ndarray, X0: np.ndarray, down: np.ndarray, unit: float) -> np.ndarray:
    """Image -> rectified wall frame: x along the wall (rightwards in the image), y down, `unit` per 3D unit."""
    r_h = _unit(np.cross(down, normal))
    q = K @ X0
    moved = K @ (X0 + 1e-3 * np.linalg.norm(X0) * r_h)
    if moved[0] / moved[2] < q[0] / q[2]:
        r_h = -r_h
    return wall_frame.wall_homography(K, r_h, down, X0, unit)


def rect_extent(H: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, float]:
    """(min x, max x, min y, max y) of the mask's outline in the rectified frame."""
    if not mask.any():
        return 0.0, 0.0, 0.0, 0.0
    u, v = wall_frame.to_frame(H, *wall_frame.boundary_corners(mask), w_min=0.05)
    if not len(u):
        return 0.0, 0.0, 0.0, 0.0
    return float(u.min()), float(u.max()), float(v.min()), float(v.max())


def walls_from_planes(planes: list[Plane], labels: np.ndarray, mask: np.ndarray, depth: np.ndarray,
                      K_work: np.ndarray, K: np.ndarray, down: np.ndarray) -> list[Wall]:
    """Full-resolution walls from planes fitted at the working resolution (labels/depth/K_work)."""
    H, W = mask.shape
    h, w = labels.shape
    filled = labels.copy()
    if (filled < 0).any() and (filled >= 0).any():  # pixels of the full-res mask that fall outside the small one
        _, nearest = cv2.distanceTransformWithLabels((filled < 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
        src = np.zeros(nearest.max() + 1, int)
        src[nearest[filled >= 0]] = filled[filled >= 0]
        filled = src[nearest]
    full = cv2.resize(filled.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST)
    rays = backproject(np.ones((h, w)), K_work)
    anchors, sizes = [], []
    for i, p in enumerate(planes):
        sel = labels == i
        r = rays[sel].mean(0) if sel.any() else rays[h // 2, w // 2]
        anchors.append(r * p.offset / max(r @ p.normal, 1e-6))
        sizes.append(int(sel.sum()))
    main = int(np.argmax(sizes))
    ref_height = anchors[main] @ down
    unit = K[0, 0] / anchors[main][2]  # one rectified unit ~ one pixel at the main wall's depth
    walls = []
    for i, p in enumerate(planes):
        X0 = anchors[i] + (ref_height - anchors[i] @ down) * down  # same height reference on every wall
        Hw = wall_homography(K, p.normal, X0, down, unit)
        walls.append(Wall(mask & (full == i), Hw, 0.0))
    walls = [wall for wall in walls if wall.mask.any()]
    _translate(walls)
    return walls


def _translate(walls: list[Wall]) -> None:
    """x: walls unrolled left to right from 0; y: 0 at the top of the highest wall; fills width."""
    ext = [rect_extent(w.homography, w.mask) for w in walls]
    order = sorted(range(len(walls)), key=lambda i: np.nonzero(walls[i].mask)[1].mean())
    y0 = min((e[2] for e in ext), default=0.0)
    x = 0.0
    for i in order:
        e = ext[i]
        T = np.array([[1.0, 0, x - e[0]], [0, 1.0, -y0], [0, 0, 1.0]])
        walls[i].homography = T @ walls[i].homography
        walls[i].width = float(e[1] - e[0])
        x += walls[i].width


def wall_planes(disparity: np.ndarray, mask: np.ndarray, K_work: np.ndarray, down: np.ndarray,
                cues: LineCues | None = None, K: np.ndarray | None = None, seed: int = 0
                ) -> tuple[list[Plane], np.ndarray, np.ndarray, list[str]]:
    """Vertical wall planes from a disparity map (working resolution, camera K_work) inside `mask`.
    Returns (planes, labels (h, w) int, -1 outside the mask, depth, warnings). `cues`/`K`: vanishing points (in the
    pixels of K) that refine the orientation."""
    cues = cues or LineCues()
    warnings: list[str] = []
    valid = disparity[mask]
    ref = float(np.median(valid[valid > 0])) if (valid > 0).any() else 1.0
    depth = 1.0 / np.clip(disparity / ref, 0.05, None)
    points = backproject(cv2.GaussianBlur(depth, (0, 0), 1.5), K_work)
    normal = normals(points)
    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    wall_like = (core if core.sum() > 50 else mask) & (np.abs(normal @ down) < WALL_NORMAL_MAX_TILT)
    pts, nrm = points[wall_like], normal[wall_like]
    nrm = nrm - np.outer(nrm @ down, down)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    planes = fit_vertical_planes(pts, nrm, down, np.random.default_rng(seed))
    if not planes:
        warnings.append("geometry: no vertical wall plane in the depth map; one wall through the mask's median "
                        "depth, facing " + ("its vanishing point" if cues.horizontal else "the camera"))
        pts = backproject(depth, K_work)[mask]
        n = _unit(np.array([0.0, 0.0, 1.0]) - down[2] * down)
        planes = [Plane(n, float(np.median(pts @ n)), np.arange(len(pts)))]
    refine_orientation(planes, cues, K_work if K is None else K, down, pts)
    if not cues.horizontal:
        warnings.append("geometry: no vanishing points from lines; wall orientation from depth only")
    return planes, assign(planes, depth, mask, K_work), depth, warnings
