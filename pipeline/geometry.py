"""Stage 2: wall geometry from straight lines and vanishing points.

`LineGeometry` finds straight segments (OpenCV's LSD, on a downscaled grey copy), estimates a vertical vanishing
point (the scene's, or the wall's own where its verticals disagree) and one or two horizontal vanishing points with
length-weighted RANSAC plus a least-squares refinement on the Gaussian sphere (so vanishing points at or near
infinity, the affine case, are handled like any other), and turns them into one homography per wall:

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
  The mask is split along that line, unless the mask's base runs straight on under it (a shallow gable's rakes
  look like a corner's eaves seen from below; `geometry_walls.base_disagrees`): then one wall, its courses along
  its base, flagged.
  Both walls share the anchor (a point on the corner line), the vertical direction and the unit, so their
  rectified frames are metrically consistent: same physical unit, same y, and x unrolled across the corner (the
  right wall's x continues where the left wall's ends).
* One direction found, but the lines at one end of the mask disagree with it (the far wall of an oblique corner,
  its direction too weak to be found over the whole mask): its direction is looked for among those lines alone and,
  when they agree on one near perpendicular to the first, the mask is split as at any corner; the far wall is then
  flagged (confidence below 1), since few lines gave its direction. Otherwise the one wall is flagged.

Without usable lines the wall is assumed fronto-parallel (identity homography) and a warning says so. Weak or
contradicting evidence gives the safe answer or a flagged one (a warning and a confidence below 1), never a confident
wrong plane.

The pieces: `geometry_lines` (segments), `geometry_vanishing` (vanishing points, focal length), `geometry_walls`
(corner split, level snap test, disagreement test), `geometry_frames` (homographies, widths, placement); this module
decides between them.
"""

from __future__ import annotations

import numpy as np

from . import geometry_frames as frames
from . import geometry_vanishing as vanishing
from .errors import InputError
from .geometry_lines import DETECT_SIDE, NearMask, detect
from .geometry_walls import DISAGREE_END_SHARE, FAR_WALL_MIN_VIEW_COS, FAR_WALL_SEARCH_SHARE, \
    UNSUPPORTED_END_CONFIDENCE, base_disagrees, course_turn, disagreeing_end, grazing_cos, split_corner, straight_base
from .stages import Geometry, VanishingPoints, Wall

NAME = "embedded:lsd-vanishing-points"
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
# Two wall directions found but no corner line separates them (`geometry_walls.split_corner`): one wall with the
# stronger direction, flagged, since the other direction's wall (about half of such corner views in
# bench/geometry.py) is then wrong.
# (Tried instead and dropped: separating them by where each direction's lines lie made both walls worse; one wall
# per connected mask region by its lines' direction made the US houses' opening edges worse, p95 8.8 -> 13.9 deg.)
UNSEPARATED_CONFIDENCE = 0.5
# A wall's visible pixels all lie on one side of its vanishing line, and well away from it. When a single wall's
# course direction puts more than IMPOSSIBLE_LINE_SHARE of its mask close to or beyond that line (where one pixel
# would cover over ~6x the wall's median footprint: `geometry_frames.near_vanishing_line`), the direction is wrong:
# the courses are set level instead, flagged. A known-camera view of a plain wall's lower half (its base and the
# trim boards' feet) had its courses turned 88 deg, confidently; a gable's base-line direction 98 deg. No
# wall of bench/geometry.py's single and corner views has even 1 % of its mask there; of the 32 US houses with the
# parser's masks one changed (house_386, 5 %, mask spill; its vertical boards now stand upright, they leaned).
IMPOSSIBLE_LINE_SHARE = 0.05


def _camera(f: float, L: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """K and its inverse for focal length f (normalised by the long side L), principal point (cx, cy)."""
    K = np.array([[f * L, 0, cx], [0, f * L, cy], [0, 0, 1.0]])
    return K, np.linalg.inv(K)


class LineGeometry:
    """GeometryEstimator from LSD segments and vanishing points (see the module docstring)."""

    name = NAME

    def __init__(self, seed: int = 0, detect_side: int = DETECT_SIDE):
        self.seed = seed
        self.detect_side = detect_side

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
        seg, s = detect(image, self.detect_side)
        ys, xs = np.nonzero(mask)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        near = NearMask(seg, mask.shape, s)
        on_wall = near.of(mask)
        vv, vert_inl = vanishing.fit_vertical(seg, rng, on_wall)
        vh, hor_cand = vanishing.fit_horizontals(seg, on_wall, vert_inl, vv, rng)

        if vv is None and not vh:
            warnings.append("geometry: no usable straight lines found; assuming a fronto-parallel wall "
                            "(identity rectification)")
            return self._fallback(mask, warnings)

        normalised_to_px = np.array([[L, 0, cx], [0, L, cy], [0, 0, 1.0]])

        def to_px(v):  # normalised -> pixel homogeneous coordinates
            return normalised_to_px @ v

        # two walls at an angle?
        split, unseparated, snapped, from_base = None, False, False, False
        if len(vh) == 2:
            split = split_corner(seg, vv, vh, mask, xs, ys, cx, cy, L)
        base = straight_base(mask, split[0]) if split is not None else None
        if base is not None and base_disagrees(base, to_px(vh[split[3]][0]), to_px(vh[split[4]][0])):
            warnings.append("geometry: the wall's base runs straight under the corner its lines suggest (a "
                            "gable's rakes?); one wall, its courses along its base")
            # the base is the one line of this wall known to be horizontal: its vanishing point is on the horizon
            along_base = vanishing.horizontal_on_line(normalised_to_px.T @ base[0], vv)  # the line, normalised
            split, vh, from_base = None, [(along_base, np.zeros(0, int), 0.0)], True
        if split is None and len(vh) == 2:
            vh = vh[:1]
            unseparated = True
            warnings.append("geometry: two wall directions found but their lines could not be told apart; one "
                            "wall with the stronger direction (courses may be off on part of the wall)")
            # (the base cannot tell which is right: a rake's vanishing point fitted with the base line lies on it)

        f = vanishing.focal_from_pairs([(vv, v[0]) for v in vh] + ([(vh[0][0], vh[1][0])] if len(vh) == 2 else []))
        K, Kinv = _camera(f, L, cx, cy)

        vv_px = to_px(vv) if vv is not None else None

        if vv is None:
            warnings.append("geometry: no vertical vanishing point; assuming the camera is upright")
        if not vh:
            warnings.append("geometry: no horizontal vanishing point on the wall; assuming it faces the camera")
        if split is None and vh:
            turn = course_turn(K, Kinv, vv_px, to_px(vh[0][0]), xs, ys)
            support_len = float(seg.length[vh[0][1]].sum())
            if turn <= SNAP_LEVEL_DEG and support_len < SNAP_MAX_SUPPORT and not from_base:
                warnings.append(f"geometry: the wall's courses are within {turn:.1f} deg of level on little line "
                                f"evidence ({support_len:.2f} image widths); snapped to level, assuming the wall "
                                "faces the camera")
                vh = []
                snapped = True
                # the focal length no longer has the (doubtful) horizontal vanishing point's say
                K, Kinv = _camera(vanishing.focal_from_pairs([]), L, cx, cy)

        end_unsupported, far_found = False, False
        if split is None and vh and not unseparated and not from_base:
            share, end_idx = disagreeing_end(seg, vv, vh[0][1], hor_cand, xs, ys, cx, cy, L)
            end_unsupported = share >= DISAGREE_END_SHARE
            far = vanishing.fit_end_direction(seg, end_idx, vh[0][0], vv, rng) if share >= FAR_WALL_SEARCH_SHARE \
                else None
            split = split_corner(seg, vv, vh + [far], mask, xs, ys, cx, cy, L) if far is not None else None
            if split is not None:
                far_mask = split[0] if split[3] == 1 else split[1]  # split: (left, right, anchor, left_i, right_i)
                ys_f, xs_f = np.nonzero(far_mask)
                if grazing_cos(Kinv, vv_px, to_px(far[0]), xs_f, ys_f) < FAR_WALL_MIN_VIEW_COS:
                    split = None  # a wall seen that edge-on is a wrong direction, not a far wall seen obliquely
                elif (base := straight_base(mask, split[0])) is not None and base_disagrees(
                        base, to_px((vh + [far])[split[3]][0]), to_px((vh + [far])[split[4]][0])):
                    split = None  # the base runs on straight where the far wall would begin
            if split is not None:  # the far wall's own direction, found where the lines said it would be
                warnings.append("geometry: a second wall found at one end of the mask from few lines; its courses "
                                "may be off")
                # the camera stays the one the near wall's lines gave: the few far lines must not move its focal
                vh, end_unsupported, far_found = vh + [far], False, True
            elif end_unsupported:
                warnings.append(f"geometry: the lines on {100 * share:.0f}% of the wall, at one end, disagree "
                                "with its course direction (a second wall there?); courses may be off on that part")

        def measured() -> VanishingPoints:
            # a snapped direction was assumed, not measured: it is not passed on (vh is empty then); nor is one
            # from the mask's base and the focal-length prior
            return VanishingPoints(vv_px, [] if from_base else [to_px(v[0]) for v in vh])

        def support(on: np.ndarray, hor_idx) -> np.ndarray:
            """End points (full-resolution pixels) of the line segments that lie on this wall: the inliers of
            its horizontal vanishing point with their midpoints on/near its mask (`on`: NearMask.of the mask)."""
            sel = np.zeros(len(seg), bool)
            if hor_idx is not None:
                sel[hor_idx] = True
            sel &= on
            pts = np.concatenate([seg.p1[sel], seg.p2[sel]]) * L + np.array([cx, cy])
            return pts

        if split is None:
            anchor = np.array([xs.mean(), ys.mean(), 1.0])
            H = frames.wall_homography(K, Kinv, anchor, vv_px, to_px(vh[0][0]) if vh else None)
            near_line = frames.near_vanishing_line(H, mask)[0] if vh else 0.0
            if near_line > IMPOSSIBLE_LINE_SHARE:
                warnings.append(f"geometry: the course direction found puts the wall's vanishing line across "
                                f"{100 * near_line:.0f}% of the wall, which a wall seen from the front cannot have; "
                                "courses assumed level (facing the camera)")
                vh, snapped = [], True
                K, Kinv = _camera(vanishing.focal_from_pairs([]), L, cx, cy)
                H = frames.wall_homography(K, Kinv, anchor, vv_px, None)
            conf = 1.0 if vh else (SNAPPED_CONFIDENCE if snapped else NO_COURSES_CONFIDENCE)
            if unseparated:
                conf = min(conf, UNSEPARATED_CONFIDENCE)
            if from_base:
                conf = min(conf, SNAPPED_CONFIDENCE)
            if end_unsupported:
                conf = min(conf, UNSUPPORTED_END_CONFIDENCE)
            walls = [Wall(mask, H, confidence=conf)]
            frames.place_walls(walls, [support(on_wall, vh[0][1] if vh else None)], warnings)
            return Geometry(walls, NAME, warnings, measured())

        left_mask, right_mask, anchor, left_i, right_i = split
        # by direction index: a far wall's direction from the few lines at its end is the best guess, not a sure
        # one (on bench/geometry.py 14 of 21 such far walls came right, the 7 others stay flagged)
        confidence = [1.0, UNSUPPORTED_END_CONFIDENCE if far_found else 1.0]
        # each wall's direction once more from the lines on that wall alone: the corner's first fit saw both walls'
        # lines, and the other wall's (or the corner's clutter) can pull it
        vh = list(vh)
        walls, supports = [], []
        for m_k, i_k in ((left_mask, left_i), (right_mask, right_i)):
            on_k = near.of(m_k)
            vh[i_k] = vanishing.refit_on_wall(seg, hor_cand[on_k[hor_cand]], vh[i_k], vv, rng)
            Hk = frames.wall_homography(K, Kinv, anchor, vv_px, to_px(vh[i_k][0]))
            walls.append(Wall(m_k, Hk, confidence=confidence[i_k]))
            supports.append(support(on_k, vh[i_k][1]))
        frames.place_walls(walls, supports, warnings, unrolled=True)
        return Geometry(walls, NAME, warnings, measured())

    @staticmethod
    def _fallback(mask: np.ndarray, warnings: list[str]) -> Geometry:
        xs = np.nonzero(mask.any(axis=0))[0]
        width = float(xs[-1] - xs[0] + 1) if len(xs) else 0.0
        return Geometry([Wall(mask.copy(), np.eye(3), width, confidence=FALLBACK_CONFIDENCE)], NAME, warnings)
