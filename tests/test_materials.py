"""Materials: the swatch's own look on synthetic walls ((a) flat wall, (b) hard shadow, (c) textured old wall),
seamless tiles, and the physical size from a door of known height. Measures from bench/materials.py."""

from __future__ import annotations

import numpy as np
import pytest

from bench import materials as M
from bench.scale import door_wall, synthetic_course_error
from pipeline.colour import srgb_to_linear
from pipeline.errors import InputError
from pipeline.options import RenderOptions
from pipeline.scale import estimate_scale, physical_tile
from pipeline.tiles import needs_blending, seam_ratio, seamless_tile

SWATCHES = {row["file"]: row for row in M.swatch_table()}


@pytest.mark.parametrize("name", sorted(SWATCHES))
def test_flat_wall_keeps_the_swatch_contrast_and_colour(name):
    """(a) Measured: contrast 0.977-1.091, ΔE00 <= 0.21 over the 15 shared swatches."""
    row = SWATCHES[name]
    r = M.flat_wall(M.load_swatch(name), row["width_m"] * M.PX_PER_M)
    assert 0.90 <= r["contrast"] <= 1.10
    assert r["delta_e"] <= 1.0


@pytest.mark.parametrize("name", ["brick_white_small_sh3d_smallWhiteBricks.jpg",
                                  "wood_boards_painted_red_sh3d_oldWoodenFloor.jpg",
                                  "plaster_over_stone_polyhaven_plastered_stone_wall.png"])
def test_hard_shadow_keeps_its_ratio_and_the_swatch_contrast_inside(name):
    """(b) Measured: ratio error <= 2.0%, contrast in the shadow 0.99-1.01 for these."""
    r = M.shadow_wall(M.load_swatch(name), SWATCHES[name]["width_m"] * M.PX_PER_M)
    assert r["ratio_error"] <= 0.04
    assert 0.92 <= r["shadow_contrast"] <= 1.08


@pytest.mark.parametrize("old,new", [
    ("wood_boards_painted_red_sh3d_oldWoodenFloor.jpg", "stone_blocks_grey_sh3d_pavingStone.jpg"),
    ("wood_planks_vertical_imageio_wood.jpg", "brick_grey_stone_imageio_bricks.jpg"),
    ("brick_red_small_sh3d_smallRedBricks.jpg", "stucco_roughcast_sh3d_roughcast.jpg"),
])
def test_old_wall_pattern_does_not_show_through(old, new):
    """(c) Measured worst over all 15 pairs: 0.061 of the old pattern's energy left (before: 0.615)."""
    r = M.old_wall(M.load_swatch(old), SWATCHES[old]["width_m"] * M.PX_PER_M, M.load_swatch(new),
                   SWATCHES[new]["width_m"] * M.PX_PER_M)
    assert r["energy_left"] < 0.08


@pytest.mark.parametrize("old,new", [
    ("wood_boards_painted_red_sh3d_oldWoodenFloor.jpg", "brick_white_small_sh3d_smallWhiteBricks.jpg"),
    ("stone_ashlar_sand_sh3d_stoneWall.jpg", "brick_red_small_sh3d_smallRedBricks.jpg"),
])
@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("vertical", [True, False])
def test_thin_cast_shadow_across_a_textured_wall_is_kept(old, new, width, vertical):
    """Measured: ratio error <= 8.4% for these (before: ~230%, the band vanished), old pattern <= 0.032 left."""
    r = M.thin_shadow_wall(M.load_swatch(old), SWATCHES[old]["width_m"] * M.PX_PER_M, M.load_swatch(new),
                           SWATCHES[new]["width_m"] * M.PX_PER_M, width, vertical=vertical)
    assert r["ratio_error"] <= 0.10
    assert r["energy_left"] < 0.08


def test_non_tileable_swatch_becomes_seamless_and_tileable_ones_stay_as_they_are():
    photo = srgb_to_linear(M.load_swatch("brick_grey_perspective_skimage_brick.png"))
    assert needs_blending(photo) and seam_ratio(photo) > 30  # measured 40.7
    tile = seamless_tile(photo)
    assert seam_ratio(tile) < 3.0  # measured 2.48
    assert abs(float(tile.mean()) - float(photo.mean())) < 0.01
    assert seamless_tile(photo) is tile  # built once, cached
    for name in ("brick_red_small_sh3d_smallRedBricks.jpg", "wood_boards_painted_red_sh3d_oldWoodenFloor.jpg"):
        lin = srgb_to_linear(M.load_swatch(name))
        assert np.array_equal(seamless_tile(lin), lin)
    # a pattern edge that lies on the border (two stripes per tile) is not a seam
    stripes = np.full((64, 64, 3), 0.8, np.float32)
    stripes[:32] = 0.02
    assert not needs_blending(stripes)


def test_drift_across_a_photo_is_removed():
    """A tileable swatch with a light gradient across it (as a phone photo has) gets its border step removed."""
    lin = srgb_to_linear(M.load_swatch("stone_rough_beige_sh3d_stone2Wall.jpg"))
    ramp = np.linspace(0.6, 1.4, lin.shape[1], dtype=np.float32)[None, :, None]
    drifted = np.clip(lin * ramp, 0, 1)
    assert needs_blending(drifted)
    before, after = seam_ratio(drifted), seam_ratio(seamless_tile(drifted))
    assert after < 0.5 * before


@pytest.mark.parametrize("kw", [{}, {"px_per_m": 60.0, "unit_px": 0.5}])
def test_course_height_from_a_door_of_known_size(kw):
    """Measured: course height error 0.4% / 0.0%, confidence 0.50 from one door (target 15%)."""
    r = synthetic_course_error(**kw)
    assert r["error"] <= 0.05
    assert r["scale_error"] <= 0.05
    assert 0.45 <= r["confidence"] <= 0.6


def test_no_metric_cue_falls_back_with_a_warning():
    _photo, surfaces, geo, _ = door_wall()
    assert estimate_scale({"wall": surfaces["wall"]}, geo) is None
    tile, report, warnings = physical_tile({"wall": surfaces["wall"]}, geo, 904.0, 0.6)
    assert tile is None and report["source"] == "real_world_scale" and "real_world_scale" in warnings[0]
    tile, report, warnings = physical_tile(surfaces, geo, 904.0, 0.6)
    assert tile == pytest.approx(0.6 / 0.01, rel=0.05) and report["wall_width_m"] == pytest.approx(9.04, rel=0.05)
    assert not warnings


def test_implausible_scale_falls_back_with_a_warning():
    """A door that would make the wall 90 m wide (the parser found a fragment, or the geometry is off) is not
    believed: real_world_scale, with a warning naming why."""
    _photo, surfaces, geo, _ = door_wall()
    tile, report, warnings = physical_tile(surfaces, geo, 904.0 * 10, 0.6)  # the widest wall: 90 m at this scale
    assert tile is None and report["source"] == "real_world_scale"
    assert "real_world_scale" in warnings[0] and "house-sized" in warnings[0]
    tiny = np.zeros_like(surfaces["door"])
    ys, xs = np.nonzero(surfaces["door"])
    tiny[ys.max() - 19:ys.max() + 1, xs.min():xs.min() + 10] = True  # a 20 px "door": a 9 m tall door's scale
    est = estimate_scale({"wall": surfaces["wall"], "door": tiny}, geo)
    assert est is None  # rejected as an outlier: the wall would be ~90 m wide


def test_swatch_width_option_is_validated():
    assert RenderOptions.from_mapping({}).swatch_width_m is None
    assert RenderOptions.from_mapping({"swatch_width_m": 0.36}).swatch_width_m == 0.36
    assert RenderOptions.from_mapping({"swatch_width_m": None}).swatch_width_m is None
    for bad in (0.0, 25, "1", True):
        with pytest.raises(InputError) as exc:
            RenderOptions.from_mapping({"swatch_width_m": bad})
        assert "options.swatch_width_m" in exc.value.details
