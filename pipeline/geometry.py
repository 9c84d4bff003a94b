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
* A corner split whose smaller side is a sliver (under MIN_WALL_SHARE of the mask) is one wall, flagged.
* Two directions whose lines a corner line splits only once the lines that fit both are set aside (near the
  horizon, or at a shallow corner): a corner, both walls flagged, when both directions keep a comparable share of
  those lines and do not lie in one wall's plane (that is a roof edge beside the courses, below). This holds for a
  far wall's split too: then the near wall is flagged as well.
* Two directions that no corner line separates: when they lie with the vertical in one plane they are one wall's
  (a roof edge beside the courses: the flatter is taken; a gable's two rakes: the courses run between them), else
  the stronger is taken (and separate regions may take their own plane, below); flagged either way.
* One direction found (or the stronger of two unseparated ones not in one plane), and a separate connected region
  of the mask whose own lines disagree with it (a far wall beyond a gap, a downpipe or a tree): that region gets
  its own plane, flagged, at the main wall's distance at its centre, unless that plane would be seen nearly
  edge-on.

Without usable lines the wall is assumed fronto-parallel (identity homography) and a warning says so. Weak or
contradicting evidence gives the safe answer or a flagged one (a warning and a confidence below 1), never a confident
wrong plane.

The pieces: `geometry_lines` (segments), `geometry_vanishing` (vanishing points, focal length), `geometry_walls`
(corner split, level snap test, disagreement test), `geometry_frames` (homographies, widths, placement); this module
decides between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import geometry_frames as frames
from . import geometry_vanishing as vanishing
from .errors import InputError
from .geometry_lines import DETECT_SIDE, NearMask, Segments, detect
from .geometry_walls import DISAGREE_END_SHARE, FAR_WALL_MIN_VIEW_COS, FAR_WALL_SEARCH_SHARE, \
    UNSUPPORTED_END_CONFIDENCE, CornerSplit, base_disagrees, course_turn, disagreeing_end, grazing_cos, split_corner, \
    straight_base
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
# bench/geometry.py) is then wrong. A separate part of the mask whose own lines disagree takes its own plane
# (`_regions_with_own_plane`), as for a wall with one direction: the two walls of such corners are often two
# regions of the mask (this rule alone, before the split on telling lines: bench corners p95 14.1 -> 10.5 deg,
# held-out 15.1 -> 9.5 deg; one held-out single wall 0.9 -> 3.9 deg, flagged) - but not when the two directions lie
# in one wall's plane (a roof edge beside the courses: US house_282's frontal left face took a 13-deg rake from 4
# lines).
# (Tried instead and dropped: separating them by where each direction's lines lie made both walls worse.)
UNSEPARATED_CONFIDENCE = 0.5
# A wall's visible pixels all lie on one side of its vanishing line, and well away from it. When a single wall's
# course direction puts more than IMPOSSIBLE_LINE_SHARE of its mask close to or beyond that line (where one pixel
# would cover over ~6x the wall's median footprint: `geometry_frames.near_vanishing_line`), the direction is wrong:
# the courses are set level instead, flagged. A known-camera view of a plain wall's lower half (its base and the
# trim boards' feet) had its courses turned 88 deg, confidently; a gable's base-line direction 98 deg. No
# wall of bench/geometry.py's single and corner views has even 1 % of its mask there; of the 32 US houses with the
# parser's masks one changed (house_386, 5 %, mask spill; its vertical boards now stand upright, they leaned).
IMPOSSIBLE_LINE_SHARE = 0.05
# A corner split whose smaller wall is a sliver at the mask's end (under MIN_WALL_SHARE of its pixels) is more often
# a facade's edge detail read as a second direction than a far wall: on bench/geometry.py a single wall with such
# a sliver had its courses 8 deg off, confidently. The sliver takes the larger wall's plane, flagged (0.08 fixed it
# and flagged two correct corner walls over the tuning and held-out sets; 0.12 also fixed a 31-deg single wall but
# gave three real small far walls 11-27 deg errors). No US house's geometry changes.
MIN_WALL_SHARE = 0.08
# A connected part of the mask of at least REGION_MIN_SHARE of it may take its own plane (`_regions_with_own_plane`):
# on bench/geometry.py two walls of a corner that the split missed are often two separate regions of the mask
# (0.1 left a test scene's 8 % far wall 36 deg off; 0.05 changes no US house's labelled-mask geometry).
REGION_MIN_SHARE = 0.05
# A region's own direction that has it seen within ~6 deg of edge-on (|cos| of its normal vs the viewing ray under
# REGION_MIN_VIEW_COS) is a wrong direction: a part of the mask that large would be a sliver seen so. With the
# parser's mask houses-train house_83's stone porch pier took courses 60 deg steep from its texture's lines (0.03);
# on bench/geometry.py one region falls below (0.09; its view's errors unchanged), correct ones go down to 0.17.
REGION_MIN_VIEW_COS = 0.1


def _camera(f: float, L: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """K and its inverse for focal length f (normalised by the long side L), principal point (cx, cy)."""
    K = np.array([[f * L, 0, cx], [0, f * L, cy], [0, 0, 1.0]])
    return K, np.linalg.inv(K)


@dataclass
class _Lines:
    """What one photo's lines say, shared by the decisions of `LineGeometry.estimate`: the segments, which lie on
    the wall mask, the vertical vanishing point and the horizontal candidates (all in normalised coordinates)."""

    seg: Segments
    near: NearMask
    on_wall: np.ndarray  # bool per segment: on or near the mask
    vv: np.ndarray | None  # vertical vanishing point
    hor_cand: np.ndarray  # indices of the segments that may be horizontal in the wall
    mask: np.ndarray
    xs: np.ndarray  # the mask's pixels
    ys: np.ndarray
    L: float  # the image's long side
    cx: float  # the principal point (the image centre)
    cy: float
    rng: np.random.Generator

    def __post_init__(self):
        self.normalised_to_px = np.array([[self.L, 0, self.cx], [0, self.L, self.cy], [0, 0, 1.0]])
        self.vv_px = self.to_px(self.vv) if self.vv is not None else None

    def to_px(self, v: np.ndarray) -> np.ndarray:
        """Normalised -> pixel homogeneous coordinates."""
        return self.normalised_to_px @ v

    def camera(self, f: float) -> tuple[np.ndarray, np.ndarray]:
        return _camera(f, self.L, self.cx, self.cy)

    def prior_camera(self) -> tuple[np.ndarray, np.ndarray]:
        """The camera at the focal-length prior: once a horizontal direction is dropped as doubtful, it must no
        longer have a say in the focal length."""
        return self.camera(vanishing.focal_from_pairs([]))

    def split(self, vh: list) -> CornerSplit | None:
        return split_corner(self.seg, self.vv, vh, self.mask, self.xs, self.ys, self.cx, self.cy, self.L)

    def candidates_on(self, on: np.ndarray) -> np.ndarray:
        """The horizontal candidates among the segments on/near a part of the mask (`on`: NearMask.of it)."""
        return self.hor_cand[on[self.hor_cand]]

    def base_under(self, split: CornerSplit, vh: list) -> np.ndarray | None:
        """The mask's straight base, when it runs on under the split's corner line away from both walls'
        vanishing points (a gable, not a corner); None otherwise."""
        base = straight_base(self.mask, split.left)
        left_vp, right_vp = self.to_px(vh[split.left_i][0]), self.to_px(vh[split.right_i][0])
        if base is not None and base_disagrees(base, left_vp, right_vp):
            return base
        return None

    def support(self, on: np.ndarray, hor_idx) -> np.ndarray:
        """End points (full-resolution pixels) of the line segments that lie on one wall: the inliers of its
        horizontal vanishing point with their midpoints on/near its mask (`on`: NearMask.of the mask)."""
        sel = np.zeros(len(self.seg), bool)
        if hor_idx is not None:
            sel[hor_idx] = True
        sel &= on
        return np.concatenate([self.seg.p1[sel], self.seg.p2[sel]]) * self.L + np.array([self.cx, self.cy])


@dataclass
class _Doubts:
    """Why a wall's direction is less than sure; each lowers its confidence (see `_one_wall`), except same_plane,
    which only keeps separate regions from taking their own plane."""

    unseparated: bool = False  # two directions, no corner line between them: the stronger one taken
    same_plane: bool = False  # ... and both in one wall's plane (its courses and a roof edge, or a gable's rakes)
    snapped: bool = False  # courses assumed level over weak or impossible lines
    # courses where a line known to lie in the wall (the mask's base, or the line through a gable's two rake points)
    # meets the horizon at the typical focal length: assumed, not measured
    from_horizon: bool = False
    end_unsupported: bool = False  # the lines at one end of the wall disagree with its direction
    far_found: bool = False  # the far wall's direction from the few lines at its end


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
        near = NearMask(seg, mask.shape, s)
        on_wall = near.of(mask)
        vv, vert_inl = vanishing.fit_vertical(seg, rng, on_wall)
        vh, hor_cand = vanishing.fit_horizontals(seg, on_wall, vert_inl, vv, rng)
        if vv is None and not vh:
            warnings.append("geometry: no usable straight lines found; assuming a fronto-parallel wall "
                            "(identity rectification)")
            return self._fallback(mask, warnings)
        lines = _Lines(seg, near, on_wall, vv, hor_cand, mask, xs, ys, float(max(h, w)), (w - 1) / 2.0,
                       (h - 1) / 2.0, rng)
        doubts = _Doubts()

        split, vh = self._corner_or_one_wall(lines, vh, doubts, warnings)
        f = vanishing.focal_from_pairs([(vv, v[0]) for v in vh] + ([(vh[0][0], vh[1][0])] if len(vh) == 2 else []))
        K, Kinv = lines.camera(f)
        if vv is None:
            warnings.append("geometry: no vertical vanishing point; assuming the camera is upright")
        if not vh:
            warnings.append("geometry: no horizontal vanishing point on the wall; assuming it faces the camera")
        if split is None and vh and not doubts.from_horizon and self._weak_and_near_level(lines, K, Kinv, vh, warnings):
            vh, doubts.snapped = [], True
            K, Kinv = lines.prior_camera()
        if split is None and vh and not doubts.unseparated and not doubts.from_horizon:
            split, vh = self._far_wall(lines, K, Kinv, vh, doubts, warnings)
        if split is not None and (kept := self._sliver_merged(split, vh, doubts, warnings)) is not None:
            split, vh = None, kept
            # the camera from the kept wall's lines alone: the sliver's direction must not set the focal length
            K, Kinv = lines.camera(vanishing.focal_from_pairs([(vv, vh[0][0])]))

        # a direction assumed (snapped: vh is empty then) or taken from the mask's base and the focal-length prior
        # was not measured: it is not passed on
        def measured(vh) -> VanishingPoints:
            return VanishingPoints(lines.vv_px, [] if doubts.from_horizon else [lines.to_px(v[0]) for v in vh])

        if split is None:
            walls, vh = self._one_wall(lines, K, Kinv, vh, doubts, warnings)
        else:
            walls, vh = self._two_walls(lines, K, Kinv, vh, split, doubts, warnings)
        return Geometry(walls, NAME, warnings, measured(vh))

    @staticmethod
    def _corner_or_one_wall(lines: _Lines, vh: list, doubts: _Doubts, warnings: list[str]) -> tuple:
        """Two horizontal directions: the corner split between them, or one wall (a gable's base, or two
        directions no corner line separates). Returns (split or None, the directions kept)."""
        if len(vh) != 2:
            return None, vh
        split = lines.split(vh)
        if split is not None and (base := lines.base_under(split, vh)) is not None:
            warnings.append("geometry: the wall's base runs straight under the corner its lines suggest (a "
                            "gable's rakes?); one wall, its courses along its base")
            # the base is the one line of this wall known to be horizontal: its vanishing point is on the horizon
            along_base = vanishing.horizontal_on_line(lines.normalised_to_px.T @ base[0], lines.vv)  # normalised
            doubts.from_horizon = True
            return None, [(along_base, np.zeros(0, int), 0.0)]
        if split is not None:
            return split, vh
        doubts.unseparated = True
        if vanishing.in_one_plane(lines.vv, vh[0][0], vh[1][0]):
            doubts.same_plane = True
            # two directions of one wall, not of two walls: its courses and a roof edge or rail, or a gable's
            # two rakes
            if (between_rakes := vanishing.rake_pair(vh[0][0], vh[1][0], lines.vv)) is not None:
                warnings.append("geometry: the two line directions found rise and fall like a gable's rakes; one "
                                "wall, its courses level between them")
                doubts.from_horizon = True
                return None, [(between_rakes, np.zeros(0, int), 0.0)]
            warnings.append("geometry: two line directions found in one wall's plane; the flatter one taken as "
                            "its courses (the other a roof edge or rail?)")
            return None, [min(vh, key=lambda v: abs(vanishing.rise_deg(v[0], lines.vv)))]
        warnings.append("geometry: two wall directions found but their lines could not be told apart; one "
                        "wall with the stronger direction (courses may be off on part of the wall)")
        # (the base cannot tell which is right: a rake's vanishing point fitted with the base line lies on it)
        return None, vh[:1]

    @staticmethod
    def _weak_and_near_level(lines: _Lines, K, Kinv, vh: list, warnings: list[str]) -> bool:
        """The level snap (SNAP_LEVEL_DEG, SNAP_MAX_SUPPORT): a single wall's direction close to level on
        little line evidence."""
        turn = course_turn(K, Kinv, lines.vv_px, lines.to_px(vh[0][0]), lines.xs, lines.ys)
        support_len = float(lines.seg.length[vh[0][1]].sum())
        if turn <= SNAP_LEVEL_DEG and support_len < SNAP_MAX_SUPPORT:
            warnings.append(f"geometry: the wall's courses are within {turn:.1f} deg of level on little line "
                            f"evidence ({support_len:.2f} image widths); snapped to level, assuming the wall "
                            "faces the camera")
            return True
        return False

    @staticmethod
    def _sliver_merged(split: CornerSplit, vh: list, doubts: _Doubts, warnings: list[str]) -> list | None:
        """A corner split whose smaller side is under MIN_WALL_SHARE of the mask: the larger side's direction
        alone, for the whole mask, flagged as a disagreeing end (returned: the kept directions); None when both
        sides are large enough."""
        left_n, right_n = int(split.left.sum()), int(split.right.sum())
        share = min(left_n, right_n) / max(left_n + right_n, 1)
        if share >= MIN_WALL_SHARE:
            return None
        warnings.append(f"geometry: a second wall of only {100 * share:.0f}% of the mask at one end; one wall, "
                        "its courses may be off on that end")
        doubts.end_unsupported = True
        return [vh[split.left_i if left_n >= right_n else split.right_i]]

    @staticmethod
    def _far_wall(lines: _Lines, K, Kinv, vh: list, doubts: _Doubts, warnings: list[str]) -> tuple:
        """One direction found: is the disagreeing end of the mask a far wall? Returns (split or None, the
        directions: the far wall's appended when found)."""
        share, end_idx = disagreeing_end(lines.seg, lines.vv, vh[0][1], lines.hor_cand, lines.xs, lines.ys,
                                         lines.cx, lines.cy, lines.L)
        doubts.end_unsupported = share >= DISAGREE_END_SHARE
        far = vanishing.fit_end_direction(lines.seg, end_idx, vh[0][0], lines.vv, lines.rng) \
            if share >= FAR_WALL_SEARCH_SHARE else None
        split = lines.split(vh + [far]) if far is not None else None
        if split is not None:
            far_mask = split.left if split.left_i == 1 else split.right
            ys_f, xs_f = np.nonzero(far_mask)
            if grazing_cos(Kinv, lines.vv_px, lines.to_px(far[0]), xs_f, ys_f) < FAR_WALL_MIN_VIEW_COS:
                split = None  # a wall seen that edge-on is a wrong direction, not a far wall seen obliquely
            elif lines.base_under(split, vh + [far]) is not None:
                split = None  # the base runs on straight where the far wall would begin
        if split is not None:  # the far wall's own direction, found where the lines said it would be
            warnings.append("geometry: a second wall found at one end of the mask from few lines; its courses "
                            "may be off")
            # the camera stays the one the near wall's lines gave: the few far lines must not move its focal
            doubts.end_unsupported, doubts.far_found = False, True
            return split, vh + [far]
        if doubts.end_unsupported:
            warnings.append(f"geometry: the lines on {100 * share:.0f}% of the wall, at one end, disagree "
                            "with its course direction (a second wall there?); courses may be off on that part")
        return None, vh

    @staticmethod
    def _one_wall(lines: _Lines, K, Kinv, vh: list, doubts: _Doubts, warnings: list[str]) -> tuple:
        """The whole mask as one wall. Returns ([wall], the directions it kept)."""
        anchor = np.array([lines.xs.mean(), lines.ys.mean(), 1.0])
        H = frames.wall_homography(K, Kinv, anchor, lines.vv_px, lines.to_px(vh[0][0]) if vh else None)
        near_line = frames.near_vanishing_line(H, lines.mask)[0] if vh else 0.0
        if near_line > IMPOSSIBLE_LINE_SHARE:
            warnings.append(f"geometry: the course direction found puts the wall's vanishing line across "
                            f"{100 * near_line:.0f}% of the wall, which a wall seen from the front cannot have; "
                            "courses assumed level (facing the camera)")
            vh, doubts.snapped = [], True
            K, Kinv = lines.prior_camera()
            H = frames.wall_homography(K, Kinv, anchor, lines.vv_px, None)
        conf = 1.0 if vh else (SNAPPED_CONFIDENCE if doubts.snapped else NO_COURSES_CONFIDENCE)
        if doubts.unseparated:
            conf = min(conf, UNSEPARATED_CONFIDENCE)
        if doubts.from_horizon:
            conf = min(conf, SNAPPED_CONFIDENCE)
        if doubts.end_unsupported:
            conf = min(conf, UNSUPPORTED_END_CONFIDENCE)
        walls = [Wall(lines.mask, H, confidence=conf)]
        supports = [lines.support(lines.on_wall, vh[0][1] if vh else None)]
        if vh and not (doubts.snapped or doubts.from_horizon or doubts.same_plane):
            walls, supports = LineGeometry._regions_with_own_plane(lines, K, Kinv, anchor, vh[0], walls[0],
                                                                   supports[0], warnings)
        frames.place_walls(walls, supports, warnings)
        return walls, vh

    @staticmethod
    def _regions_with_own_plane(lines: _Lines, K, Kinv, anchor, found: tuple, wall: Wall, support, warnings):
        """Separate parts of the mask (connected regions of at least REGION_MIN_SHARE of it) whose own lines
        disagree with the wall's direction (`geometry_vanishing.own_direction`: a far wall beyond a gap, a
        downpipe or a tree) become walls of their own, flagged. The distance of an unconnected plane is not in one
        photo: each is put where the main wall's plane is at the region's centre, so that a swatch keeps its size
        there (meeting the main wall at the gap instead put US house_503's gable 2.6x too close: its steep
        direction carried the error across the region). Returns (walls, supports)."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(lines.mask.astype(np.uint8), connectivity=8)
        total = int(lines.mask.sum())
        regions = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= REGION_MIN_SHARE * total]
        if len(regions) < 2:
            return [wall], [support]
        vh_px = lines.to_px(found[0])
        main = lines.mask.copy()
        own_walls = []
        for k in regions:
            region = labels == k
            on_k = lines.near.of(region)
            own = vanishing.own_direction(lines.seg, lines.candidates_on(on_k), found[0], lines.vv, lines.rng)
            if own is None:
                continue
            ys, xs = np.nonzero(region)
            if grazing_cos(Kinv, lines.vv_px, lines.to_px(own[0]), xs, ys) < REGION_MIN_VIEW_COS:
                continue  # a part of the wall that large is not seen that edge-on: a wrong direction
            main &= ~region
            own_walls.append((region, own, on_k, np.array([xs.mean(), ys.mean(), 1.0])))
        if not own_walls or not main.any():
            return [wall], [support]
        walls = [Wall(main, wall.homography, confidence=wall.confidence)]
        supports = [lines.support(lines.near.of(main), found[1])]  # the lines of what is left of the main wall
        for region, own, on_k, meet in own_walls:
            # at the region's centre (meet) its plane is as far away as the main wall's plane would be there
            depth = frames.depth_on_wall(Kinv, anchor, lines.vv_px, vh_px, meet)
            H = frames.wall_homography(K, Kinv, meet, lines.vv_px, lines.to_px(own[0]), depth=depth)
            walls.append(Wall(region, H, confidence=UNSUPPORTED_END_CONFIDENCE))
            supports.append(lines.support(on_k, own[1]))
            warnings.append(f"geometry: a separate part of the mask ({100 * region.sum() / total:.0f}%) has lines "
                            "of another direction; its own plane, at the main wall's distance (its courses and "
                            "scale may be off)")
        return walls, supports

    @staticmethod
    def _two_walls(lines: _Lines, K, Kinv, vh: list, split: CornerSplit, doubts: _Doubts,
                   warnings: list[str]) -> tuple:
        """The two walls of a corner, each direction refitted on its own wall's lines. Returns (walls, the
        directions)."""
        anchor = split.anchor
        # by direction index: a far wall's direction from the few lines at its end is the best guess, not a sure
        # one (on bench/geometry.py 14 of 21 such far walls came right, the 7 others stay flagged)
        confidence = [1.0, UNSUPPORTED_END_CONFIDENCE if doubts.far_found else 1.0]
        if split.telling_lines_only:
            confidence = [min(c, UNSEPARATED_CONFIDENCE) for c in confidence]
            warnings.append("geometry: the corner line rests on the lines that tell the two walls apart only (many "
                            "fit both directions); courses may be off on one wall")
        # each wall's direction once more from the lines on that wall alone: the corner's first fit saw both walls'
        # lines, and the other wall's (or the corner's clutter) can pull it
        vh = list(vh)
        walls, supports = [], []
        for m_k, i_k in ((split.left, split.left_i), (split.right, split.right_i)):
            on_k = lines.near.of(m_k)
            vh[i_k] = vanishing.refit_on_wall(lines.seg, lines.candidates_on(on_k), vh[i_k], lines.vv, lines.rng)
            Hk = frames.wall_homography(K, Kinv, anchor, lines.vv_px, lines.to_px(vh[i_k][0]))
            walls.append(Wall(m_k, Hk, confidence=confidence[i_k]))
            supports.append(lines.support(on_k, vh[i_k][1]))
        frames.place_walls(walls, supports, warnings, unrolled=True)
        return walls, vh

    @staticmethod
    def _fallback(mask: np.ndarray, warnings: list[str]) -> Geometry:
        xs = np.nonzero(mask.any(axis=0))[0]
        width = float(xs[-1] - xs[0] + 1) if len(xs) else 0.0
        return Geometry([Wall(mask.copy(), np.eye(3), width, confidence=FALLBACK_CONFIDENCE)], NAME, warnings)
