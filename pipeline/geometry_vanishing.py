"""Vanishing points for the line geometry (pipeline/geometry.py): length-weighted RANSAC plus a least-squares
refinement on the Gaussian sphere (vanishing points at or near infinity are handled like any other), the vertical
one from near-vertical segments anywhere, up to two horizontal ones from the segments on the wall, and the focal
length from pairs of orthogonal directions with a prior."""

from __future__ import annotations

import math

import numpy as np

from .geometry_lines import Segments

DEFAULT_FOCAL = 0.8  # focal length / long side when it cannot be estimated (~28 mm equivalent)
FOCAL_PRIOR_SIGMA = 0.35  # spread of real cameras' focal lengths around DEFAULT_FOCAL, in log f
# A far wall's own direction, looked for only among the lines at the end of a one-direction wall that disagree with
# it (pipeline/geometry_walls.disagreeing_end): fewer lines suffice there than for a second direction over the whole
# wall (fit_horizontals: SECOND_MIN_INLIERS lines, 0.08 image widths), since the place already says a second wall is likely. The two
# walls of a corner are near perpendicular: a direction more than 60 degrees from perpendicular to the first
# (END_MAX_COS, at the typical focal length) is a pattern on the same wall, not a far wall. Tuned on bench/geometry.py
# (--no-render, 100 singles / 100 corners, seed 0): real far walls reach 0.41 (focal 50 mm), false ones 0.62-0.99.
SECOND_MIN_INLIERS = 4  # lines a second horizontal direction needs (fit_horizontals, refit_on_wall)
END_MIN_INLIERS = 3
END_MIN_LENGTH = 0.05
END_MAX_COS = 0.5
# The vertical vanishing point is fitted on near-vertical lines anywhere (gravity is shared by the scene), but the
# wall's own verticals have the last word: when the lines on/near the wall (at least WALL_VERTICAL_MIN_LENGTH image
# widths of them) agree on a vertical point that explains them clearly better than the scene's (the scene's scores
# under WALL_VERTICAL_AGREE of it on those lines), the wall's is taken. Trees, poles, a neighbour's house seen at
# another angle, or the backgrounds of bench/geometry.py's composites (another camera's verticals) otherwise set the
# verticals, the corner line's lean and the level snap. On bench/geometry.py (--no-render, "verticals vs true"
# median / p95): single walls 2.87 / 19.3 -> 0.83 / 3.1 deg, corner walls 4.11 / 29.6 -> 1.16 / 3.8 deg; corner walls
# > 5 deg 14.7 -> 13.2 % and on a second corner set (seed 1) 16.0 -> 10.3 %; the US houses' opening edges unchanged
# (0.5 and 0.7 change less, 0.95 about the same with single walls slightly worse).
WALL_VERTICAL_MIN_LENGTH = 0.3
WALL_VERTICAL_AGREE = 0.85
# The first horizontal direction's inliers may all be pieces of ONE edge (a plain wall's base broken at every trim
# board): they fix only the line the vanishing point is on, and RANSAC's point along it is noise (a known-camera
# view of such a wall got courses 14 deg off, confidently). Then the point is where that line meets the horizon at
# the typical focal length (`horizontal_on_line`). ONE_LINE_TOL: image widths (~2 px at 1024); ONE_LINE_SHARE of
# the inliers' length on that line (0.9 missed that test view, whose other 12 % were bits of roof edge in a corner
# of the frame; no view of bench/geometry.py changes with either).
ONE_LINE_TOL = 0.002
ONE_LINE_SHARE = 0.8
# Roof edges are the strongest lines of many US house fronts: a gable's rakes, a shed roof's fascia. When the
# horizontal fit finds two directions that no corner line separates, and the two lie with the vertical in one
# plane (`in_one_plane`: the volume of the three unit directions below ONE_PLANE_VOLUME, about 9 deg off one
# plane; two perpendicular walls give ~1), they are two directions of one wall: the flatter is its courses, or,
# when one rises and the other falls by RAKE_MIN_DEG or more (`rake_pair`), they are a gable's two rakes and the
# courses run between them. US roof pitches are 18-45 deg; RAKE_MIN_DEG leaves room for the few degrees by which the
# assumed focal length tilts what is horizontal. Tuned on houses-train (bench/geometry.py prints it; three houses
# whose courses followed a rake: 0.15 takes all three, 0.1 missed house_51 at 0.101).
RAKE_MIN_DEG = 8.0
ONE_PLANE_VOLUME = 0.15
# A separate region of the mask (a connected part, see pipeline/geometry.py REGION_MIN_SHARE) takes its own
# direction when the wall's explains its lines at under REGION_AGREE of how well their own does (0.7 also turned a
# frontal gable's courses 7 deg on US house_516).
REGION_AGREE = 0.5
VP_ANGLE = 0.001  # typical angular error (rad) of a vanishing point's direction, seen from the image centre


def sin_error(V: np.ndarray, mid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """|sin| of the angle between each segment and the line from its midpoint to each vanishing point.
    V (M, 3) unit homogeneous points, mid/d (N, 2) -> (M, N)."""
    ex = V[:, None, 0] - mid[None, :, 0] * V[:, None, 2]
    ey = V[:, None, 1] - mid[None, :, 1] * V[:, None, 2]
    norm = np.hypot(ex, ey)
    cross = np.abs(d[None, :, 0] * ey - d[None, :, 1] * ex)
    out = cross / np.maximum(norm, 1e-12)
    out[norm < 1e-9] = 1.0
    return out


def ransac_vp(seg: Segments, idx: np.ndarray, rng: np.random.Generator, n_hyp: int = 300, accept=None):
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
    score = _support(sin_error(V, mid, d), w, tol)
    v = V[int(np.argmax(score))]
    for _ in range(3):  # refine: weighted least squares on the inliers (smallest singular vector)
        inl = sin_error(v[None], mid, d)[0] < tol
        if inl.sum() < 2:
            break
        A = lines[inl] * np.sqrt(w[inl])[:, None]
        v_new = np.linalg.svd(A, full_matrices=False)[2][-1]
        if accept is not None and not accept(v_new[None])[0]:
            break
        v = v_new
    err = sin_error(v[None], mid, d)[0]
    return v, err < tol, float(_support(err, w, tol))


def _support(err: np.ndarray, w: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """A vanishing point's score from its segments' errors (..., N): length-weighted, falling to 0 at tol."""
    return (w * np.clip(1.0 - (err / tol) ** 2, 0.0, None)).sum(axis=-1)


def vp_score(seg: Segments, idx: np.ndarray, v: np.ndarray) -> float:
    """ransac_vp's score of the vanishing point v over the segments idx."""
    return float(_support(sin_error(v[None], seg.mid[idx], seg.d[idx])[0], seg.length[idx], seg.tol[idx]))


def pencil_coord(v: np.ndarray, x: np.ndarray, y: np.ndarray, yc: float) -> np.ndarray:
    """Where the line through (x, y) and the (vertical) vanishing point v crosses the horizontal line y = yc."""
    l1 = y * v[2] - v[1]
    l2 = v[0] - x * v[2]
    l3 = x * v[1] - y * v[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (-yc * l2 - l3) / np.where(np.abs(l1) < 1e-12, 1e-12, l1)


def focal_from_pairs(pairs) -> float:
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


def fit_vertical(seg: Segments, rng: np.random.Generator, on_wall: np.ndarray | None = None
                 ) -> tuple[np.ndarray | None, np.ndarray]:
    """The vertical vanishing point from near-vertical segments anywhere (gravity is shared by the whole scene),
    or from those on the wall (`on_wall`, bool per segment) where they disagree with the scene's (see
    WALL_VERTICAL_AGREE): (unit homogeneous point or None, bool per segment: its inliers)."""
    near_vertical = np.abs(seg.d[:, 0]) < math.sin(math.radians(25))
    vert_cand = np.nonzero(near_vertical)[0]
    vv = None
    vert_inl = np.zeros(len(seg), bool)
    res = ransac_vp(seg, vert_cand, rng)
    wall_cand = np.nonzero(near_vertical & on_wall)[0] if on_wall is not None else vert_cand[:0]
    if res is not None and seg.length[wall_cand].sum() >= WALL_VERTICAL_MIN_LENGTH:
        own = ransac_vp(seg, wall_cand, rng)
        if own is not None and vp_score(seg, wall_cand, res[0]) < WALL_VERTICAL_AGREE * own[2]:
            inliers = sin_error(own[0][None], seg.mid[vert_cand], seg.d[vert_cand])[0] < seg.tol[vert_cand]
            res = own[0], inliers, own[2]
    if res is not None:
        v, inl, score = res
        if inl.sum() >= 2 and seg.length[vert_cand[inl]].sum() >= 0.15:
            vv = v
            vert_inl[vert_cand[inl]] = True
    return vv, vert_inl


def horizontal_on_line(line: np.ndarray, vv: np.ndarray | None) -> np.ndarray:
    """The vanishing point (unit homogeneous) of a line (homogeneous, normalised coordinates) known to be
    horizontal: where it meets the horizon, the vanishing line of planes perpendicular to the vertical direction,
    at the typical focal length (the image's horizontal through the centre without a vertical vanishing point)."""
    f0 = DEFAULT_FOCAL
    horizon = np.array([1 / f0 ** 2, 1 / f0 ** 2, 1.0]) * (vv if vv is not None else np.array([0.0, 1.0, 0.0]))
    h = np.cross(line, horizon)
    return h / np.linalg.norm(h)


_TO_DIRECTION = np.array([1.0 / DEFAULT_FOCAL, 1.0 / DEFAULT_FOCAL, 1.0])  # K^-1 at the typical focal length


def _at_default_focal(v: np.ndarray) -> np.ndarray:
    """The unit 3D direction of vanishing point v at the typical focal length."""
    d = v * _TO_DIRECTION
    return d / np.linalg.norm(d)


def rise_deg(v: np.ndarray, vv: np.ndarray | None, toward: np.ndarray | None = None) -> float:
    """By how many degrees the 3D direction of vanishing point v rises out of the horizontal plane, at the typical
    focal length, v taken in the sense that points along `toward`'s (another vanishing point) where given, else
    rightwards. Without a vertical vanishing point the image's up is taken."""
    up = _at_default_focal(vv if vv is not None else np.array([0.0, 1.0, 0.0]))
    up = -up if up[1] > 0 else up  # image y runs down
    d = _at_default_focal(v)
    ref = _at_default_focal(toward) if toward is not None else np.array([1.0, 0.0, 0.0])
    d = -d if d @ ref < 0 else d
    return math.degrees(math.asin(float(np.clip(d @ up, -1.0, 1.0))))


def in_one_plane(vv: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> bool:
    """The vertical and the two directions a, b lie in one plane (the three vanishing points on one line, the
    plane's vanishing line): a and b are then two directions within ONE wall (its courses and a roof edge or
    rail, or a gable's two rakes), not two walls' courses, whose plane is the horizontal one. Collinearity does
    not depend on the focal length; its measure (the volume of the three unit directions) is taken at the typical
    one: 0 for one plane, 1 for two perpendicular walls. Without a vertical vanishing point the camera is taken
    upright."""
    vv = vv if vv is not None else np.array([0.0, 1.0, 0.0])
    return abs(float(np.linalg.det(np.stack([_at_default_focal(vv), _at_default_focal(a),
                                             _at_default_focal(b)])))) < ONE_PLANE_VOLUME


def rake_pair(a: np.ndarray, b: np.ndarray, vv: np.ndarray | None) -> np.ndarray | None:
    """Two directions of one wall that are a gable's two rakes: taken in the senses in which they are less than
    90 degrees apart, one rises and the other falls, each by at least RAKE_MIN_DEG. Then the wall's courses run
    where the line through the two points (the wall's vanishing line) meets the horizon: that vanishing point is
    returned; None otherwise."""
    ra, rb = rise_deg(a, vv, toward=a), rise_deg(b, vv, toward=a)  # both in senses relative to a's
    if ra * rb >= 0 or min(abs(ra), abs(rb)) < RAKE_MIN_DEG:
        return None
    return horizontal_on_line(np.cross(a, b), vv)


def _cos_at_default_focal(V: np.ndarray, u: np.ndarray) -> np.ndarray:
    """|cos| of the 3D angle between the directions of the vanishing points V (M, 3) and u (3,) at the typical
    focal length (the focal length is not known yet where this is asked)."""
    a = V * _TO_DIRECTION
    b = u * _TO_DIRECTION
    return np.abs(a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))


def _horizontal_prior(vv: np.ndarray | None):
    """Which candidate points (M, 3) can be horizontal directions: 60-120 degrees from the vertical one, at the
    typical focal length."""
    def accept(V: np.ndarray) -> np.ndarray:
        if vv is None:
            return np.ones(len(V), bool)
        return _cos_at_default_focal(V, vv) < 0.5
    return accept


def one_line(seg: Segments, idx: np.ndarray) -> np.ndarray | None:
    """The line (homogeneous, normalised coordinates) that ONE_LINE_SHARE of the segments idx's length lies on (end
    points within ONE_LINE_TOL image widths of the longest one's line: pieces of one edge, e.g. a wall's base broken
    at every trim board), or None."""
    longest = idx[int(np.argmax(seg.length[idx]))]
    on = (np.abs(np.concatenate([seg.p1[idx], seg.p2[idx]]) @ seg.lines[longest][:2] + seg.lines[longest][2])
          .reshape(2, -1).max(axis=0) < ONE_LINE_TOL)
    if seg.length[idx[on]].sum() < ONE_LINE_SHARE * seg.length[idx].sum():
        return None
    pts = np.concatenate([seg.p1[idx[on]], seg.p2[idx[on]]])
    centre = pts.mean(axis=0)
    normal = np.linalg.svd(pts - centre, full_matrices=False)[2][-1]
    return np.array([normal[0], normal[1], -float(normal @ centre)])


def fit_horizontals(seg: Segments, on_wall: np.ndarray, vert_inl: np.ndarray, vv: np.ndarray | None,
                    rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Up to two horizontal vanishing points from the non-vertical segments on/near the wall:
    ([(unit homogeneous point, indices of its inlier segments, score)], the candidate segments' indices)."""
    horizontal_prior = _horizontal_prior(vv)
    hor_cand = np.nonzero(on_wall & ~vert_inl & (np.abs(seg.d[:, 1]) < math.sin(math.radians(45))))[0]
    vh = []  # [(vanishing point, indices of its inlier segments, score)]
    res = ransac_vp(seg, hor_cand, rng, accept=horizontal_prior)
    if res is not None and res[1].sum() >= 3 and seg.length[hor_cand[res[1]]].sum() >= 0.1:
        line = one_line(seg, hor_cand[res[1]])
        # pieces of one edge pin the vanishing point to that line only: where on it, the horizon says
        vh.append((res[0] if line is None else horizontal_on_line(line, vv), hor_cand[res[1]], res[2]))
        # a second horizontal direction among what the first one does not explain
        removal = sin_error(res[0][None], seg.mid[hor_cand], seg.d[hor_cand])[0] < 1.5 * seg.tol[hor_cand]
        rest = hor_cand[~removal]
        res2 = ransac_vp(seg, rest, rng, accept=horizontal_prior)
        if (res2 is not None and res2[1].sum() >= SECOND_MIN_INLIERS and res2[2] >= 0.2 * res[2]
                and seg.length[rest[res2[1]]].sum() >= 0.08):
            vh.append((res2[0], rest[res2[1]], res2[2]))
    return vh, hor_cand


def fit_end_direction(seg: Segments, idx: np.ndarray, first: np.ndarray, vv: np.ndarray | None,
                      rng: np.random.Generator):
    """A second horizontal direction from the segments idx only (the lines at one end of a wall that disagree with
    its direction `first`): (unit homogeneous point, its inlier segments' indices, score), or None when they do not
    agree on one, or on one a corner's far wall can have (see END_MIN_INLIERS)."""
    idx = idx[sin_error(first[None], seg.mid[idx], seg.d[idx])[0] >= 1.5 * seg.tol[idx]]  # as in fit_horizontals
    res = ransac_vp(seg, idx, rng, accept=_horizontal_prior(vv))
    if (res is None or res[1].sum() < END_MIN_INLIERS or seg.length[idx[res[1]]].sum() < END_MIN_LENGTH
            or _cos_at_default_focal(res[0], first) >= END_MAX_COS):
        return None
    return res[0], idx[res[1]], res[2]


def own_direction(seg: Segments, idx: np.ndarray, found: np.ndarray, vv: np.ndarray | None,
                  rng: np.random.Generator):
    """The horizontal direction of the segments idx (the lines on one separate region of the mask) when the wall's
    direction `found` explains them clearly worse (its score under REGION_AGREE of theirs) and it is not just
    another direction in the same plane (`in_one_plane`: a rake): (point, inlier indices, score), or None."""
    res = ransac_vp(seg, idx, rng, accept=_horizontal_prior(vv))
    if (res is None or res[1].sum() < SECOND_MIN_INLIERS or vp_score(seg, idx, found) >= REGION_AGREE * res[2]
            or in_one_plane(vv, found, res[0])):
        return None
    return res[0], idx[res[1]], res[2]


def refit_on_wall(seg: Segments, idx: np.ndarray, found: tuple, vv: np.ndarray | None, rng: np.random.Generator):
    """A wall's horizontal direction refitted on the segments idx (those on that wall, after the corner split):
    the refit (same form as `found`: point, inlier indices, score) when it explains those lines better than the
    direction found over both walls, else `found`. Needs SECOND_MIN_INLIERS lines, as a second direction does.
    On bench/geometry.py (--no-render, 100 singles / 100 corners) corner walls > 5 deg off 19.3 -> 17.7 %, confident
    wrong 8.3 -> 6.8 %; always taking the refit (even when worse) gave a 54-degree outlier."""
    res = ransac_vp(seg, idx, rng, accept=_horizontal_prior(vv))
    if res is None or res[1].sum() < SECOND_MIN_INLIERS or res[2] <= vp_score(seg, idx, found[0]):
        return found
    return res[0], idx[res[1]], res[2]
