"""Segmentation quality of a Segmenter on labelled facade photos (scoring as in shared/data/README.md).

Splits:
- "houses": shared data houses/ (29 usable labelled US listing photos, the validation set: nothing is trained on
  it). paint = 1 (wall); do-not-paint = 2-10; 0 (unlabelled) is left out. Also reported: the share of each house
  part's labelled pixels that get painted (roof 2, windows 3, doors 4, garage doors 5, trim 6; "parts" = 2-6
  pooled), per photo and then averaged over the photos that show that part (at least MIN_PART_PIXELS pixels).
- "hslu-valid": facades-hslu/valid (108 photos, 1024x1024). paint = mask index 3 (facade); do-not-paint = every
  other labelled index; 0 (unlabelled: sky, roofs, ...) is left out.
- "cmp": facades-cmp base set (338 rectified facades, research licence: evaluation only). paint = 2 (facade);
  do-not-paint = 1 background, 3 window, 4 door, 7 balcony, 8 blind, 12 shop; trim (5 cornice, 6 sill, 9 deco,
  10 molding, 11 pillar) and 0 are left out.

What is scored is the stage's paint mask: `pipeline.segment.segment_surfaces(image, segmenter).paint` (threshold 0.5,
cleaning, straightened openings),
at the label resolution (= the photo's resolution).
- iou: |painted ∩ wall| / |painted ∪ wall| over scored pixels, pooled over the whole split.
- leakage: painted do-not-paint pixels / all do-not-paint pixels, pooled.
- boundary_f: F-score of the paint/no-paint boundary. Boundary pixels are those whose 4-neighbour has the other
  value, both pixels being scored (not ignored; on "houses" the unlabelled band between the wall and another
  class is scored for boundaries, since the true edge lies inside it); a predicted boundary pixel counts as correct when a labelled
  boundary pixel lies within a tolerance of 0.5 % of the image diagonal (7 px on a 1024x1024 photo), and vice
  versa for recall. Matched counts are pooled over the split.
- seconds_per_image: mean wall time of segment() per photo (hslu-valid: 1024x1024 photos).

Run: `python -m bench.quality [--split houses hslu-valid cmp] [--limit N] [--no-baseline] [--parser W.pt]` from the repository root
(shared folder from RENDER_SHARED_DIR, default ../shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.segment import segment_surfaces  # noqa: E402

SPLITS = ("houses", "hslu-valid", "cmp")
# house parts scored on the "houses" split: name -> label indices
HOUSE_PARTS = {"parts": (2, 3, 4, 5, 6), "roof": (2,), "window": (3,), "door": (4,), "garage_door": (5,),
               "trim": (6,)}
MIN_PART_PIXELS = 200  # a part smaller than this in a photo is not scored for that photo (too few pixels)
BOUNDARY_TOLERANCE = 0.005  # of the image diagonal
LABEL_BAND = 4  # px: houses labels leave pixels within 4 px of an edge between two classes unlabelled


def shared_dir() -> Path:
    return Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()


def split_files(split: str) -> list[tuple[Path, Path]]:
    data = shared_dir() / "data"
    if split == "houses":
        import json

        root = data / "houses"
        return [(root / meta["image"], root / "masks" / (lab.stem + ".png"))
                for lab in sorted((root / "labels").glob("*.json"))
                if (meta := json.loads(lab.read_text())).get("usable", True)]
    if split == "hslu-valid":
        root = data / "facades-hslu" / "valid"
        return [(f, root / "masks" / (f.stem + ".png")) for f in sorted((root / "images").glob("*.jpg"))]
    if split == "cmp":
        root = data / "facades-cmp"
        return [(f, root / "labels" / (f.stem + ".png")) for f in sorted((root / "images").glob("*.jpg"))]
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def score_classes(split: str, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wall, do_not_paint) bool masks of a label index map."""
    if split == "houses":
        return label == 1, label >= 2
    if split == "hslu-valid":
        return label == 3, (label > 0) & (label != 3)
    return label == 2, np.isin(label, (1, 3, 4, 7, 8, 12))


def _boundary(mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    b = np.zeros(mask.shape, bool)
    h = (mask[:, 1:] != mask[:, :-1]) & valid[:, 1:] & valid[:, :-1]  # horizontal neighbours differ
    b[:, 1:] |= h
    b[:, :-1] |= h
    v = (mask[1:, :] != mask[:-1, :]) & valid[1:, :] & valid[:-1, :]
    b[1:, :] |= v
    b[:-1, :] |= v
    return b


def _label_band(wall: np.ndarray, dnp: np.ndarray) -> np.ndarray:
    """The unlabelled band the houses labels leave between the wall and another class (LABEL_BAND px each side
    of the drawn edge, so up to 2 LABEL_BAND + 1 px from both): the wall's edge lies inside it, so boundaries are scored across it."""
    r = 2 * LABEL_BAND + 1  # from either side across the whole band
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    return (cv2.dilate(wall.astype(np.uint8), k) > 0) & (cv2.dilate(dnp.astype(np.uint8), k) > 0)


def _within(target: np.ndarray, tol: float) -> np.ndarray:
    """Pixels within `tol` px of a True pixel of `target`."""
    if not target.any():
        return np.zeros(target.shape, bool)
    dist = cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 5)
    return dist <= tol


def evaluate(segmenter, split: str, *, step: int = 1, limit: int | None = None, threshold: float = 0.5) -> dict:
    """Scores `segmenter` on `split` (every `step`-th photo in name order, at most `limit`)."""
    files = split_files(split)[::step][:limit]
    if not files:
        raise FileNotFoundError(f"no photos for split {split!r} under {shared_dir() / 'data'}")
    inter = union = leak = nonpaint = 0
    part_shares: dict[str, list[float]] = {name: [] for name in HOUSE_PARTS}
    bp_hit = bp_all = br_hit = br_all = 0
    seconds = 0.0
    for img_path, lab_path in files:
        image = np.asarray(Image.open(img_path).convert("RGB"))
        label = np.array(Image.open(lab_path))  # palette index
        if label.shape != image.shape[:2]:
            raise ValueError(f"{lab_path}: label size {label.shape} != photo size {image.shape[:2]}")
        t = time.perf_counter()
        pred = segment_surfaces(image, segmenter, threshold).paint
        seconds += time.perf_counter() - t
        wall, dnp = score_classes(split, label)
        valid = wall | dnp
        edge_region = valid | _label_band(wall, dnp) if split == "houses" else valid
        inter += int(np.sum(pred & wall))
        union += int(np.sum((pred | wall) & valid))
        leak += int(np.sum(pred & dnp))
        nonpaint += int(np.sum(dnp))
        if split == "houses":
            for name, idx in HOUSE_PARTS.items():
                part = np.isin(label, idx)
                if part.sum() >= MIN_PART_PIXELS:
                    part_shares[name].append(float(np.mean(pred[part])))
        tol = BOUNDARY_TOLERANCE * float(np.hypot(*label.shape))
        gt_b = _boundary(wall, edge_region)
        pr_b = _boundary(pred, edge_region)
        bp_hit += int(np.sum(pr_b & _within(gt_b, tol)))
        bp_all += int(pr_b.sum())
        br_hit += int(np.sum(gt_b & _within(pr_b, tol)))
        br_all += int(gt_b.sum())
    precision = bp_hit / max(bp_all, 1)
    recall = br_hit / max(br_all, 1)
    result = {
        "iou": inter / max(union, 1),
        "leakage": leak / max(nonpaint, 1),
        "boundary_f": 2 * precision * recall / max(precision + recall, 1e-9),
        "n": len(files),
        "seconds_per_image": seconds / len(files),
    }
    if split == "houses":
        result.update({f"painted_{name}": float(np.mean(v)) if v else float("nan")
                       for name, v in part_shares.items()})
    return result


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipeline.segment import AdeOnlySegmenter, EmbeddedSegmenter

    ap = argparse.ArgumentParser(description="segmentation quality table")
    ap.add_argument("--split", nargs="+", default=list(SPLITS), choices=SPLITS)
    ap.add_argument("--model-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--parser", type=Path, default=None, help="house parser weights to score instead of the "
                    "installed ones (e.g. a training run's output)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    segmenters = [EmbeddedSegmenter(args.model_dir, args.threads, parser_weights=args.parser)]
    if not args.no_baseline:
        segmenters.append(AdeOnlySegmenter(args.model_dir, args.threads))
    print(f"{'segmenter':44} {'split':11} {'n':>4} {'IoU':>6} {'leak':>6} {'bnd F':>6} {'s/img':>6}")
    for split in args.split:
        for seg in segmenters:
            r = evaluate(seg, split, step=args.step, limit=args.limit)
            print(f"{seg.name:44} {split:11} {r['n']:4d} {r['iou']:6.3f} {r['leakage']:6.3f} "
                  f"{r['boundary_f']:6.3f} {r['seconds_per_image']:6.3f}", flush=True)
            if split == "houses":
                print(" " * 45 + "painted: " + "  ".join(f"{name} {r[f'painted_{name}']:.3f}"
                                                         for name in HOUSE_PARTS), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
