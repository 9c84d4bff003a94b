"""Contact sheet: every photo of a folder rendered with a few materials, one row per photo, to look at by eye.

    .venv/bin/python tools/contact_sheet.py -o /tmp/sheet.png [--photos DIR] [--limit N] [--width 360]
        [--material brick_red_small_sh3d_smallRedBricks.jpg --material '#7A8B99' ...] [--parser W.pt]
        [--swatch-width-m [M]] [--surface trim=#F4F1EA --surface roof=roof_slates_polyhaven_roof_slates_02.png ...]

Columns: the photo, the segmentation (wall red; roof brown, windows blue, doors yellow, garage doors magenta,
trim cyan, each over a darkened photo), then one render per material (file names are looked up in the shared
textures folder; `#RRGGBB` is a paint colour). Writes the sheet as one PNG (and, with --crops, a second sheet of
2x crops of the centre of each render). Models from RENDER_MODEL_DIR, or installed from the shared folder into
a temporary folder. Never writes into the repository unless told to. `--surface NAME=MATERIAL` (repeatable) gives
every render that surface's material as well (roof, trim, door, garage_door; see pipeline/surfaces.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
DEFAULT_MATERIALS = ["brick_red_small_sh3d_smallRedBricks.jpg", "wood_boards_painted_red_sh3d_oldWoodenFloor.jpg",
                     "#7A8B99"]
SURFACE_COLOURS = {"wall": (230, 60, 60), "roof": (140, 80, 30), "window": (80, 160, 255), "door": (255, 200, 0),
                   "garage_door": (255, 0, 255), "trim": (0, 230, 230)}


def overlay(photo: np.ndarray, surfaces: dict[str, np.ndarray]) -> np.ndarray:
    out = (photo * 0.45).astype(np.uint8)
    for name, mask in surfaces.items():
        out[mask] = (0.4 * photo[mask] + 0.6 * np.array(SURFACE_COLOURS[name])).astype(np.uint8)
    return out


def thumb(image: np.ndarray, width: int) -> np.ndarray:
    h = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)


def centre_crop_2x(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    cw, ch = w // 2, h // 2
    crop = image[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    return cv2.resize(crop, (width, round(ch * width / cw)), interpolation=cv2.INTER_LINEAR)


def texture_path(material: str) -> str:
    return material if material.startswith("#") else str(SHARED / "data" / "textures" / material)


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.pipeline import model_folder
    from pipeline import Pipeline, SurfaceMaterial
    from pipeline.geometry import LineGeometry
    from pipeline.segment import EmbeddedSegmenter

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=SHARED / "data" / "houses")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--width", type=int, default=360)
    ap.add_argument("--material", action="append", default=None)
    ap.add_argument("--scale", type=float, default=24)
    ap.add_argument("--swatch-width-m", nargs="?", const="csv", default=None, metavar="M",
                    help="physical swatch width in metres (alone: each swatch's width from textures.csv)")
    ap.add_argument("--parser", type=Path, default=None, help="house parser weights instead of the installed ones")
    ap.add_argument("--surface", action="append", default=[], metavar="NAME=MATERIAL",
                    help="an extra surface for every render, e.g. trim=#F4F1EA or roof=<texture file>")
    ap.add_argument("--crops", action="store_true", help="also write OUT-crops.png with 2x centre crops")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    materials = args.material or DEFAULT_MATERIALS
    textures = [texture_path(m) for m in materials]
    widths = {}
    if args.swatch_width_m == "csv":
        import csv

        with open(SHARED / "data" / "textures" / "textures.csv", newline="") as fh:
            widths = {r["file"]: float(r["physical_width_m"]) for r in csv.DictReader(fh) if r["physical_width_m"]}
    extras = []
    for item in args.surface:
        name, _, material = item.partition("=")
        extras.append(SurfaceMaterial(name, texture_path(material)))
    extra = {"parser_weights": args.parser} if args.parser else {}
    pipe = Pipeline(EmbeddedSegmenter(model_folder(), **extra), LineGeometry())
    photos = sorted(args.photos.glob("*.jpg"))[:args.limit]
    rows, crop_rows = [], []
    for path in photos:
        photo = np.asarray(Image.open(path).convert("RGB"))
        cells, crops = [thumb(photo, args.width)], []
        surfaces = None
        print(path.stem, flush=True)
        for material, texture in zip(materials, textures):
            opts = {"real_world_scale": args.scale}
            width = widths.get(material) if args.swatch_width_m == "csv" else args.swatch_width_m
            if width is not None and not material.startswith("#"):
                opts["swatch_width_m"] = float(width)
            try:
                result = pipe.run(photo, texture, opts, surfaces=extras)
            except Exception as exc:  # a photo with no wall found: show the reason in its cell
                img = Image.fromarray(np.full_like(cells[0], 40))
                ImageDraw.Draw(img).text((8, 8), str(exc)[:60], fill=(255, 255, 255))
                cells.append(np.asarray(img))
                crops.append(np.asarray(img))
                continue
            surfaces = surfaces or getattr(result, "surfaces", None) or {"wall": result.mask}
            if result.scale:
                print(f"  {Path(material).stem[:24]}: {result.scale}", flush=True)
            cells.append(thumb(result.image, args.width))
            crops.append(centre_crop_2x(result.image, args.width))
        seg = overlay(photo, surfaces) if surfaces else np.zeros_like(photo)
        cells.insert(1, thumb(seg, args.width))
        row = np.concatenate(cells, 1)
        label = Image.fromarray(row)
        ImageDraw.Draw(label).text((6, 4), path.stem, fill=(255, 255, 0))
        rows.append(np.asarray(label))
        crop_rows.append(np.concatenate(crops, 1))
    width = max(r.shape[1] for r in rows)
    pad = lambda r: np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)))  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([pad(r) for r in rows], 0)).save(args.out)
    if args.crops:
        width = max(r.shape[1] for r in crop_rows)
        Image.fromarray(np.concatenate([pad(r) for r in crop_rows], 0)).save(
            args.out.with_name(args.out.stem + "-crops.png"))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
