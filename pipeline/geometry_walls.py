"""Which wall gets which direction, and how sure it is, for the line geometry (pipeline/geometry.py): the corner
split between two horizontal directions (and whether the wall's base says it is one wall: a gable), how far a
direction turns the courses from level (for the level snap), and whether one end of a one-direction wall disagrees
with it (a missed far wall)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .geometry_lines import Segments
from .geometry_vanishing import in_one_plane, pencil_coord, sin_error

# One wall direction found, but the lines at one end of the mask disagree with it: the far wall of an oblique corner
# whose own direction was too weak to be found (about half of the confident wrong corner walls in bench/geometry.py
# were these). The far wall sits at one END of the region, so only a run of disagreeing bins from either end counts
# (clutter inside the wall, a tree or ornaments, does not); a bin disagrees when the non-supporting near-horizontal
# lines in it outweigh the direction's own support there more than twice. From DISAGREE_END_SHARE of the mask's
# pixels on, the wall is flagged (same plane, confidence UNSUPPORTED_END_CONFIDENCE). Tuned on bench/geometry.py
# (--no-render, 100 singles / 60 corners): the confident wrong corners' far walls are 8-41 % of the mask, correct
# single walls rarely reach 7 %.
DISAGREE_END_SHARE = 0.075
# From FAR_WALL_SEARCH_SHARE on, the far wall's own direction is looked for among the disagreeing lines there
# (pipeline/geometry_vanishing.fit_end_direction; below the flag's share, since a found direction is its own check):
# on the same set confident wrong corner walls 8.9 -> 8.3 % against searching from DISAGREE_END_SHARE; 0.03 gives the
# same. The test scene of a 60-degree corner whose far wall is 9 % of the mask (share 0.065) was confidently 50
# degrees off without it.
FAR_WALL_SEARCH_SHARE = 0.05
# A found far wall seen more edge-on than 75 degrees (|cos| of normal vs viewing ray under FAR_WALL_MIN_VIEW_COS) is
# a wrong direction, not a wall: on US house_295 such a "far wall" turned the boards of a side patch vertical. No
# corner of the bench set comes that close (0.26 leaves it unchanged, 0.4 loses far walls).
FAR_WALL_MIN_VIEW_COS = 0.26
DISAGREE_BINS = 24
UNSUPPORTED_END_CONFIDENCE = 0.5


# The corner line, where the line evidence leaves it open: every split whose score is within NEAR_TIE of the best
# (share of the lines' weight) is as good by the lines. If the mask has a gap in that range (a corner board, a
# downpipe or trim left unpainted, a recess, or one wall standing in front of the other), the corner is in the gap:
# a run of at least GAP_MIN_BINS bins of 2 px (pencil coordinate) holding under GAP_EMPTY of the mask's typical
# per-bin pixel count. Otherwise the longest vertical line in the tie is taken (a corner edge), else its middle.
# Tuned on bench/geometry.py (--no-render, 100 corners): confident wrong corner walls 13.5 -> 8.8 %; 0.03-0.1 give
# the same, 0 and 0.01 less. (Tried and dropped: the strongest colour step across the line in the same range, for
# walls in different light: 10.4 %, it finds window columns as often as corners.)
NEAR_TIE = 0.05
GAP_EMPTY = 0.1
GAP_MIN_BINS = 2
# The split's line evidence. A line that fits the other wall's direction within AMBIGUOUS_OFF tolerances (near the
# horizon, or at a shallow corner, both directions look alike) says nothing about which wall it is on: its weight
# goes from 0 there to full one tolerance further. It decides where the corner line goes; whether the lines split
# at all is first asked with every line's full weight (with the discount alone, single walls got false corners) and
# only then, flagged and under TELLING_BALANCE, with the discount (TELLING_SPLIT_SHARE below).
# Without it one such line on the wrong side moved the corner line 20-30 px. With EDGE_RADIUS below, on
# bench/geometry.py (two corner sets of 100 and 150 views, seeds 0 and 1) confident wrong 6.3 -> 4.2 % and
# 10.7 -> 8.5 %, > 5 deg 16.8 -> 14.7 % and 18.1 -> 16.0 %; the discount alone gave 6.3 -> 5.8 % and 10.7 -> 10.3 %
# (measured with it in both tests), the rest is the edge rule's; 0.5 and 1.5 give about the same.
AMBIGUOUS_OFF = 1.0
# The corner edge is looked for within SNAP_MARGIN (image widths) of the best split, as the pencil coordinate where
# vertical segments within EDGE_RADIUS px add up to the most length: LSD breaks a corner edge at every sill and
# shadow, so its pieces count together, while a window jamb is one short piece (radius 1.5-4 px the same, a margin
# of 0.005-0.02 no better).
SNAP_MARGIN = 0.01
# Two wall directions whose lines no vertical line splits at SPLIT_SHARE of all their weight may still be a corner:
# near the horizon, or at a shallow corner, one wall's lines fit the other's direction too, and count on the wrong
# side. Those set aside (AMBIGUOUS_OFF's weights), a split at TELLING_SPLIT_SHARE of the rest is taken when both
# directions keep a comparable share of that telling weight (the weaker at least TELLING_BALANCE of the stronger: a
# roof edge's or an ornament's direction on a single wall is much weaker than its courses); such a split is flagged
# (`CornerSplit.telling_lines_only`). On bench/geometry.py (seeds 0 and 1) it split 9 corner views: 4 walls 11-16 deg
# off came right, one stayed 19 deg off (now flagged); no single wall changed; 5 gable views changed, 4 better, one
# 6 -> 16 deg (all gables are flagged); no US house changed. (0.55 / 0.83 and 0.6 / 0.85 split fewer, none better.)
# Nor when the two directions lie in one wall's plane (`in_one_plane`): the lines that tell them apart are then a
# roof edge's or a rake's beside the courses (houses-train house_483's frontal wall had its boards follow its rake);
# pipeline/geometry.py takes such a pair as one wall's.
SPLIT_SHARE = 0.85
TELLING_SPLIT_SHARE = 0.8
TELLING_BALANCE = 0.5
EDGE_RADIUS = 2.5


def gap_in_mask(mask: np.ndarray, U: np.ndarray, window: tuple[float, float], L: float) -> float | None:
    """The middle of the widest gap of the mask across the pencil lines, within window (pencil coordinates), or
    None. U: each pixel's pencil coordinate."""
    step = max(1, int(mask.sum()) // 60000)
    um = U[mask][::step]
    edges = np.arange(*np.percentile(um, [0.5, 99.5]), 2.0 / L)
    if len(edges) < 8:
        return None
    count = np.histogram(um, edges)[0]
    typical = np.median(count[count > 0])
    empty = (count < GAP_EMPTY * typical) & (edges[:-1] >= window[0]) & (edges[1:] <= window[1])
    widest, start, gap = 0, None, None
    for k, e in enumerate(empty):
        if not e:
            start = None
            continue
        start = k if start is None else start
        if k - start + 1 > widest:
            widest, gap = k - start + 1, (start, k)
    if gap is None or widest < GAP_MIN_BINS:
        return None
    return float(0.5 * (edges[gap[0]] + edges[gap[1] + 1]))


def corner_edge(u: np.ndarray, length: np.ndarray, lo: float, hi: float, L: float) -> float | None:
    """The pencil coordinate in (lo, hi) where the vertical segments at u (their lengths) within EDGE_RADIUS px of
    each other add up to the most length, or None without any there."""
    inside = (u > lo) & (u < hi)
    if not inside.any():
        return None
    u, length = u[inside], length[inside]
    close = np.abs(u[:, None] - u[None, :]) < EDGE_RADIUS / L
    k = int(np.argmax(close @ length))
    return float(np.average(u[close[k]], weights=length[close[k]]))


class CornerSplit(NamedTuple):
    """A mask split at a corner line (`split_corner`)."""

    left: np.ndarray  # the left wall's mask
    right: np.ndarray
    anchor: np.ndarray  # a pixel on the corner line (3,), at the mask's mean height
    left_i: int  # index of the left wall's vanishing point in vh
    right_i: int
    # the directions' lines split only once the lines that fit both were set aside (TELLING_SPLIT_SHARE): less sure
    telling_lines_only: bool = False


def split_corner(seg: Segments, vv, vh, mask, xs, ys, cx, cy, L) -> CornerSplit | None:
    """Split the mask between two horizontal vanishing points along a line through the vertical one, or None."""
    v_vert = vv if vv is not None else np.array([0.0, 1.0, 0.0])
    yc = float((ys.mean() - cy) / L)

    def pc(pts, idx):
        return pencil_coord(v_vert, pts[idx, 0], pts[idx, 1], yc)

    ia, ib = vh[0][1], vh[1][1]
    left, right = 0, 1
    if np.median(pc(seg.mid, ia)) > np.median(pc(seg.mid, ib)):
        ia, ib = ib, ia
        left, right = 1, 0
    # points along the segments (so a long line counts where it lies, not just at its midpoint)
    t = (np.arange(8) + 0.5) / 8

    def along(idx, other_vp):
        pts = seg.p1[idx, None, :] + t[None, :, None] * (seg.p2[idx] - seg.p1[idx])[:, None, :]
        uu = pencil_coord(v_vert, pts[..., 0], pts[..., 1], yc).ravel()
        # a line that fits the other direction nearly as well says nothing about which wall it is on
        off = sin_error(other_vp[None], seg.mid[idx], seg.d[idx])[0] / seg.tol[idx]
        decisive = np.repeat(np.clip(off - AMBIGUOUS_OFF, 0.0, 1.0), len(t))
        return uu, np.repeat(seg.length[idx] / len(t), len(t)), decisive

    va, vb = (vh[0][0], vh[1][0]) if left == 0 else (vh[1][0], vh[0][0])
    ua, wa, da = along(ia, vb)
    ub, wb, db = along(ib, va)
    u = np.concatenate([ua, ub])
    order = np.argsort(u)
    u = u[order]
    zero_a, zero_b = np.zeros_like(wa), np.zeros_like(wb)

    def split_score(left_w, right_w):
        """score of a split just after position k: left-VP weight at or before k + right-VP weight after k"""
        wl, wr = np.concatenate([left_w, zero_b])[order], np.concatenate([zero_a, right_w])[order]
        return np.cumsum(wl) + (wr.sum() - np.cumsum(wr)), wl.sum() + wr.sum()

    # whether one line splits the two directions' lines at all: all lines count, or else only those that tell the
    # walls apart (TELLING_SPLIT_SHARE)
    score, total = split_score(wa, wb)
    t_score, t_total = split_score(wa * da, wb * db)
    telling_only = score.max() / total < SPLIT_SHARE
    if telling_only:
        telling_a, telling_b = float((wa * da).sum()), float((wb * db).sum())
        balanced = min(telling_a, telling_b) >= TELLING_BALANCE * max(telling_a, telling_b)
        if not balanced or t_score.max() < TELLING_SPLIT_SHARE * t_total or in_one_plane(vv, vh[0][0], vh[1][0]):
            return None
    # where: the lines that tell the walls apart
    score, total = t_score, t_total
    best = float(score.max())
    if best <= 0:
        return None
    ks = np.nonzero(score >= best - 1e-9 * best)[0]
    k0, k1 = int(ks[0]), int(ks[-1])
    lo = u[k0]
    hi = u[k1 + 1] if k1 + 1 < len(u) else u[k1]
    s_split = 0.5 * (lo + hi)
    # the run of near-ties around the best split
    near = score >= best - NEAR_TIE * total
    n_lo = n_hi = int(np.argmax(score))
    while n_lo > 0 and near[n_lo - 1]:
        n_lo -= 1
    while n_hi + 1 < len(u) and near[n_hi + 1]:
        n_hi += 1
    near_ties = (u[n_lo] - 0.005, u[min(n_hi + 1, len(u) - 1)] + 0.005)
    lo, hi = lo - SNAP_MARGIN, hi + SNAP_MARGIN
    # snap to the corner edge inside the gap, if there is one: where vertical segments add up to the most length
    if vv is not None:
        vi = np.nonzero(np.abs(seg.d[:, 0]) < 0.3)[0]
        vi = vi[sin_error(vv[None], seg.mid[vi], seg.d[vi])[0] < seg.tol[vi]]
        edge = corner_edge(pc(seg.mid, vi), seg.length[vi], lo, hi, L)
        if edge is not None:
            s_split = edge
    h, w = mask.shape
    xn = (np.arange(w) - cx) / L
    yn = (np.arange(h) - cy) / L
    U = pencil_coord(v_vert, xn[None, :], yn[:, None], yc)
    in_gap = gap_in_mask(mask, U, near_ties, L)
    if in_gap is not None:
        s_split = in_gap
    left_mask = mask & (U < s_split)
    right_mask = mask & ~(U < s_split)
    n = mask.sum()
    if left_mask.sum() < 0.05 * n or right_mask.sum() < 0.05 * n:
        return None
    # anchor: the corner line at the mask's mean height
    # (point on the horizontal line y = yc at pencil coordinate s_split)
    anchor = np.array([s_split * L + cx, ys.mean(), 1.0])
    return CornerSplit(left_mask, right_mask, anchor, left, right, telling_only)


def vertical_direction(Kinv, vv_px) -> np.ndarray:
    """The walls' vertical direction in the camera frame (unit), from the vertical vanishing point in pixels, or the
    image's y axis without one (the camera assumed upright)."""
    r_v = Kinv @ vv_px if vv_px is not None else np.array([0.0, 1.0, 0.0])
    return r_v / np.linalg.norm(r_v)


def grazing_cos(Kinv, vv_px, vh_px, xs, ys) -> float:
    """|cos| of the angle between the wall's normal (from its vertical and horizontal vanishing points) and the
    viewing ray to the wall's centre pixel: 1 facing the camera, 0 seen edge-on."""
    n = np.cross(vertical_direction(Kinv, vv_px), Kinv @ vh_px)
    ray = Kinv @ np.array([xs.mean(), ys.mean(), 1.0])
    return float(abs(n @ ray) / (np.linalg.norm(n) * np.linalg.norm(ray)))


def course_turn(K, Kinv, vv_px, vh_px, xs, ys) -> float:
    """How far (deg, in the image) the horizontal vanishing point vh_px turns the courses away from the
    fronto-parallel ones (the camera's x axis made perpendicular to the vertical, what
    `geometry_frames.wall_homography` uses without a horizontal vanishing point), the largest over the wall's four
    quarters (10th / 90th percentile of its pixels' x and y)."""
    r_v = vertical_direction(Kinv, vv_px)
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


def disagreeing_end(seg: Segments, vv, support_idx: np.ndarray, cand_idx: np.ndarray, xs: np.ndarray,
                    ys: np.ndarray, cx: float, cy: float, L: float) -> tuple[float, np.ndarray]:
    """The longest run, from either end of the mask across the wall, of bins whose near-horizontal lines disagree
    with the chosen direction (see DISAGREE_END_SHARE): (share of the mask's pixels in it, the disagreeing lines'
    indices whose midpoints lie in it). Position across the wall is the pencil coordinate through the vertical
    vanishing point, so a leaning corner line stays one bin edge."""
    v_vert = vv if vv is not None else np.array([0.0, 1.0, 0.0])
    yc = float((ys.mean() - cy) / L)
    step = max(1, len(xs) // 20000)
    um = pencil_coord(v_vert, (xs[::step] - cx) / L, (ys[::step] - cy) / L, yc)
    edges = np.linspace(*np.percentile(um, [1, 99]), DISAGREE_BINS + 1)
    mass = np.histogram(um, edges)[0] / len(um)
    t = (np.arange(16) + 0.5) / 16

    def line_length_per_bin(idx):  # a long line counts in every bin it crosses
        if not len(idx):
            return np.zeros(DISAGREE_BINS)
        pts = seg.p1[idx, None, :] + t[None, :, None] * (seg.p2[idx] - seg.p1[idx])[:, None, :]
        uu = pencil_coord(v_vert, pts[..., 0], pts[..., 1], yc).ravel()
        return np.histogram(uu, edges, weights=np.repeat(seg.length[idx] / len(t), len(t)))[0]

    others = np.setdiff1d(cand_idx, support_idx)
    agree = line_length_per_bin(support_idx)
    disagree = line_length_per_bin(others)
    present = mass > 0.2 / DISAGREE_BINS
    bad = present & (disagree > 2 * agree) & (disagree > 0.01)
    lineless = (disagree <= 0.01) & (agree <= 0.01)  # no say either way: the run goes on through it
    best, span = 0.0, (0.0, 0.0)
    for order in (range(DISAGREE_BINS), range(DISAGREE_BINS - 1, -1, -1)):
        run = 0.0
        for k in order:
            if not (bad[k] or lineless[k] or not present[k]):
                break
            run += mass[k]
            if bad[k] and run > best:
                best = run
                span = (-np.inf, float(edges[k + 1])) if order[0] == 0 else (float(edges[k]), np.inf)
    u_mid = pencil_coord(v_vert, seg.mid[others, 0], seg.mid[others, 1], yc)
    return best, others[(u_mid > span[0]) & (u_mid < span[1])]


# A gable is not a corner. A frontal wall with few lines of its own under a shallow gable shows two sloped rakes
# meeting at the apex above a vertical line: what the eaves of a corner seen from below look like, and the line
# evidence (both directions, their split, one horizon for one focal length) cannot tell them apart. The wall's base
# can: it is a line of the wall, so it runs to the wall's horizontal vanishing point, and at a real corner it bends
# there (each wall's base runs to its own point). So when the mask's lower edge (away from the image frame) keeps to
# one straight line (within BASE_TOL image widths) on at least BASE_COVER of its columns on each side of the corner
# line, and that line points more than BASE_DISAGREE_DEG away from either side's vanishing point, it is one wall
# (its courses along the base: pipeline/geometry.py). On 36 known-camera views of such a gable
# (tests/test_geometry.py low_gable_wall, aim and yaw varied) confident wrong 36 -> 0 at f 700-1200 px on 1024,
# 30 -> 2 at 400-600 px (wider than 24 mm); bench/geometry.py's gable views 82.5 -> 0 %; no view of bench/geometry.py changes (real corners' bases bend: one corner's
# base reaches the straightness test at all, 0.5 and 1.0 deg off its points), nor do the US houses. (Tried and
# dropped: the same test on one wall's halves against its one direction: it snapped 7 correct single walls of the
# bench, whose near vanishing points are a few degrees off at the base; a one-horizon / orthogonality test of the
# corner's two directions: a shallow gable passes it, real corners with noisy points fail it.)
BASE_TOL = 0.005
BASE_COVER = 0.6
BASE_MIN_COLUMNS = 0.05  # image widths of lower edge each side needs for the test to say anything
BASE_DISAGREE_DEG = 3.0


def straight_base(mask: np.ndarray, left_mask: np.ndarray):
    """The straight line (homogeneous, pixels) the mask's lower edge keeps to on BASE_COVER of its columns on both
    walls of a corner split (`left_mask`: the left one), with the lower-edge points of each wall: (line, left points,
    right points), or None when it does not run straight across (see BASE_COVER)."""
    h, w = mask.shape
    L = float(max(h, w))
    cols = np.nonzero(mask.any(axis=0))[0]
    y_base = h - 1 - np.argmax(mask[::-1, cols], axis=0)
    keep = y_base < h - 2  # a mask cut by the frame has no base there
    cols, y_base = cols[keep], y_base[keep]
    on_left = left_mask[y_base, cols]
    if min(on_left.sum(), (~on_left).sum()) < BASE_MIN_COLUMNS * L:
        return None
    pts = np.stack([cols, y_base], axis=1).astype(np.float64)
    # RANSAC for the straight line through most base points, from one point on each side so it spans both
    left_pts, right_pts = pts[on_left], pts[~on_left]
    rng = np.random.default_rng(0)  # its own draws: asking must not change the vanishing points' RANSAC
    a = left_pts[rng.integers(len(left_pts), size=200)]
    d = right_pts[rng.integers(len(right_pts), size=200)] - a
    n = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    inl = np.abs(pts @ n.T - (a * n).sum(axis=1)) < BASE_TOL * L  # (points, hypotheses)
    cover = np.minimum(inl[on_left].mean(axis=0), inl[~on_left].mean(axis=0))
    k = int(np.argmax(cover))
    if cover[k] < BASE_COVER:
        return None
    return np.cross([*a[k], 1.0], [*(a[k] + d[k]), 1.0]), left_pts, right_pts


def base_disagrees(base, vp_left_px: np.ndarray, vp_right_px: np.ndarray) -> bool:
    """Whether a straight base (`straight_base`) points more than BASE_DISAGREE_DEG away from the vanishing point
    (pixels) of the wall on either side."""
    line, left_pts, right_pts = base
    direction = np.array([line[1], -line[0]]) / np.hypot(line[0], line[1])

    def off_deg(side_pts, vp):  # the straight base vs the line from that side's base to its vanishing point
        to_vp = vp[:2] - side_pts.mean(axis=0) * vp[2]
        c = abs(float(direction @ to_vp)) / max(float(np.linalg.norm(to_vp)), 1e-12)
        return math.degrees(math.acos(min(1.0, c)))
    return max(off_deg(left_pts, vp_left_px), off_deg(right_pts, vp_right_px)) > BASE_DISAGREE_DEG
