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
| window | 1.30 m | 0.35 | anything from 0.6 m (bathroom) to 2 m (picture windows) |

Every opening gives a log estimate; the combination is a weighted median, then a weighted mean over the cues
that agree with it (within `AGREE` in log), so an occluded door or a sliding patio door counts for little.
Confidence is 1 - (effective log spread / `CONFIDENCE_SPAN`), clipped to [0, 1]: ~0.5 from one door, less when
the openings disagree, ~0.3 from a few windows only. None when no usable opening is found (the caller falls back to `real_world_scale`).
Storey height is not used yet (it needs the floor lines, which the masks do not give).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .stages import Geometry

CUES = {"door": (2.03, 0.15), "garage_door": (2.20, 0.15), "window": (1.30, 0.35)}
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
    return out


def combine(measurements: list[tuple[str, float]]) -> ScaleEstimate | None:
    """Robust combination of per-opening log estimates (see the module docstring)."""
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
                         rejected=int((~keep).sum()))


def estimate_scale(surfaces: dict[str, np.ndarray], geometry: Geometry) -> ScaleEstimate | None:
    """Metres per rectified unit of `geometry`'s walls from the openings in `surfaces`, or None."""
    return combine(measure_openings(surfaces, geometry))


def physical_tile(surfaces: dict[str, np.ndarray], geometry: Geometry, widest_units: float,
                  swatch_width_m: float) -> tuple[float | None, dict, list[str]]:
    """The tile width in rectified units for a swatch `swatch_width_m` wide, the scale report for the job's
    result, and warnings. (None, report, [warning]) when no metric cue is found: the caller keeps
    real_world_scale."""
    est = estimate_scale(surfaces, geometry)
    if est is None:
        return None, {"source": "real_world_scale", "swatch_width_m": swatch_width_m}, [
            "swatch_width_m: no door, garage door or window could be measured in the photo, so the wall's size "
            "is unknown; the pattern was sized by real_world_scale instead"]
    tile_units = swatch_width_m / est.metres_per_unit
    report = dict(est.to_dict(), source="estimated", swatch_width_m=swatch_width_m,
                  wall_width_m=round(widest_units * est.metres_per_unit, 2),
                  repeats=round(widest_units / tile_units, 2))
    warnings = []
    if est.confidence < 0.5:
        warnings.append(f"wall scale is uncertain: {est.describe()}; the material's size may be off by "
                        f"~{math.expm1(est.sigma_log):.0%}")
    return tile_units, report, warnings
