"""The mask editor's edge-snapping fill (ui/mask_snap.py) on the labelled US houses: how much of a wall one click
or one short stroke selects, and how long it takes.

    .venv/bin/python -m bench.mask_snap [--limit N]

For each labelled house (shared data/houses: photo, label map), the largest connected piece of labelled wall is
the target. The click is its deepest point (farthest from its edge); the stroke a horizontal line through that
point across 30 % of the piece's width, kept inside it. Over labelled pixels (the label maps leave a thin unlabelled
band at class edges): IoU and recall against that piece, precision against all labelled wall (a selection that
runs on into another piece of wall is right). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ui.mask_snap import snap_region

WALL = 1


def cases(shared: Path):
    for label in sorted((shared / "data/houses/labels").glob("*.json")):
        meta = json.loads(label.read_text())
        mask_path = shared / "data/houses/masks" / (label.stem + ".png")
        if not meta.get("usable", True) or not mask_path.exists():
            continue
        idx = np.asarray(Image.open(mask_path))
        count, parts, stats, _ = cv2.connectedComponentsWithStats((idx == WALL).astype(np.uint8), connectivity=8)
        if count < 2:
            continue
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        target = parts == biggest
        photo = np.asarray(Image.open(shared / "data/houses" / (label.stem + ".jpg")).convert("RGB"))
        yield label.stem, photo, target, idx > 0, idx == WALL


def seeds_for(target: np.ndarray) -> dict[str, np.ndarray]:
    depth = cv2.distanceTransform(target.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    click = np.zeros_like(target)
    cv2.circle(click.view(np.uint8), (int(x), int(y)), 4, 1, -1)
    xs = np.nonzero(target[y])[0]
    half = max(3, int(0.15 * (xs.max() - xs.min())))
    stroke = np.zeros_like(target)
    cv2.line(stroke.view(np.uint8), (int(x) - half, int(y)), (int(x) + half, int(y)), 1, 6)
    return {"click": click, "stroke": stroke & target}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N houses")
    args = parser.parse_args()
    shared = Path(os.environ.get("RENDER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    results: dict[str, dict[str, list[float]]] = {k: {"iou": [], "precision": [], "recall": [], "ms": []}
                                                  for k in ("click", "stroke")}
    for n, (name, photo, target, labelled, wall) in enumerate(cases(shared)):
        if args.limit and n >= args.limit:
            break
        for kind, seeds in seeds_for(target).items():
            start = time.perf_counter()
            region = snap_region(photo, seeds)
            results[kind]["ms"].append((time.perf_counter() - start) * 1000)
            a, b = region & labelled, target & labelled
            results[kind]["iou"].append(float((a & b).sum() / max(1, (a | b).sum())))
            results[kind]["precision"].append(float((a & wall).sum() / max(1, a.sum())))  # any wall counts
            results[kind]["recall"].append(float((a & b).sum() / max(1, b.sum())))
    print("| seed | houses | wall IoU median | IoU p25 | precision median | recall median | ms p50 | ms p95 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        iou, ms = sorted(r["iou"]), sorted(r["ms"])
        if not iou:
            continue
        print(f"| {kind} | {len(iou)} | {statistics.median(iou):.3f} | {iou[len(iou) // 4]:.3f} | "
              f"{statistics.median(r['precision']):.2f} | {statistics.median(r['recall']):.2f} | "
              f"{statistics.median(ms):.0f} | {ms[min(len(ms) - 1, int(0.95 * len(ms)))]:.0f} |")


if __name__ == "__main__":
    main()
