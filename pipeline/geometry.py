"""Stage 2: wall geometry from straight lines and vanishing points.

`LineGeometry` finds straight segments (OpenCV's LSD, on a downscaled grey copy), estimates a vertical vanishing
point and one or two horizontal vanishing points with length-weighted RANSAC plus a least-squares refinement on the
Gaussian sphere (so vanishing points at or near infinity, the affine case, are handled like any other), and turns
them into one homography per wall:

* A pinhole camera with square pixels and the principal point at the image centre is assumed. Its focal length is
  estimated from pairs of finite vanishing points of orthogonal directions (vertical vs. horizontal, and the two
  horizontal directions of a house corner, assumed to meet at a right angle), each weighted by how well its
  vanishing points pin f down, together with a prior at a typical phone-camera focal length (`DEFAULT_FOCAL` x
  long side). A level camera looking at one oblique wall leaves f unobservable: then the prior sets the wall's
  aspect ratio (a few percent off for a typical lens). Near-infinite vanishing points make the result insensitive
  to the focal length anyway.
* For a wall with horizontal direction r_h and vertical direction r_v (camera frame, from K^-1 v) through the 3D
  point X0 seen at an anchor pixel c, the plane-to-image map is G = K [r_h | r_v | X0]; the wall's homography is
  its inverse, scaled by f so that one rectified unit is about one pixel of a fronto-parallel view at the anchor's
  depth. By construction the vertical vanishing point maps to the rectified y direction and the horizontal one to x
  exactly, so verticals stay vertical and courses stay level even if the focal length is somewhat off.
* Two walls at an angle (a house corner): the second horizontal vanishing point is accepted only if its segments and
  the first one's lie on opposite sides of a vertical split line (a line through the vertical vanishing point).
  The mask is split along that line. Both walls share the anchor (a point on the corner line), the vertical
  direction and the unit, so their rectified frames are metrically consistent: same physical unit, same y, and x
  unrolled across the corner (the right wall's x continues where the left wall's ends).

Without usable lines the wall is assumed fronto-parallel (identity homography) and a warning says so.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import wall_frame
from .errors import InputError
from .stages import Geometry, VanishingPoints, Wall

NAME = "embedded:lsd-vanishing-points"
DETECT_SIDE = 640  # long side of the image the segments are detected on
DEFAULT_FOCAL = 0.8  # focal length / long side when it cannot be estimated (~28 mm equivalent)
FOCAL_PRIOR_SIGMA = 0.35  # spread of real cameras' focal lengths around DEFAULT_FOCAL, in log f
VP_ANGLE = 0.001  # typical angular error (rad) of a vanishing point's direction, seen from the image centre
MIN_MASK_PIXELS = 64
MIN_MASK_FRACTION = 0.001
# Level snap. Most house photos are taken facing the wall, and a wall that faces the camera has courses within a
# few degrees of its fronto-parallel direction (level, perpendicular to the verticals). When the horizontal
# vanishing point found on a single wall turns the courses by no more than SNAP_LEVEL_DEG from that direction
# anywhere on the wall AND it rests on little line evidence (total inlier length below SNAP_MAX_SUPPORT, in units of
# the image's long side: about two lines across the whole image), it is far more often a frontal wall pulled off by
# a few sloped roof edges, eaves or clutter than a real slightly-turned wall; the fronto-parallel answer then errs
# by at most SNAP_LEVEL_DEG, while the weak fit can be off by much more. Plenty of course lines (a genuinely yawed
# wall, or a frontal wall whose lines already agree) are never snapped. Tuned on bench/geometry.py: the US houses'
# opening edges agree much better with snapped courses, while the synthetic single walls (yaw spread evenly over
# +-50 deg, so few are frontal) keep their p95.
SNAP_LEVEL_DEG = 8.0
SNAP_MAX_SUPPORT = 1.9
# Wall.confidence for the safe answers: a snapped wall (fronto-parallel courses chosen over weak lines), a wall
# without any horizontal vanishing point, and the no-lines / tiny-mask fallback. Line-based walls keep 1.0.
SNAPPED_CONFIDENCE = 0.5
NO_COURSES_CONFIDENCE = 0.4
FALLBACK_CONFIDENCE = 0.2
# Two wall directions found but no corner line separates them (`_split`): one wall with the stronger direction,
# flagged, since the other direction's wall (about half of such corner views in bench/geometry.py) is then wrong.
# (Tried instead and dropped: separating them by where each direction's lines lie made both walls worse; one wall
# per connected mask region by its lines' direction made the US houses' opening edges worse, p95 8.8 -> 13.9 deg.)
UNSEPARATED_CONFIDENCE = 0.5
# One wall direction found, but the lines at one end of the mask disagree with it: the far wall of an oblique corner
# whose own direction was too weak to be found (about half of the confident wrong corner walls in bench/geometry.py
# were these). The far wall sits at one END of the region, so only a run of disagreeing bins from either end counts
# (clutter inside the wall, a tree or ornaments, does not); a bin disagrees when the non-supporting near-horizontal
# lines in it outweigh the direction's own support there more than twice. From DISAGREE_END_SHARE of the mask's
# pixels on, the wall is flagged (same plane, confidence UNSUPPORTED_END_CONFIDENCE). Tuned on bench/geometry.py
# (--no-render, 100 singles / 60 corners): the confident wrong corners' far walls are 8-41 % of the mask, correct
# single walls rarely reach 7 %.
DISAGREE_END_SHARE = 0.075
DISAGREE_BINS = 24
UNSUPPORTED_END_CONFIDENCE = 0.5


class _Segments:
    """Line segments in normalised image coordinates ((p - centre) / long side)."""

    def __init__(self, p1: np.ndarray, p2: np.ndarray, scale_px: float):
        self.p1, self.p2 = p1, p2
        self.mid = 0.5 * (p1 + p2)
        delta = p2 - p1
        self.length = np.hypot(delta[:, 0], delta[:, 1])
        self.d = delta / np.maximum(self.length, 1e-12)[:, None]
        h1 = np.concatenate([p1, np.ones((len(p1), 1))], axis=1)
        h2 = np.concatenate([p2, np.ones((len(p2), 1))], axis=1)
        lines = np.cross(h1, h2)
        self.lines = lines / np.maximum(np.linalg.norm(lines, axis=1), 1e-12)[:, None]
        # angular tolerance (as a sine): ~1.5 degrees, wider for short segments (about 1 px at detection scale)
        len_px = self.length * scale_px
        self.tol = np.maximum(0.026, 1.2 / np.maximum(len_px, 1.0))

    def __len__(self) -> int:
        return len(self.length)


def _sin_error(V: np.ndarray, mid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """|sin| of the angle between each segment and the line from its midpoint to each vanishing point.
    V (M, 3) unit homogeneous points, mid/d (N, 2) -> (M, N)."""
    ex = V[:, None, 0] - mid[None, :, 0] * V[:, None, 2]
    ey = V[:, None, 1] - mid[None, :, 1] * V[:, None, 2]
    norm = np.hypot(ex, ey)
    cross = np.abs(d[None, :, 0] * ey - d[None, :, 1] * ex)
    out = cross / np.maximum(norm, 1e-12)
    out[norm < 1e-9] = 1.0
    return out


def _ransac_vp(seg: _Segments, idx: np.ndarray, rng: np.random.Generator, n_hyp: int = 300, accept=None):
    """Length-weighted RANSAC for one vanishing point among segments `idx`.
    Returns (v unit 3-vector, inlier bool over idx, score) or None."""
    if len(idx) < 2:
        return None
    w = seg.length[idx]
    tol = seg.tol[idx]
    mid, d, lines = seg.mid[idx], seg.d[idx], seg.lines[idx]
    p = w / w.sum()
    i = rng.choice(len(idx), n_hyp, p=p)
    j = rng.choice(len(idx), n_hyp, p=p)
    keep = i != j
    V = np.cross(lines[i[keep]], lines[j[keep]])
    n = np.linalg.norm(V, axis=1)
    V = V[n > 1e-9] / n[n > 1e-9, None]
    if accept is not None and len(V):
        V = V[accept(V)]
    if not len(V):
        return None
    err = _sin_error(V, mid, d)
    score = (w * np.clip(1.0 - (err / tol) ** 2, 0.0, None)).sum(axis=1)
    v = V[int(np.argmax(score))]
    for _ in range(3):  # refine: weighted least squares on the inliers (smallest singular vector)
        inl = _sin_error(v[None], mid, d)[0] < tol
        if inl.sum() < 2:
            break
        A = lines[inl] * np.sqrt(w[inl])[:, None]
        v_new = np.linalg.svd(A, full_matrices=False)[2][-1]
        if accept is not None and not accept(v_new[None])[0]:
            break
        v = v_new
    err = _sin_error(v[None], mid, d)[0]
    inl = err < tol
    score = float((w * np.clip(1.0 - (err / tol) ** 2, 0.0, None)).sum())
    return v, inl, score


def _pencil_coord(v: np.ndarray, x: np.ndarray, y: np.ndarray, yc: float) -> np.ndarray:
    """Where the line through (x, y) and the (vertical) vanishing point v crosses the horizontal line y = yc."""
    l1 = y * v[2] - v[1]
    l2 = v[0] - x * v[2]
    l3 = x * v[1] - y * v[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (-yc * l2 - l3) / np.where(np.abs(l1) < 1e-12, 1e-12, l1)


def _focal_from_pairs(pairs) -> float:
    """Focal length (normalised by the long side) from pairs of finite vanishing points of orthogonal directions,
    f^2 = -(a . b) with the principal point at the centre, combined in log f with the prior DEFAULT_FOCAL.

    Each pair is weighted by its conditioning: a vanishing point at distance r is located to ~VP_ANGLE * r across
    and ~2 VP_ANGLE * r^2 along its direction, so a nearly-infinite one (a level camera's vertical vanishing point)
    says almost nothing about f and the prior wins; the error of f is half the relative error of f^2."""
    num = math.log(DEFAULT_FOCAL) / FOCAL_PRIOR_SIGMA ** 2
    den = 1.0 / FOCAL_PRIOR_SIGMA ** 2
    for a, b in pairs:
        if a is None or b is None or abs(a[2]) < 1e-9 or abs(b[2]) < 1e-9:
            continue
        pa, pb = a[:2] / a[2], b[:2] / b[2]
        f2 = -float(pa @ pb)
        if f2 <= 0:
            continue
        f = math.sqrt(f2)
        if not 0.25 <= f <= 4.0:
            continue
        rel2 = 0.0
        for p, q in ((pa, pb), (pb, pa)):  # the error of each point's component along the other's direction
            r_p, r_q = float(np.hypot(*p)), float(np.hypot(*q))
            along = abs(float(p @ q)) / max(r_q, 1e-9)  # |p . q^|
            across = math.sqrt(max(r_p * r_p - along * along, 0.0))
            sigma = math.hypot(2 * VP_ANGLE * r_p * r_p * along / max(r_p, 1e-9),
                               VP_ANGLE * r_p * across / max(r_p, 1e-9))
            rel2 += (sigma / max(along, 1e-9)) ** 2
        sigma_log_f = 0.5 * math.sqrt(rel2)
        num += math.log(f) / sigma_log_f ** 2
        den += 1.0 / sigma_log_f ** 2
    return float(math.exp(num / den))


def _disagreeing_end_share(seg: _Segments, vv, support_idx: np.ndarray, cand_idx: np.ndarray, xs: np.ndarray,
                           ys: np.ndarray, cx: float, cy: float, L: float) -> float:
    """Share of the mask's pixels in the longest run, from either end of the mask across the wall, of bins whose
    near-horizontal lines disagree with the chosen direction (see DISAGREE_END_SHARE). Position across the wall is
    the pencil coordinate through the vertical vanishing point, so a leaning corner line stays one bin edge."""
    v_vert = vv if vv is not None else np.array([0.0, 1.0, 0.0])
    yc = float((ys.mean() - cy) / L)
    step = max(1, len(xs) // 20000)
    um = _pencil_coord(v_vert, (xs[::step] - cx) / L, (ys[::step] - cy) / L, yc)
    edges = np.linspace(*np.percentile(um, [1, 99]), DISAGREE_BINS + 1)
    mass = np.histogram(um, edges)[0] / len(um)
    t = (np.arange(16) + 0.5) / 16

    def line_length_per_bin(idx):  # a long line counts in every bin it crosses
        if not len(idx):
            return np.zeros(DISAGREE_BINS)
        pts = seg.p1[idx, None, :] + t[None, :, None] * (seg.p2[idx] - seg.p1[idx])[:, None, :]
        uu = _pencil_coord(v_vert, pts[..., 0], pts[..., 1], yc).ravel()
        return np.histogram(uu, edges, weights=np.repeat(seg.length[idx] / len(t), len(t)))[0]

    agree = line_length_per_bin(support_idx)
    disagree = line_length_per_bin(np.setdiff1d(cand_idx, support_idx))
    present = mass > 0.2 / DISAGREE_BINS
    bad = present & (disagree > 2 * agree) & (disagree > 0.01)
    lineless = (disagree <= 0.01) & (agree <= 0.01)  # no say either way: the run goes on through it
    best = 0.0
    for order in (range(DISAGREE_BINS), range(DISAGREE_BINS - 1, -1, -1)):
        run = 0.0
        for k in order:
            if not (bad[k] or lineless[k] or not present[k]):
                break
            run += mass[k]
            if bad[k]:
                best = max(best, run)
    return best


class LineGeometry:
    """GeometryEstimator from LSD segments and vanishing points (see the module docstring)."""

    name = NAME

    def __init__(self, seed: int = 0, detect_side: int = DETECT_SIDE):
        self.seed = seed
        self.detect_side = detect_side

    # -- segments ---------------------------------------------------------------------------------------------
    def _detect(self, image: np.ndarray) -> tuple[_Segments, float]:
        h, w = image.shape[:2]
        L = float(max(h, w))
        if image.ndim == 3:
            gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
        else:
            gray = np.ascontiguousarray(image)
        if gray.dtype != np.uint8:
            gray = np.clip(gray, 0, 255).astype(np.uint8)
        s = min(1.0, self.detect_side / L)
        if s < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)
        found = lsd.detect(gray)[0]
        if found is None or not len(found):
            raw = np.zeros((0, 4))
        else:
            raw = found.reshape(-1, 4).astype(np.float64)
        raw = (raw + 0.5) / s - 0.5  # to full-resolution pixel coordinates
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        p1 = np.stack([(raw[:, 0] - cx) / L, (raw[:, 1] - cy) / L], axis=1)
        p2 = np.stack([(raw[:, 2] - cx) / L, (raw[:, 3] - cy) / L], axis=1)
        min_len = max(8.0, 0.012 * L * s) / (L * s)  # at least 8 px at detection scale
        keep = np.hypot(*(p2 - p1).T) >= min_len
        return _Segments(p1[keep], p2[keep], scale_px=L * s), s

    # -- main -------------------------------------------------------------------------------------------------
    def estimate(self, image: np.ndarray, mask: np.ndarray) -> Geometry:
        image = np.asarray(image)
        mask = np.asarray(mask).astype(bool)
        if mask.ndim != 2 or image.shape[:2] != mask.shape:
            raise InputError(f"geometry: mask {mask.shape} does not match the image {image.shape[:2]}")
        h, w = mask.shape
        L = float(max(h, w))
        warnings: list[str] = []
        n_mask = int(mask.sum())
        if n_mask == 0:
            warnings.append("geometry: the mask is empty; nothing to rectify")
            return Geometry([Wall(mask.copy(), np.eye(3), 0.0, confidence=0.0)], NAME, warnings)
        if n_mask < max(MIN_MASK_PIXELS, MIN_MASK_FRACTION * h * w):
            warnings.append(f"geometry: the mask is too small ({n_mask} px) to estimate perspective; "
                            "assuming a fronto-parallel wall")
            return self._fallback(mask, warnings)

        rng = np.random.default_rng(self.seed)
        seg, s = self._detect(image)
        ys, xs = np.nonzero(mask)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0

        # segments near the mask (it may exclude the wall's own edges, windows, ...)
        small = cv2.resize(mask.astype(np.uint8), (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_NEAREST)
        r = max(2, int(round(0.02 * max(small.shape))))
        near = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
        mx = np.clip(np.round((seg.mid[:, 0] * L + cx + 0.5) * s - 0.5).astype(int), 0, near.shape[1] - 1)
        my = np.clip(np.round((seg.mid[:, 1] * L + cy + 0.5) * s - 0.5).astype(int), 0, near.shape[0] - 1)
        on_wall = near[my, mx] if len(seg) else np.zeros(0, bool)

        # vertical vanishing point: near-vertical segments anywhere (gravity is shared by the whole scene)
        vert_cand = np.nonzero(np.abs(seg.d[:, 0]) < math.sin(math.radians(25)))[0]
        vv = None
        vert_inl = np.zeros(len(seg), bool)
        res = _ransac_vp(seg, vert_cand, rng)
        if res is not None:
            v, inl, score = res
            if inl.sum() >= 2 and seg.length[vert_cand[inl]].sum() >= 0.15:
                vv = v
                vert_inl[vert_cand[inl]] = True

        # horizontal vanishing points: non-vertical segments on/near the wall
        def horizontal_prior(V: np.ndarray) -> np.ndarray:
            if vv is None:
                return np.ones(len(V), bool)
            k = np.array([1.0 / DEFAULT_FOCAL, 1.0 / DEFAULT_FOCAL, 1.0])
            a = V * k
            b = vv * k
            cos = np.abs(a @ b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b))
            return cos < 0.5  # between 60 and 120 degrees from the vertical

        hor_cand = np.nonzero(on_wall & ~vert_inl & (np.abs(seg.d[:, 1]) < math.sin(math.radians(45))))[0]
        vh = []  # [(vanishing point, indices of its inlier segments, score)]
        res = _ransac_vp(seg, hor_cand, rng, accept=horizontal_prior)
        if res is not None and res[1].sum() >= 3 and seg.length[hor_cand[res[1]]].sum() >= 0.1:
            vh.append((res[0], hor_cand[res[1]], res[2]))
            # a second horizontal direction among what the first one does not explain
            removal = _sin_error(res[0][None], seg.mid[hor_cand], seg.d[hor_cand])[0] < 1.5 * seg.tol[hor_cand]
            rest = hor_cand[~removal]
            res2 = _ransac_vp(seg, rest, rng, accept=horizontal_prior)
            if (res2 is not None and res2[1].sum() >= 4 and res2[2] >= 0.2 * res[2]
                    and seg.length[rest[res2[1]]].sum() >= 0.08):
                vh.append((res2[0], rest[res2[1]], res2[2]))

        if vv is None and not vh:
            warnings.append("geometry: no usable straight lines found; assuming a fronto-parallel wall "
                            "(identity rectification)")
            return self._fallback(mask, warnings)

        # two walls at an angle?
        split, unseparated = None, False
        if len(vh) == 2:
            split = self._split(seg, vv, vh, mask, xs, ys, cx, cy, L)
        if split is None and len(vh) == 2:
            vh = vh[:1]
            unseparated = True
            warnings.append("geometry: two wall directions found but their lines could not be told apart; one "
                            "wall with the stronger direction (courses may be off on part of the wall)")

        f = _focal_from_pairs([(vv, v[0]) for v in vh] + ([(vh[0][0], vh[1][0])] if len(vh) == 2 else []))
        fpx = f * L
        K = np.array([[fpx, 0, cx], [0, fpx, cy], [0, 0, 1.0]])
        Kinv = np.linalg.inv(K)

        def to_px(v):
            return np.array([L * v[0] + cx * v[2], L * v[1] + cy * v[2], v[2]])

        if vv is None:
            warnings.append("geometry: no vertical vanishing point; assuming the camera is upright")
        if not vh:
            warnings.append("geometry: no horizontal vanishing point on the wall; assuming it faces the camera")
        snapped = False
        if split is None and vh:
            turn = self._course_turn(K, Kinv, to_px(vv) if vv is not None else None, to_px(vh[0][0]), xs, ys)
            support_len = float(seg.length[vh[0][1]].sum())
            if turn <= SNAP_LEVEL_DEG and support_len < SNAP_MAX_SUPPORT:
                warnings.append(f"geometry: the wall's courses are within {turn:.1f} deg of level on little line "
                                f"evidence ({support_len:.2f} image widths); snapped to level, assuming the wall "
                                "faces the camera")
                vh = []
                snapped = True
                # the focal length no longer has the (doubtful) horizontal vanishing point's say
                f = _focal_from_pairs([])
                fpx = f * L
                K = np.array([[fpx, 0, cx], [0, fpx, cy], [0, 0, 1.0]])
                Kinv = np.linalg.inv(K)

        unsupported_end = 0.0
        if split is None and vh and not unseparated:
            unsupported_end = _disagreeing_end_share(seg, vv, vh[0][1], hor_cand, xs, ys, cx, cy, L)
            if unsupported_end >= DISAGREE_END_SHARE:
                warnings.append(f"geometry: the lines on {100 * unsupported_end:.0f}% of the wall, at one end, "
                                "disagree with its course direction (a second wall there?); courses may be off on "
                                "that part")

        def measured() -> VanishingPoints:
            # a snapped direction was assumed, not measured: it is not passed on (vh is empty then)
            return VanishingPoints(to_px(vv) if vv is not None else None, [to_px(v[0]) for v in vh])

        def support(wall_mask: np.ndarray, hor_idx) -> np.ndarray:
            """End points (full-resolution pixels) of the line segments that lie on this wall: the inliers of
            its horizontal vanishing point with their midpoints on/near its mask."""
            sm = cv2.resize(wall_mask.astype(np.uint8), (near.shape[1], near.shape[0]),
                            interpolation=cv2.INTER_NEAREST)
            sm = cv2.dilate(sm, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
            sel = np.zeros(len(seg), bool)
            if hor_idx is not None:
                sel[hor_idx] = True
            sel &= sm[my, mx] if len(seg) else sel
            pts = np.concatenate([seg.p1[sel], seg.p2[sel]]) * L + np.array([cx, cy])
            return pts

        if split is None:
            anchor = np.array([xs.mean(), ys.mean(), 1.0])
            H = self._wall_h(K, Kinv, anchor, to_px(vv) if vv is not None else None,
                             to_px(vh[0][0]) if vh else None)
            conf = 1.0 if vh else (SNAPPED_CONFIDENCE if snapped else NO_COURSES_CONFIDENCE)
            if unseparated:
                conf = min(conf, UNSEPARATED_CONFIDENCE)
            if unsupported_end >= DISAGREE_END_SHARE:
                conf = min(conf, UNSUPPORTED_END_CONFIDENCE)
            walls = [Wall(mask, H, confidence=conf)]
            self._translate(walls, [support(mask, vh[0][1] if vh else None)], warnings)
            return Geometry(walls, NAME, warnings, measured())

        left_mask, right_mask, anchor, left_i, right_i = split
        walls = []
        for m_k, i_k in ((left_mask, left_i), (right_mask, right_i)):
            Hk = self._wall_h(K, Kinv, anchor, to_px(vv) if vv is not None else None, to_px(vh[i_k][0]))
            walls.append(Wall(m_k, Hk))
        self._translate(walls, [support(left_mask, vh[left_i][1]), support(right_mask, vh[right_i][1])],
                        warnings, unrolled=True)
        return Geometry(walls, NAME, warnings, measured())

    # -- pieces -----------------------------------------------------------------------------------------------
    def _split(self, seg, vv, vh, mask, xs, ys, cx, cy, L):
        """Split the mask between two horizontal vanishing points along a line through the vertical one.
        Returns (left mask, right mask, anchor pixel (3,), index of the left VP in vh, of the right one) or None."""
        v_vert = vv if vv is not None else np.array([0.0, 1.0, 0.0])
        yc = float((ys.mean() - cy) / L)

        def pc(pts, idx):
            return _pencil_coord(v_vert, pts[idx, 0], pts[idx, 1], yc)

        ia, ib = vh[0][1], vh[1][1]
        left, right = 0, 1
        if np.median(pc(seg.mid, ia)) > np.median(pc(seg.mid, ib)):
            ia, ib = ib, ia
            left, right = 1, 0
        # points along the segments (so a long line counts where it lies, not just at its midpoint)
        t = (np.arange(8) + 0.5) / 8

        def along(idx):
            pts = seg.p1[idx, None, :] + t[None, :, None] * (seg.p2[idx] - seg.p1[idx])[:, None, :]
            uu = _pencil_coord(v_vert, pts[..., 0], pts[..., 1], yc).ravel()
            return uu, np.repeat(seg.length[idx] / len(t), len(t))

        ua, wa = along(ia)
        ub, wb = along(ib)
        u = np.concatenate([ua, ub])
        wl = np.concatenate([wa, np.zeros_like(wb)])
        wr = np.concatenate([np.zeros_like(wa), wb])
        order = np.argsort(u)
        u, wl, wr = u[order], wl[order], wr[order]
        # score of a split just after position k: left-VP weight at or before k + right-VP weight after k
        score = np.cumsum(wl) + (wr.sum() - np.cumsum(wr))
        best = float(score.max())
        if best / (wl.sum() + wr.sum()) < 0.85:
            return None
        ks = np.nonzero(score >= best - 1e-9 * best)[0]
        k0, k1 = int(ks[0]), int(ks[-1])
        lo = u[k0]
        hi = u[k1 + 1] if k1 + 1 < len(u) else u[k1]
        s_split = 0.5 * (lo + hi)
        lo, hi = lo - 0.01, hi + 0.01
        # snap to the longest vertical segment (the corner edge) inside the gap, if there is one
        if vv is not None:
            vi = np.nonzero(np.abs(seg.d[:, 0]) < 0.3)[0]
            vi = vi[_sin_error(vv[None], seg.mid[vi], seg.d[vi])[0] < seg.tol[vi]]
            if len(vi):
                uv = pc(seg.mid, vi)
                inside = (uv > lo) & (uv < hi)
                if inside.any():
                    s_split = float(uv[inside][np.argmax(seg.length[vi[inside]])])
        h, w = mask.shape
        xn = (np.arange(w) - cx) / L
        yn = (np.arange(h) - cy) / L
        U = _pencil_coord(v_vert, xn[None, :], yn[:, None], yc)
        left_mask = mask & (U < s_split)
        right_mask = mask & ~(U < s_split)
        n = mask.sum()
        if left_mask.sum() < 0.05 * n or right_mask.sum() < 0.05 * n:
            return None
        # anchor: the corner line at the mask's mean height
        # (point on the horizontal line y = yc at pencil coordinate s_split)
        anchor = np.array([s_split * L + cx, ys.mean(), 1.0])
        return left_mask, right_mask, anchor, left, right

    @staticmethod
    def _course_turn(K, Kinv, vv_px, vh_px, xs, ys) -> float:
        """How far (deg, in the image) the horizontal vanishing point vh_px turns the courses away from the
        fronto-parallel ones (the camera's x axis made perpendicular to the vertical, what `_wall_h` uses without a
        horizontal vanishing point), the largest over the wall's four quarters (10th / 90th percentile of its
        pixels' x and y)."""
        r_v = Kinv @ vv_px if vv_px is not None else np.array([0.0, 1.0, 0.0])
        r_v = r_v / np.linalg.norm(r_v)
        r_h0 = np.array([1.0, 0.0, 0.0]) - r_v[0] * r_v
        v0 = K @ r_h0
        px = np.percentile(xs, [10, 90])
        py = np.percentile(ys, [10, 90])
        worst = 0.0
        for x in px:
            for y in py:
                p = np.array([x, y])
                d1 = vh_px[:2] - p * vh_px[2]
                d0 = v0[:2] - p * v0[2]
                c = abs(float(d1 @ d0)) / max(float(np.linalg.norm(d1) * np.linalg.norm(d0)), 1e-12)
                worst = max(worst, math.degrees(math.acos(min(1.0, c))))
        return worst

    @staticmethod
    def _wall_h(K, Kinv, anchor, vv_px, vh_px) -> np.ndarray:
        X0 = Kinv @ anchor
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
        return wall_frame.wall_homography(K, r_h, r_v, X0, K[0, 0])

    @staticmethod
    def _translate(walls: list[Wall], supports: list[np.ndarray], warnings: list[str],
                   unrolled: bool = False) -> None:
        """Fill `width` and move each wall's rectified mask to start at x = 0 (for a corner: unroll x across it, the
        right wall's x continuing the left wall's) and the top of all walls to y = 0."""
        ext = []
        for k, (wall, sup) in enumerate(zip(walls, supports)):
            e = _rect_extent(wall.homography, wall.mask, sup)
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

    @staticmethod
    def _fallback(mask: np.ndarray, warnings: list[str]) -> Geometry:
        xs = np.nonzero(mask.any(axis=0))[0]
        width = float(xs[-1] - xs[0] + 1) if len(xs) else 0.0
        return Geometry([Wall(mask.copy(), np.eye(3), width, confidence=FALLBACK_CONFIDENCE)], NAME, warnings)


def _rect_extent(H: np.ndarray, mask: np.ndarray, support: np.ndarray | None = None):
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
    ys, xs = np.nonzero(mask)
    step = max(1, len(xs) // 20000)
    w_all = H[2, 0] * xs[::step] + H[2, 1] * ys[::step] + H[2, 2]
    w_med = float(np.median(w_all))
    if w_med <= 0:
        return 0.0, 0.0, 0.0, 0.0, 1.0, False
    w_min = 0.3 * w_med
    dropped = float(np.mean(w_all < w_min))
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
