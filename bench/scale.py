"""Scale part of the materials benchmark (run through `python -m bench.materials`).

* Synthetic wall with a door of known size: course height of a swatch rendered at `swatch_width_m`, vs truth.
* Labelled US houses (shared data/houses): the labelled doors and garage doors, at their nominal heights, are the
  truth; the estimate is made without them (from the windows only), and, where a house has several doors /
  garage doors, from the others with each left out in turn. Error = |estimate / truth - 1|, over the estimates
  that pass the plausibility bounds and the vagueness cap (`pipeline.scale.plausible`, `MAX_SIGMA_LOG`); the
  others fall back to real_world_scale and are counted as such ("used" = share of cases estimated).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.images import Texture
from pipeline.project import project_texture, srgb_to_linear
from pipeline.scale import MAX_SIGMA_LOG, combine, estimate_scale, measure_openings, plausible, wall_extent
from pipeline.stages import Geometry, Wall

HOUSES_CLASSES = {"wall": 1, "window": 3, "door": 4, "garage_door": 5}


def course_swatch(n: int = 128, courses: int = 8) -> np.ndarray:
    """Horizontal courses: dark joint lines on a light field, `courses` per tile."""
    sw = np.full((n, n, 3), (190, 90, 70), np.uint8)
    period = n // courses
    for c in range(courses):
        sw[c * period: c * period + max(2, period // 5)] = (230, 225, 215)
    return sw


def dominant_period(profile: np.ndarray) -> float:
    p = profile - profile.mean()
    spec = np.abs(np.fft.rfft(p * np.hanning(len(p))))
    k = int(np.argmax(spec[2:])) + 2
    a, b, c = spec[k - 1], spec[k], spec[k + 1]
    return len(p) / (k + 0.5 * (a - c) / (a - 2 * b + c))


def door_wall(px_per_m: float = 100.0, unit_px: float = 1.0, door_h_m: float = 2.03, size=(1024, 768)):
    """A frontal wall photo with a door cut out. Rectified units are `unit_px` photo pixels. Returns photo,
    surfaces, geometry and the true metres per unit."""
    w, h = size
    wall = np.zeros((h, w), bool)
    wall[60:720, 60:964] = True
    door = np.zeros_like(wall)
    dh, dw = int(round(door_h_m * px_per_m)), int(round(0.9 * px_per_m))
    door[720 - dh:720, 400:400 + dw] = True
    wall &= ~door
    photo = np.full((h, w, 3), 150, np.uint8)
    photo[door] = (60, 40, 30)
    hom = np.array([[1 / unit_px, 0, -60 / unit_px], [0, 1 / unit_px, -60 / unit_px], [0, 0, 1]])
    geo = Geometry([Wall(wall, hom, 904 / unit_px)], "bench")
    return photo, {"wall": wall, "door": door}, geo, unit_px / px_per_m


def synthetic_course_error(swatch_width_m: float = 0.6, courses: int = 8, **kw) -> dict:
    photo, surfaces, geo, truth_mpu = door_wall(**kw)
    est = estimate_scale(surfaces, geo)
    tile_units = swatch_width_m / est.metres_per_unit
    out = project_texture(photo, surfaces["wall"], geo, Texture(image=course_swatch(courses=courses)), 24.0,
                          tile_units=tile_units)
    px_per_m = kw.get("px_per_m", 100.0)
    profile = srgb_to_linear(out[80:560, 100:380]).mean(axis=(1, 2))
    course_m = dominant_period(profile) / px_per_m
    truth = swatch_width_m / courses
    return {"course_m": course_m, "truth_m": truth, "error": abs(course_m / truth - 1),
            "scale_error": abs(est.metres_per_unit / truth_mpu - 1), "confidence": est.confidence}


def house_cases(shared: Path):
    from pipeline.geometry import LineGeometry

    geometry = LineGeometry()
    for label in sorted((shared / "data/houses/labels").glob("*.json")):
        meta = json.loads(label.read_text())
        mask_path = shared / "data/houses/masks" / (label.stem + ".png")
        if not meta.get("usable", True) or not mask_path.exists():
            continue
        idx = np.asarray(Image.open(mask_path))
        # the label maps leave 4 px unlabelled on each side of every class edge: grow the openings back
        grow = np.ones((9, 9), np.uint8)
        surfaces = {k: (idx == v) if k == "wall" else cv2.dilate((idx == v).astype(np.uint8), grow) > 0
                    for k, v in HOUSES_CLASSES.items()}
        if not surfaces["wall"].any():
            continue
        photo = np.asarray(Image.open(shared / "data/houses" / (label.stem + ".jpg")).convert("RGB"))
        yield label.stem, surfaces, geometry.estimate(photo, surfaces["wall"])


def house_errors(shared: Path) -> dict[str, dict]:
    """Per case kind: errors of the estimates used, and how many cases fell back."""
    errors: dict[str, dict] = {k: {"errors": [], "fallback": 0} for k in ("windows only", "leave one door out")}

    def count(kind: str, est, extent, truth: float) -> None:
        if est is None or plausible(est.metres_per_unit, extent) or est.sigma_log > MAX_SIGMA_LOG:
            errors[kind]["fallback"] += 1
        else:
            errors[kind]["errors"].append(abs(est.metres_per_unit / truth - 1))

    for _name, surfaces, geo in house_cases(shared):
        meas = measure_openings(surfaces, geo)
        extent = wall_extent(geo)
        door_idx = [i for i, (n, _v) in enumerate(meas) if n in ("door", "garage_door")]
        if not door_idx:
            continue
        truth = math.exp(np.mean([meas[i][1] for i in door_idx]))
        count("windows only", combine([m for m in meas if m[0] == "window"], extent), extent, truth)
        if len(door_idx) > 1:
            for i in door_idx:
                count("leave one door out", combine([m for j, m in enumerate(meas) if j != i], extent), extent,
                      math.exp(meas[i][1]))
    return errors


def scale_tables(houses: bool = True) -> str:
    from bench.materials import SHARED

    rows = ["| synthetic wall with a door | course m | truth m | course error | scale error | confidence |",
            "|---|---:|---:|---:|---:|---:|"]
    for label, kw in (("frontal, 100 px/m", {}), ("frontal, 60 px/m, units 0.5 px", {"px_per_m": 60.0,
                                                                                       "unit_px": 0.5})):
        r = synthetic_course_error(**kw)
        rows.append(f"| {label} | {r['course_m']:.4f} | {r['truth_m']:.4f} | {r['error']:.1%} | "
                    f"{r['scale_error']:.1%} | {r['confidence']:.2f} |")
    # before: the default real_world_scale=24 on the same wall, whatever the swatch shows
    photo, surfaces, geo, _ = door_wall()
    default_course = geo.walls[0].width / 24 / 8 / 100.0
    rows.append(f"| (before: real_world_scale 24) | {default_course:.4f} | 0.0750 | "
                f"{abs(default_course / 0.075 - 1):.1%} | | |")
    if houses:
        errs = house_errors(SHARED)
        rows += ["", "| labelled US houses: truth = labelled doors / garage doors | cases | used | median error | "
                 "p90 error |", "|---|---:|---:|---:|---:|"]
        for k, r in errs.items():
            v, n = r["errors"], len(r["errors"]) + r["fallback"]
            if v:
                rows.append(f"| {k} | {n} | {len(v)} | {np.median(v):.1%} | {np.percentile(v, 90):.1%} |")
    return "\n".join(rows)
