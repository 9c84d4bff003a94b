"""Pipeline benchmark: per-stage latency at 1024 px long side over the shared house photos, and wall quality.

    .venv/bin/python -m bench.pipeline [--photos 32] [--repeats 1] [--no-quality] [--surfaces-only]

Prints the tables (markdown), ready for the README: stage latency, the cost of each extra surface (roof, trim,
door, garage door painted in the same run), wall quality. Models are read from RENDER_MODEL_DIR or installed from the
shared folder into a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
SWATCHES = ["brick_red_small_sh3d_smallRedBricks.jpg", "stone_ashlar_sand_sh3d_stoneWall.jpg",
            "wood_planks_vertical_imageio_wood.jpg", "#7A8B99"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def resize_long_side(img: Image.Image, long_side: int) -> np.ndarray:
    scale = long_side / max(img.size)
    size = (round(img.size[0] * scale), round(img.size[1] * scale))
    return np.asarray(img.convert("RGB").resize(size, Image.Resampling.LANCZOS))


def model_folder() -> Path:
    if os.environ.get("RENDER_MODEL_DIR"):
        return Path(os.environ["RENDER_MODEL_DIR"])
    from pipeline.models import install_from

    dest = Path(tempfile.mkdtemp(prefix="bench-models-"))
    install_from(SHARED / "models", dest, log=lambda _m: None)
    return dest


def latency_table(pipe, photos: list[Path], repeats: int) -> str:
    from pipeline import load_texture

    swatches = [load_texture(s if s.startswith("#") else SHARED / "data/textures" / s) for s in SWATCHES]
    per_stage: dict[str, list[float]] = {}
    totals: list[float] = []
    for i, path in enumerate(photos):
        image = resize_long_side(Image.open(path), 1024)
        for r in range(repeats):
            start = time.perf_counter()
            result = pipe.run(image, swatches[(i + r) % len(swatches)])
            totals.append(time.perf_counter() - start)
            for stage, seconds in result.timings.items():
                per_stage.setdefault(stage, []).append(seconds)
    rows = ["| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    for stage, values in per_stage.items():
        rows.append(f"| {stage} | {percentile(values, 50) * 1000:.0f} | {percentile(values, 95) * 1000:.0f} |")
    rows.append(f"| **total** (incl. input checks) | {percentile(totals, 50) * 1000:.0f} | "
                f"{percentile(totals, 95) * 1000:.0f} |")
    return "\n".join(rows) + f"\n\n{len(totals)} runs, {len(photos)} photos at 1024 px long side, " \
                             f"{os.cpu_count()} CPU cores, torch threads {__import__('torch').get_num_threads()}"


EXTRA_SURFACES = [("trim", "#F4F1EA"), ("roof", "roof_slates_polyhaven_roof_slates_02.png"), ("door", "#8B1A1A"),
                  ("garage_door", "#2F3B4A")]


def surfaces_table(pipe, photos: list[Path]) -> str:
    """Project-stage time with 0..4 extra surfaces on the same photo (one segmentation either way); the cost per
    extra surface is the slope over the surfaces actually painted (a photo may lack some)."""
    from pipeline import SurfaceMaterial, load_texture

    wall = load_texture(SHARED / "data/textures" / SWATCHES[0])
    extras = [SurfaceMaterial(n, load_texture(m if m.startswith("#") else SHARED / "data/textures" / m))
              for n, m in EXTRA_SURFACES]
    by_count: dict[int, list[float]] = {}
    slopes: list[float] = []
    for path in photos:
        image = resize_long_side(Image.open(path), 1024)
        base = None
        for k in range(len(extras) + 1):
            result = pipe.run(image, wall, surfaces=extras[:k])
            ms = result.timings["project"] * 1000
            by_count.setdefault(k, []).append(ms)
            painted = len(result.painted) - 1
            if k == 0:
                base = ms
            elif painted:
                slopes.append((ms - base) / painted)
    rows = ["| extra surfaces | project p50 ms | project p95 ms |", "|---|---:|---:|"]
    for k, values in by_count.items():
        names = ", ".join(n for n, _ in EXTRA_SURFACES[:k]) or "none (wall only)"
        rows.append(f"| {names} | {percentile(values, 50):.0f} | {percentile(values, 95):.0f} |")
    rows.append(f"| **per extra surface painted** | {percentile(slopes, 50):.0f} | {percentile(slopes, 95):.0f} |")
    return "\n".join(rows) + f"\n\n{len(photos)} photos at 1024 px long side"


def quality_table(segmenter) -> str:
    from bench.quality import evaluate

    rows = ["| split | images | wall IoU | leakage | boundary F | s/image |", "|---|---:|---:|---:|---:|---:|"]
    for split in ("hslu-valid", "cmp"):
        q = evaluate(segmenter, split)
        rows.append(f"| {split} | {q['n']} | {q['iou']:.3f} | {q['leakage']:.3f} | {q['boundary_f']:.3f} | "
                    f"{q['seconds_per_image']:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--surfaces-only", action="store_true", help="only the extra-surface table")
    args = parser.parse_args()

    from pipeline import Pipeline

    started = time.perf_counter()
    pipe = Pipeline.embedded(model_folder())
    print(f"model load: {(time.perf_counter() - started) * 1000:.0f} ms\n")
    photos = sorted((SHARED / "data/houses").glob("*.jpg"))[: args.photos]
    pipe.run(resize_long_side(Image.open(photos[0]), 1024), "#808080")  # warm-up, not counted
    if not args.surfaces_only:
        print(latency_table(pipe, photos, args.repeats))
        print()
    print(surfaces_table(pipe, photos))
    if args.surfaces_only:
        return
    if not args.no_quality:
        print()
        print(quality_table(pipe.segmenter))


if __name__ == "__main__":
    main()
