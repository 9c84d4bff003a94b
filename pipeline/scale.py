"""The walls' metric scale (metres per rectified unit) from what a photo shows of known size.

`estimate_scale(surfaces, geometry)` is a pure function of the per-class masks (bool, photo size: "door",
"garage_door", "window", ...) and the wall geometry. Each opening found in the masks is measured in the
rectified frame of the wall around it (its height: the one extent that vertical lines, kept vertical by the
homography, make reliable, and that is standardised in US houses):

| cue | assumed height | spread (log) | why |
|---|---|---|---|
| door | 2.03 m | 0.15 | entry doors are 80 in (6'8"), sidelights share the height; but porches, railings and
  plants often hide their foot (the spread is what the labelled houses show, not the standard's) |
| garage_door | 2.20 m | 0.15 | 7 ft (2.13 m) is most common, 8 ft (2.44 m) on newer houses |
| window | 1.30 m | 0.45 | anything from 0.6 m (bathroom) to 2 m (picture windows); a window that the parser
  splits into panes or sashes measures short, so windows under half the tallest one are left out |

Every opening gives a log estimate; the combination is a weighted median, then a weighted mean over the cues
that agree with it (within `AGREE` in log), so an occluded door or a sliding patio door counts for little.
Confidence is 1 - (effective log spread / `CONFIDENCE_SPAN`), clipped to [0, 1]: ~0.5 from one door, less when
the openings disagree, ~0.3 from a few windows only. None when no usable opening is found (the caller falls back to `real_world_scale`).

Plausibility. Every opening's estimate is checked against the house it implies: the widest painted wall must come
out `WALL_WIDTH_M` (3-40 m) wide and the tallest wall `WALL_HEIGHT_M` (2.2-15 m: one storey of ~2.4-3.2 m up to
three storeys and a gable) tall; an opening that implies anything else is an outlier and rejected. The combined
estimate must pass the same bounds and be no vaguer than `MAX_SIGMA_LOG`; otherwise `physical_tile` falls back to
`real_world_scale` with a warning naming why (a sub-pixel brick from a 300 m wall is worse than the default).
Storey height is a sanity bound only (the floor lines it would need are not in the masks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .stages import Geometry

CUES = {"door": (2.03, 0.15), "garage_door": (2.20, 0.15), "window": (1.30, 0.45)}
WALL_WIDTH_M = (3.0, 40.0)  # the widest painted wall of a house
WALL_HEIGHT_M = (2.2, 15.0)  # the tallest wall: one storey (2.4-3.2 m) to three storeys and a gable
MAX_SIGMA_LOG = 0.5  # a vaguer estimate (worse than ~x1.65 either way) is not used (real_world_scale, warning)
WINDOW_FRAGMENT = 0.5  # windows shorter than this share of the tallest window are panes / sashes, not windows
MIN_HEIGHT_PX = 12  # openings shorter than this in the photo are too coarse to measure
MIN_AREA_FRACTION = 2e-4  # of the photo
AGREE = 0.25  # log distance from the median within which cues count for the mean (~ +-28%)
CONFIDENCE_SPAN = 0.3


@dataclass
class ScaleEstimate:
    metres_per_unit: float  # metres per rectified unit of the walls' frames
    confidence: float  # 0-1
    sigma_log: float  # effective spread of the estimate, in log (0.1 ~ +-10%)
    cues: dict[str, int] = field(default_factory=dict)  # openings used per class
    rejected: int = 0  # openings measured but outvoted

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        used = ", ".join(f"{n} {k.replace('_', ' ')}{'s' if n > 1 else ''}" for k, n in self.cues.items() if n)
        return f"{1 / self.metres_per_unit:.1f} units/m from {used} (confidence {self.confidence:.2f})"


def _wall_for(component: np.ndarray, bbox: tuple[int, int, int, int], geometry: Geometry) -> int:
    """The wall around an opening: most wall pixels in a ring around its bounding box."""
    x, y, w, h = bbox
    pad = max(4, int(0.25 * max(w, h)))
    H, W = component.shape
    ys, xs = slice(max(0, y - pad), min(H, y + h + pad)), slice(max(0, x - pad), min(W, x + w + pad))
    counts = [int(np.asarray(wall.mask, bool)[ys, xs].sum()) for wall in geometry.walls]
    if max(counts, default=0) > 0:
        return int(np.argmax(counts))
    return int(np.argmax([int(np.asarray(wall.mask, bool).sum()) for wall in geometry.walls]))


def opening_height(component: np.ndarray, homography: np.ndarray) -> float | None:
    """Height of an opening (bool mask) in the wall's rectified units: the 2nd-98th percentile extent of its
    pixels' rectified y, per rectified column band, taking the tallest band (robust to a sloping sill or a
    partly hidden corner). None when it crosses the wall's vanishing line."""
    ys, xs = np.nonzero(component)
    step = max(1, len(xs) // 20000)
    X, Y = xs[::step].astype(np.float64), ys[::step].astype(np.float64)
    Hm = np.asarray(homography, np.float64)
    w = Hm[2, 0] * X + Hm[2, 1] * Y + Hm[2, 2]
    if not (np.all(w > 1e-9) or np.all(w < -1e-9)):
        return None
    u = (Hm[0, 0] * X + Hm[0, 1] * Y + Hm[0, 2]) / w
    v = (Hm[1, 0] * X + Hm[1, 1] * Y + Hm[1, 2]) / w
    lo, hi = np.percentile(u, [5, 95])
    edges = np.linspace(lo, hi, 6)
    heights = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (u >= a) & (u <= b)
        if sel.sum() >= 8:
            p2, p98 = np.percentile(v[sel], [2, 98])
            heights.append((p98 - p2) / 0.96)  # the 2nd-98th percentile span is 96% of a uniform extent
    h = max(heights, default=0.0)
    return float(h) if h > 0 and math.isfinite(h) else None


def wall_extent(geometry: Geometry) -> tuple[float, float]:
    """(widest wall width, tallest wall height) in rectified units: `Wall.width`, and the 2nd-98th percentile
    extent of each wall's mask pixels in rectified y."""
    width = max((float(w.width) for w in geometry.walls if math.isfinite(float(w.width))), default=0.0)
    height = 0.0
    for wall in geometry.walls:
        ys, xs = np.nonzero(np.asarray(wall.mask, bool))
        if len(xs) < 16:
            continue
        step = max(1, len(xs) // 20000)
        X, Y = xs[::step].astype(np.float64), ys[::step].astype(np.float64)
        Hm = np.asarray(wall.homography, np.float64)
        w = Hm[2, 0] * X + Hm[2, 1] * Y + Hm[2, 2]
        ok = np.abs(w) > 1e-9
        if ok.sum() < 16:
            continue
        v = (Hm[1, 0] * X[ok] + Hm[1, 1] * Y[ok] + Hm[1, 2]) / w[ok]
        p2, p98 = np.percentile(v, [2, 98])
        if math.isfinite(p98 - p2):
            height = max(height, float(p98 - p2) / 0.96)
    return width, height


def plausible(metres_per_unit: float, extent: tuple[float, float] | None) -> str | None:
    """None when the walls come out house-sized at this scale, else the reason."""
    if not extent:
        return None
    width, height = extent[0] * metres_per_unit, extent[1] * metres_per_unit
    if width > 0 and not WALL_WIDTH_M[0] <= width <= WALL_WIDTH_M[1]:
        return f"the wall would be {width:.0f} m wide (a house wall is {WALL_WIDTH_M[0]:g}-{WALL_WIDTH_M[1]:g} m)"
    if height > 0 and not WALL_HEIGHT_M[0] <= height <= WALL_HEIGHT_M[1]:
        return (f"the wall would be {height:.1f} m tall (one storey is ~2.4-3.2 m; "
                f"{WALL_HEIGHT_M[0]:g}-{WALL_HEIGHT_M[1]:g} m expected)")
    return None


def measure_openings(surfaces: dict[str, np.ndarray], geometry: Geometry) -> list[tuple[str, float]]:
    """(class, log metres-per-unit) for every measurable opening in `surfaces`."""
    out: list[tuple[str, float]] = []
    if not geometry.walls:
        return out
    for name, (metres, _sigma) in CUES.items():
        m = surfaces.get(name)
        if m is None or not np.any(m):
            continue
        m = np.asarray(m, bool)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        min_area = MIN_AREA_FRACTION * m.size
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < min_area or h < MIN_HEIGHT_PX:
                continue
            comp = labels[y:y + h, x:x + w] == k
            full = np.zeros(m.shape, bool)
            full[y:y + h, x:x + w] = comp
            wall = geometry.walls[_wall_for(full, (x, y, w, h), geometry)]
            units = opening_height(full, wall.homography)
            if units:
                out.append((name, math.log(metres / units)))
    # a window split into panes or sashes measures short (and the scale large): keep the whole windows
    win = [v for n, v in out if n == "window"]
    if win:
        cut = min(win) - math.log(WINDOW_FRAGMENT)  # log mpu of a window half as tall as the tallest
        out = [(n, v) for n, v in out if n != "window" or v <= cut + 1e-9]
    return out


def combine(measurements: list[tuple[str, float]],
            extent: tuple[float, float] | None = None) -> ScaleEstimate | None:
    """Robust combination of per-opening log estimates (see the module docstring). With `extent` (the walls'
    width and height in rectified units), openings that imply a wall no house has are rejected first."""
    outliers = 0
    if extent:
        kept = [m for m in measurements if plausible(math.exp(m[1]), extent) is None]
        outliers = len(measurements) - len(kept)
        measurements = kept
    if not measurements:
        return None
    names = [n for n, _ in measurements]
    vals = np.array([v for _, v in measurements])
    wts = np.array([1.0 / CUES[n][1] ** 2 for n in names])
    order = np.argsort(vals)
    cum = np.cumsum(wts[order])
    median = float(vals[order][np.searchsorted(cum, 0.5 * cum[-1])])
    keep = np.abs(vals - median) <= AGREE
    mean = float(np.sum(wts[keep] * vals[keep]) / np.sum(wts[keep]))
    sigma_stat = 1.0 / math.sqrt(float(np.sum(wts[keep])))
    # disagreement among all openings (the outvoted ones too) lowers the confidence
    spread = math.sqrt(float(np.sum(wts * np.minimum((vals - mean) ** 2, 1.0)) / np.sum(wts)))
    # one cue cannot vouch for itself: its own assumed spread is the floor
    sigma = math.sqrt(sigma_stat ** 2 + spread ** 2 / max(1, int(keep.sum()) - 1))
    sigma = max(sigma, min(CUES[n][1] for n, k in zip(names, keep) if k) / 2)
    cues = {n: int(sum(1 for m, k in zip(names, keep) if k and m == n)) for n in CUES}
    return ScaleEstimate(metres_per_unit=math.exp(mean), confidence=float(np.clip(1 - sigma / CONFIDENCE_SPAN, 0, 1)),
                         sigma_log=sigma, cues={k: v for k, v in cues.items() if v},
                         rejected=int((~keep).sum()) + outliers)


def estimate_scale(surfaces: dict[str, np.ndarray], geometry: Geometry,
                   extent: tuple[float, float] | None = None) -> ScaleEstimate | None:
    """Metres per rectified unit of `geometry`'s walls from the openings in `surfaces`, or None. `extent`:
    (widest, tallest) wall in rectified units for the plausibility bounds (default: `wall_extent(geometry)`)."""
    return combine(measure_openings(surfaces, geometry), extent or wall_extent(geometry))


def physical_tile(surfaces: dict[str, np.ndarray], geometry: Geometry, widest_units: float,
                  swatch_width_m: float) -> tuple[float | None, dict, list[str]]:
    """The tile width in rectified units for a swatch `swatch_width_m` wide, the scale report for the job's
    result, and warnings. (None, report, [warning]) when no metric cue is found: the caller keeps
    real_world_scale."""
    extent = (widest_units, wall_extent(geometry)[1])
    est = estimate_scale(surfaces, geometry, extent)
    fallback = {"source": "real_world_scale", "swatch_width_m": swatch_width_m}
    if est is None:
        return None, fallback, [
            "swatch_width_m: no door, garage door or window could be measured in the photo (or none gave a "
            "house-sized wall), so the wall's size is unknown; the pattern was sized by real_world_scale instead"]
    why = plausible(est.metres_per_unit, extent)
    if why is None and est.sigma_log > MAX_SIGMA_LOG:
        why = f"the openings disagree too much (~x{math.exp(est.sigma_log):.1f} either way)"
    if why:
        return None, dict(fallback, rejected_estimate=dict(est.to_dict(), reason=why)), [
            f"swatch_width_m: the wall's scale estimate ({est.describe()}) is not plausible: {why}; the pattern "
            "was sized by real_world_scale instead"]
    tile_units = swatch_width_m / est.metres_per_unit
    report = dict(est.to_dict(), source="estimated", swatch_width_m=swatch_width_m,
                  wall_width_m=round(widest_units * est.metres_per_unit, 2),
                  repeats=round(widest_units / tile_units, 2))
    warnings = []
    if est.confidence < 0.5:
        warnings.append(f"wall scale is uncertain: {est.describe()}; the material's size may be off by "
                        f"~{math.expm1(est.sigma_log):.0%}")
    return tile_units, report, warnings
