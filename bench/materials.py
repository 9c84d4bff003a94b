"""Materials benchmark: does the render keep the swatch's own look, tile seamlessly, and come out the right size?

    .venv/bin/python -m bench.materials [--no-houses]

Prints markdown tables:
* (a) flat grey wall, uniform light: band-pass contrast of the render over the painted region / that of the swatch
  ideally resampled to the same scale (target 0.9-1.1), and the mean colour's CIEDE2000 to the swatch's mean
  (target <= 3), for every swatch in the shared textures folder;
* (b) a hard shadow across the wall: the shadow's luminance ratio kept (error, target <= 10%) and the swatch's
  contrast inside the shadow (target 0.9-1.1);
* (c) a textured old wall (one swatch photo as the wall, the next swatch as the new material): the old pattern's
  energy left in the render / its energy in the photo (target < 0.10);
* thin shadows: 8 px and 16 px wide cast-shadow bands (a post's, a downspout's, an awning's edge) across a
  textured old wall, vertical and horizontal: each band's luminance ratio in the render vs the photo (error,
  target <= 10%), and the old pattern's energy left (target < 0.10);
* seams: gradient energy across the tile border / inside (`pipeline.tiles.seam_ratio`), raw swatch and the tile
  the renderer uses;
* scale: course height on a synthetic wall with a door (error, target <= 15%), and the wall scale from labelled
  US houses, each door / garage door left out in turn and predicted from the other cues (median, p90 error).

The measurement functions are imported by tests/test_materials.py. Synthetic walls are frontal (identity-like
homography), so the ideal render is the swatch area-resampled to the tile size and tiled.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from pipeline.images import Texture
from pipeline.project import linear_to_srgb, project_texture, srgb_to_linear
from pipeline.stages import Geometry, Wall

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
TEXTURES = SHARED / "data/textures"
W, H = 1024, 768
WALL = (slice(96, 672), slice(96, 928))  # the painted rectangle: 832 x 576 px
PX_PER_M = 80.0  # the synthetic wall's scale: 10.4 m wide
BAND = (1.0, 4.0)  # band-pass (DoG sigmas, px) for local contrast: mortar joints, board shadow lines, relief
WIDE = 16.0  # everything finer than this (px) is "pattern" in (c)
DEFAULT_WIDTH_M = 1.0  # for swatches whose physical size is unknown


# -- inputs -------------------------------------------------------------------------------------------------------
def swatch_table() -> list[dict]:
    with open(TEXTURES / "textures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["width_m"] = float(row["physical_width_m"]) if row["physical_width_m"] else DEFAULT_WIDTH_M
    return rows


def load_swatch(name: str) -> np.ndarray:
    return np.asarray(Image.open(TEXTURES / name).convert("RGB"))


def wall_geometry() -> tuple[np.ndarray, Geometry]:
    mask = np.zeros((H, W), bool)
    mask[WALL] = True
    y0, x0 = WALL[0].start, WALL[1].start
    hom = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]])
    return mask, Geometry([Wall(mask, hom, float(WALL[1].stop - x0))], "bench")


def tiled(swatch: np.ndarray, tile_px: float, shape: tuple[int, int]) -> np.ndarray:
    """The swatch area-resampled (linear light) so one tile is `tile_px` wide, tiled over `shape`: the ideal
    render of a frontal wall. Returns linear float32 (h, w, 3)."""
    lin = srgb_to_linear(swatch)
    th = max(1, round(tile_px * swatch.shape[0] / swatch.shape[1]))
    tw = max(1, round(tile_px))
    interp = cv2.INTER_AREA if tw < swatch.shape[1] else cv2.INTER_LINEAR
    tile = cv2.resize(lin, (tw, th), interpolation=interp).reshape(th, tw, 3)
    reps = (-(-shape[0] // th), -(-shape[1] // tw), 1)
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def wall_photo(fill: np.ndarray | int) -> np.ndarray:
    """A 'photo': blue-grey surroundings, the wall rectangle filled with `fill` (grey level or RGB image)."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (120, 150, 190)
    img[WALL] = fill
    return img


# -- measures -----------------------------------------------------------------------------------------------------
def log_lum(lin: np.ndarray) -> np.ndarray:
    return np.log(lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722 + 1e-4).astype(np.float32)


def band_pass(log_y: np.ndarray, lo: float = BAND[0], hi: float = BAND[1]) -> np.ndarray:
    return cv2.GaussianBlur(log_y, (0, 0), lo) - cv2.GaussianBlur(log_y, (0, 0), hi)


def inner(region: np.ndarray, margin: int = 12) -> np.ndarray:
    return cv2.erode(region.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0


def contrast(lin: np.ndarray, where: np.ndarray) -> float:
    """RMS band-pass log-luminance contrast over `where`."""
    return float(np.sqrt(np.mean(band_pass(log_lum(lin))[where] ** 2)))


def mean_delta_e(lin: np.ndarray, where: np.ndarray, swatch: np.ndarray) -> float:
    got = linear_to_srgb(lin[where].mean(axis=0)) / 255.0
    want = linear_to_srgb(srgb_to_linear(swatch).reshape(-1, 3).mean(axis=0)) / 255.0
    lab = [rgb2lab(np.clip(c, 0, 1).reshape(1, 1, 3)).reshape(3) for c in (got, want)]
    return float(deltaE_ciede2000(lab[0], lab[1]))


def render(photo: np.ndarray, swatch: np.ndarray, tile_px: float) -> np.ndarray:
    mask, geo = wall_geometry()
    scale = geo.walls[0].width / tile_px
    return srgb_to_linear(project_texture(photo, mask, geo, Texture(image=swatch), scale))


def flat_wall(swatch: np.ndarray, tile_px: float) -> dict:
    """(a): contrast ratio render / ideal, and the mean colour's CIEDE2000."""
    mask, _ = wall_geometry()
    where = inner(mask)
    out = render(wall_photo(128), swatch, tile_px)
    ideal = np.zeros_like(out)
    ideal[WALL] = tiled(swatch, tile_px, out[WALL].shape[:2])
    return {"contrast": contrast(out, where) / contrast(ideal, where), "delta_e": mean_delta_e(out, where, swatch)}


def shadow_wall(swatch: np.ndarray, tile_px: float, lit: int = 190, dark: int = 70) -> dict:
    """(b): a hard shadow over the top 40% of the wall. Shadow ratio error (render vs photo, normalised by the
    ideal render's own ratio of albedo means) and the contrast ratio inside the shadow."""
    mask, _ = wall_geometry()
    ys = np.arange(H)[:, None] * np.ones((1, W), int)
    edge = WALL[0].start + int(0.4 * (WALL[0].stop - WALL[0].start))
    photo = wall_photo(lit)
    photo[(ys < edge) & mask] = dark
    out = render(photo, swatch, tile_px)
    ideal = np.zeros_like(out)
    ideal[WALL] = tiled(swatch, tile_px, out[WALL].shape[:2])
    where = inner(mask)
    in_dark, in_lit = where & (ys < edge - 12), where & (ys > edge + 12)
    want = float(srgb_to_linear(np.uint8(dark)) / srgb_to_linear(np.uint8(lit)))
    lum, ref = np.exp(log_lum(out)), np.exp(log_lum(ideal))
    got = (lum[in_dark].mean() / ref[in_dark].mean()) / (lum[in_lit].mean() / ref[in_lit].mean())
    return {"ratio_error": abs(got / want - 1.0), "shadow_contrast": contrast(out, in_dark) / contrast(ideal, in_dark)}


def old_wall(old: np.ndarray, old_tile_px: float, swatch: np.ndarray, tile_px: float) -> dict:
    """(c): the old wall is a photo of `old` tiled at its own size; the old pattern's energy left in the render
    (the render minus the same render over a flat wall of the same mean), over its energy in the photo."""
    mask, _ = wall_geometry()
    where = inner(mask, 20)
    old_lin = tiled(old, old_tile_px, (WALL[0].stop - WALL[0].start, WALL[1].stop - WALL[1].start))
    photo_old = wall_photo(np.clip(np.rint(linear_to_srgb(old_lin)), 0, 255).astype(np.uint8))
    mean_grey = int(round(float(linear_to_srgb(np.float32(np.exp(log_lum(old_lin)).mean())))))
    out_old = render(photo_old, swatch, tile_px)
    out_flat = render(wall_photo(mean_grey), swatch, tile_px)

    def pattern(lin: np.ndarray) -> np.ndarray:
        return band_pass(log_lum(lin), 0.5, WIDE)

    left = pattern(out_old) - pattern(out_flat)
    original = pattern(srgb_to_linear(photo_old))
    return {"energy_left": float(np.sum(left[where] ** 2) / np.sum(original[where] ** 2))}


THIN_SHADOW = 0.3  # linear light inside a thin cast-shadow band, relative to the lit wall around it
THIN_PAIRS = [("brick_red_small_sh3d_smallRedBricks.jpg", "stone_ashlar_sand_sh3d_stoneWall.jpg"),
              ("wood_boards_painted_red_sh3d_oldWoodenFloor.jpg", "brick_white_small_sh3d_smallWhiteBricks.jpg"),
              ("stone_ashlar_sand_sh3d_stoneWall.jpg", "brick_red_small_sh3d_smallRedBricks.jpg"),
              ("brick_grey_stone_imageio_bricks.jpg", "stucco_roughcast_sh3d_roughcast.jpg")]


def thin_shadow_wall(old: np.ndarray, old_tile_px: float, swatch: np.ndarray, tile_px: float, width: int,
                     vertical: bool = True, factor: float = THIN_SHADOW) -> dict:
    """A textured old wall (`old` tiled at its size) with one cast-shadow band `width` px wide across it (linear
    light x `factor`), rendered with `swatch`. Returns the band's luminance ratio error (render / ideal inside
    the band's core over the same beside it, vs `factor`) and the old pattern's energy left away from the band."""
    mask, _ = wall_geometry()
    hh, ww = WALL[0].stop - WALL[0].start, WALL[1].stop - WALL[1].start
    old_lin = tiled(old, old_tile_px, (hh, ww))
    pos = (ww if vertical else hh) // 2 + 7
    band = np.zeros((hh, ww), bool)
    (band.__setitem__((slice(None), slice(pos, pos + width)), True) if vertical
     else band.__setitem__((slice(pos, pos + width), slice(None)), True))
    shadowed = np.where(band[..., None], old_lin * np.float32(factor), old_lin)
    photo = wall_photo(np.clip(np.rint(linear_to_srgb(shadowed)), 0, 255).astype(np.uint8))
    out = render(photo, swatch, tile_px)[WALL]
    ideal = tiled(swatch, tile_px, (hh, ww))
    ratio = np.exp(log_lum(out)) / np.exp(log_lum(ideal))
    # the band's core (1 px off each edge) and two strips beside it (4-24 px away); 40 px off the wall's ends
    core = np.zeros_like(band)
    beside = np.zeros_like(band)
    along = slice(40, (hh if vertical else ww) - 40)
    for lo, hi, target in ((pos + 1, pos + width - 1, core), (pos - 24, pos - 4, beside),
                           (pos + width + 4, pos + width + 24, beside)):
        (target.__setitem__((along, slice(lo, hi)), True) if vertical
         else target.__setitem__((slice(lo, hi), along), True))
    got = float(ratio[core].mean() / ratio[beside].mean())
    # the old pattern left, away from the band (same measure as (c))
    flat = render(wall_photo(int(round(float(linear_to_srgb(np.float32(np.exp(log_lum(old_lin)).mean())))))),
                  swatch, tile_px)[WALL]
    far = inner(np.ones((hh, ww), bool), 20) & ~(cv2.dilate(band.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0)
    left = band_pass(log_lum(out), 0.5, WIDE) - band_pass(log_lum(flat), 0.5, WIDE)
    original = band_pass(log_lum(srgb_to_linear(photo)[WALL]), 0.5, WIDE)
    return {"ratio_error": abs(got / factor - 1.0), "ratio": got,
            "energy_left": float(np.sum(left[far] ** 2) / np.sum(original[far] ** 2))}


def thin_shadow_table() -> str:
    rows = ["| old wall -> new swatch | band | vertical: ratio err | horizontal: ratio err | old energy left |",
            "|---|---:|---:|---:|---:|"]
    table = {r["file"]: r for r in swatch_table()}
    worst_r, worst_e = 0.0, 0.0
    for old, new in THIN_PAIRS:
        for width in (8, 16):
            res = [thin_shadow_wall(load_swatch(old), table[old]["width_m"] * PX_PER_M, load_swatch(new),
                                    table[new]["width_m"] * PX_PER_M, width, vertical=v) for v in (True, False)]
            worst_r = max(worst_r, *(r["ratio_error"] for r in res))
            worst_e = max(worst_e, *(r["energy_left"] for r in res))
            rows.append(f"| {old[:22]} -> {new[:22]} | {width} px | {res[0]['ratio_error']:.1%} | "
                        f"{res[1]['ratio_error']:.1%} | {max(r['energy_left'] for r in res):.3f} |")
    rows.append(f"| **worst** | | {worst_r:.1%} | | {worst_e:.3f} |")
    return "\n".join(rows)


# -- tables -------------------------------------------------------------------------------------------------------
def materials_table() -> str:
    from pipeline.tiles import seam_ratio, seamless_tile

    rows = ["| swatch | tile px | (a) contrast | (a) ΔE00 | (b) shadow err | (b) contrast in shadow | "
            "(c) old energy left | seam raw | seam tile |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table = swatch_table()
    worst = {"a_c": 0.0, "a_e": 0.0, "b_r": 0.0, "b_c": 0.0, "c": 0.0}
    for i, row in enumerate(table):
        sw = load_swatch(row["file"])
        tile_px = row["width_m"] * PX_PER_M
        a = flat_wall(sw, tile_px)
        b = shadow_wall(sw, tile_px)
        old_row = table[(i + 1) % len(table)]
        c = old_wall(load_swatch(old_row["file"]), old_row["width_m"] * PX_PER_M, sw, tile_px)
        lin = srgb_to_linear(sw)
        seams = (seam_ratio(lin), seam_ratio(seamless_tile(lin)))
        worst = {"a_c": max(worst["a_c"], abs(a["contrast"] - 1)), "a_e": max(worst["a_e"], a["delta_e"]),
                 "b_r": max(worst["b_r"], b["ratio_error"]), "b_c": max(worst["b_c"], abs(b["shadow_contrast"] - 1)),
                 "c": max(worst["c"], c["energy_left"])}
        rows.append(f"| {row['file'][:38]} | {tile_px:.0f} | {a['contrast']:.3f} | {a['delta_e']:.2f} | "
                    f"{b['ratio_error']:.1%} | {b['shadow_contrast']:.3f} | {c['energy_left']:.3f} | "
                    f"{seams[0]:.2f} | {seams[1]:.2f} |")
    rows.append(f"| **worst** | | ±{worst['a_c']:.3f} | {worst['a_e']:.2f} | {worst['b_r']:.1%} | "
                f"±{worst['b_c']:.3f} | {worst['c']:.3f} | | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-houses", action="store_true", help="skip the labelled-house scale benchmark")
    parser.add_argument("--no-scale", action="store_true", help="materials table only")
    args = parser.parse_args()
    started = time.perf_counter()
    print(materials_table())
    print()
    print(thin_shadow_table())
    if not args.no_scale:
        from bench.scale import scale_tables

        print()
        print(scale_tables(houses=not args.no_houses))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
