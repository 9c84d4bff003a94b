"""Stage 3 (project): tiling in wall coordinates, scale, anti-aliasing, shading, paint colour, feathered edges."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from pipeline.errors import InputError
from pipeline.geometry import LineGeometry
from pipeline.images import Texture
from pipeline.project import feather_radius, linear_to_srgb, project_texture, srgb_to_linear
from pipeline.stages import Geometry, Wall

W, H = 768, 576


# -- helpers -------------------------------------------------------------------------------------------------------
def look_at(target):
    z = np.asarray(target, float) / np.linalg.norm(target)
    x = np.cross([0, 1.0, 0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def camera(f):
    return np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])


def plane_to_image(K, R, origin, e_u, m):
    return K @ np.stack([R @ (np.asarray(e_u) * m), R @ (np.array([0, 1.0, 0]) * m), R @ np.asarray(origin)], 1)


def wall_scene(homography_to_image, tex_size, shade=None):
    """Uniform mid-grey wall (optionally shaded) on a blue background; returns image, mask, geometry with the TRUE
    rectification (texture px -> image inverted), width = texture width."""
    tw, th = tex_size
    region = cv2.warpPerspective(np.full((th, tw), 255, np.uint8), homography_to_image, (W, H),
                                 flags=cv2.INTER_NEAREST) > 127
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (90, 120, 170)
    img[region] = 128 if shade is None else 0
    if shade is not None:
        img[region] = shade[region][:, None]
    geo = Geometry([Wall(region, np.linalg.inv(homography_to_image), float(tw))], "test")
    return img, region, geo


def stripes(horizontal=True, n=64):
    """A 2-stripe swatch (one period per tile): dark/light halves."""
    sw = np.full((n, n, 3), 230, np.uint8)
    if horizontal:
        sw[: n // 2] = 30
    else:
        sw[:, : n // 2] = 30
    return sw


def fine_bricks(n=64):
    """Small bricks with thin mortar lines: plenty of high frequencies (moire bait)."""
    sw = np.full((n, n, 3), (170, 70, 50), np.uint8)
    bh, bw = n // 4, n // 2
    for r in range(4):
        sw[r * bh: r * bh + 2] = 225
        off = 0 if r % 2 == 0 else bw // 2
        for x in range(off, n + bw, bw):
            sw[r * bh: (r + 1) * bh, x % n: x % n + 2] = 225
    return sw


def dominant_period(profile):
    p = profile - profile.mean()
    spec = np.abs(np.fft.rfft(p * np.hanning(len(p))))
    k = int(np.argmax(spec[2:])) + 2
    # parabolic refinement of the peak
    a, b, c = spec[k - 1], spec[k], spec[k + 1]
    k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return len(p) / k


def oblique_homography(yaw=0.9, f=700, depth=9.0, width_m=10.0, tex_w=800, tex_h=500):
    K = camera(f)
    centre = np.array([0.0, 0.0, depth])
    R = look_at(centre)
    e_u = np.array([np.cos(yaw), 0, np.sin(yaw)])
    m = width_m / tex_w
    origin = centre - e_u * width_m / 2 - np.array([0, 1.0, 0]) * tex_h * m / 2
    return plane_to_image(K, R, origin, e_u, m), (tex_w, tex_h)


# -- edges and untouched pixels ------------------------------------------------------------------------------------
def test_pixels_outside_feathered_mask_are_bit_identical(shared_dir):
    img = np.asarray(Image.open(shared_dir / "data/houses/house_126.jpg").convert("RGB"))
    h, w = img.shape[:2]
    rng = np.random.default_rng(3)
    blobs = (cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 12) > 0.5)
    mask = blobs.copy()
    mask[:, : w // 5] = False
    geo = LineGeometry().estimate(img, mask)
    sw = np.asarray(Image.open(shared_dir / "data/textures/brick_red_small_sh3d_smallRedBricks.jpg").convert("RGB"))
    out = project_texture(img, mask, geo, Texture(image=sw), 20.0)
    assert out.shape == img.shape and out.dtype == np.uint8
    r = feather_radius(mask.shape)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    outside = dist > r + 0.5
    assert np.array_equal(out[outside], img[outside])
    changed = np.any(out != img, axis=2)
    assert changed[mask].mean() > 0.9
    # the edge is feathered: some pixels just outside the mask are partly blended
    fringe = (dist > 0) & (dist <= r)
    assert changed[fringe].mean() > 0.3
    # the input is not modified in place
    assert not np.shares_memory(out, img)


def test_empty_mask_and_bad_scale():
    img = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    geo = Geometry([Wall(mask, np.eye(3), 0.0)], "test")
    assert np.array_equal(project_texture(img, mask, geo, Texture(colour=(10, 20, 30)), 10), img)
    mask[10:50, 10:50] = True
    with pytest.raises(InputError):
        project_texture(img, mask, geo, Texture(colour=(10, 20, 30)), 0.0)


# -- scale -----------------------------------------------------------------------------------------------------------
def test_scale_sets_the_tile_size_monotonically():
    """Frontal wall 600 px wide: the swatch must repeat `real_world_scale` times across it."""
    img = np.full((H, W, 3), 128, np.uint8)
    mask = np.zeros((H, W), bool)
    mask[100:400, 80:680] = True
    geo = Geometry([Wall(mask, np.array([[1.0, 0, -80], [0, 1.0, -100], [0, 0, 1]]), 600.0)], "test")
    periods = []
    for scale in (4, 8, 16, 32):
        out = project_texture(img, mask, geo, Texture(image=stripes(horizontal=False)), scale)
        profile = out[150:350, 80:680].astype(float).mean(axis=(0, 2))
        periods.append(dominant_period(profile))
        assert periods[-1] == pytest.approx(600 / scale, rel=0.03)
    assert all(a > b for a, b in zip(periods, periods[1:]))


def test_all_walls_share_the_tile_of_the_widest():
    img = np.full((H, W, 3), 128, np.uint8)
    left = np.zeros((H, W), bool)
    left[100:400, 40:340] = True  # 300 units wide
    right = np.zeros((H, W), bool)
    right[100:400, 400:720] = True  # 320 units wide, drawn at half scale: 640 rectified units
    geo = Geometry([Wall(left, np.array([[1.0, 0, -40], [0, 1, -100], [0, 0, 1]]), 300.0),
                    Wall(right, np.array([[2.0, 0, -800], [0, 2, -200], [0, 0, 1]]), 640.0)], "test")
    out = project_texture(img, left | right, geo, Texture(image=stripes(horizontal=False)), 10)
    tile = 640 / 10  # rectified units
    p_left = dominant_period(out[150:350, 40:340].astype(float).mean(axis=(0, 2)))
    p_right = dominant_period(out[150:350, 400:720].astype(float).mean(axis=(0, 2)))
    assert p_left == pytest.approx(tile, rel=0.04)
    assert p_right == pytest.approx(tile / 2, rel=0.04)


# -- courses follow the wall -------------------------------------------------------------------------------------
def _row_residual(out, Ht, tex_size, region):
    """Warp the render back into the TRUE wall frame; stripes that run along the wall are constant along rows.
    Returns mean within-row std / overall std (0 = perfectly level, converging courses)."""
    tw, th = tex_size
    back = cv2.warpPerspective(out, np.linalg.inv(Ht), (tw, th), flags=cv2.INTER_LINEAR).astype(float).mean(2)
    inside = cv2.warpPerspective(region.astype(np.uint8), np.linalg.inv(Ht), (tw, th),
                                 flags=cv2.INTER_NEAREST) > 0
    inside = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    rows = [back[y][inside[y]] for y in range(th) if inside[y].sum() > tw // 3]
    within = np.mean([r.std() for r in rows])
    return within / np.concatenate(rows).std()


def test_projected_courses_are_level_and_converge_on_two_walls():
    """Geometry estimated from a synthetic house corner, then horizontal stripes projected with it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_geometry import camera as gcam, corner_walls, look_at as glook, render, synth_facade

    ta, pa = synth_facade(seed=1)
    tb, pb = synth_facade(seed=2, base=(150, 90, 70))
    corner_top = np.array([0, -4.0, 10])
    walls = corner_walls(ta, tb, corner_top)
    K, R = gcam(700), glook(corner_top + [0, 0.5, 4])
    img, regions, Hs = render(K, R, walls)
    mask = regions[0] | regions[1]
    geo = LineGeometry().estimate(img, mask)
    assert len(geo.walls) == 2
    sw = stripes(horizontal=True)
    img = np.full_like(img, 128)  # a neutral photo: only the placement of the texture is under test
    out = project_texture(img, mask, geo, Texture(image=sw), 6.0)
    for Ht, (tex, *_), reg in zip(Hs, walls, regions):
        assert _row_residual(out, Ht, tex.shape[1::-1], reg) < 0.12
    # control: the same stripes pasted in image coordinates (identity geometry) are not level on the walls
    flat = Geometry([Wall(mask, np.eye(3), float(np.ptp(np.nonzero(mask)[1])))], "test")
    out_flat = project_texture(img, mask, flat, Texture(image=sw), 6.0)
    assert max(_row_residual(out_flat, Ht, tex.shape[1::-1], reg)
               for Ht, (tex, *_), reg in zip(Hs, walls, regions)) > 0.3
    # the course lines themselves: long straight edges in the render point at each wall's true vanishing point
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    segs = cv2.createLineSegmentDetector().detect(gray)[0].reshape(-1, 4)
    for Ht, (tex, origin, e_u, m), reg in zip(Hs, walls, regions):
        vp = K @ R @ e_u
        inner = cv2.erode(reg.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        errs = []
        for x1, y1, x2, y2 in segs:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            if np.hypot(x2 - x1, y2 - y1) < 40 or not inner[int(my), int(mx)]:
                continue
            d = np.array([x2 - x1, y2 - y1]) / np.hypot(x2 - x1, y2 - y1)
            to_vp = vp[:2] - np.array([mx, my]) * vp[2]
            errs.append(abs(d[0] * to_vp[1] - d[1] * to_vp[0]) / np.linalg.norm(to_vp))
        assert len(errs) >= 5
        assert np.degrees(np.arcsin(np.median(errs))) < 0.5


# -- anti-aliasing -------------------------------------------------------------------------------------------------
def _reference(geo_h, mask, swatch, tile_w, spp=4):
    """Box-filtered reference in linear light (x 255): the average of spp x spp bilinear samples per pixel."""
    lin = srgb_to_linear(swatch).astype(np.float64)
    sh, sw_ = lin.shape[:2]
    k = sw_ / tile_w
    ys, xs = np.nonzero(mask)
    acc = np.zeros((len(xs), 3))
    offs = (np.arange(spp) + 0.5) / spp - 0.5 if spp > 1 else np.array([0.0])
    for oy in offs:
        for ox in offs:
            p = geo_h @ np.stack([xs + ox, ys + oy, np.ones(len(xs))])
            s, t = p[0] / p[2] * k - 0.5, p[1] / p[2] * k - 0.5
            x0, y0 = np.floor(s), np.floor(t)
            fx, fy = (s - x0)[:, None], (t - y0)[:, None]
            x0, y0 = x0.astype(int) % sw_, y0.astype(int) % sh
            x1, y1 = (x0 + 1) % sw_, (y0 + 1) % sh
            acc += ((1 - fx) * (1 - fy) * lin[y0, x0] + fx * (1 - fy) * lin[y0, x1]
                    + (1 - fx) * fy * lin[y1, x0] + fx * fy * lin[y1, x1])
    out = np.zeros(mask.shape + (3,), np.float32)
    out[ys, xs] = 255.0 * acc / len(offs) ** 2
    return out


def test_no_moire_at_high_repeats():
    """Fine bricks, 40 repeats across a wall seen at a grazing angle (2 to 10 swatch texels per pixel): the render's
    low frequencies must match an 8x8-supersampled box-filtered reference. Compared in linear light (averaging in
    sRGB would penalise any blur through the curve, not aliasing)."""
    Ht, size = oblique_homography(depth=14.0)
    img, region, geo = wall_scene(Ht, size)
    inner = cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    sw = fine_bricks()
    scale = 40.0
    out = 255.0 * srgb_to_linear(project_texture(img, region, geo, Texture(image=sw), scale))
    tile_w = size[0] / scale
    ref = _reference(geo.walls[0].homography, inner, sw, tile_w, spp=8)
    naive = _reference(geo.walls[0].homography, inner, sw, tile_w, spp=1)

    def low_freq_error(a):
        d = np.where(inner[..., None], a - ref, 0).astype(np.float32)
        weight = np.maximum(cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 4), 1e-3)[..., None]
        lp = np.abs(cv2.GaussianBlur(d, (0, 0), 4) / weight)[inner]
        return float(lp.mean()), float(np.percentile(lp, 99))

    mean_ours, p99_ours = low_freq_error(out)
    mean_naive, p99_naive = low_freq_error(naive)
    assert mean_ours < 1.0 and p99_ours < 3.5
    # the test can tell: one point sample per pixel (no filtering) aliases into visible low-frequency beats
    assert p99_naive > 3 * p99_ours and p99_naive > 8.0


# -- colour and light ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("colour", [(181, 62, 47), (40, 90, 160), (235, 230, 210), (60, 60, 60)])
@pytest.mark.parametrize("wall_grey", [90, 200])
def test_paint_colour_matches_on_uniform_wall(colour, wall_grey):
    rng = np.random.default_rng(0)
    Ht, size = oblique_homography(yaw=0.5)
    shade = np.clip(wall_grey + rng.normal(0, 6, (H, W)), 0, 255).astype(np.uint8)  # textured, uniformly lit
    img, region, geo = wall_scene(Ht, size, shade=shade)
    out = project_texture(img, region, geo, Texture(colour=colour), 10)
    inner = cv2.erode(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    lab = rgb2lab(out[inner].reshape(-1, 1, 3)).reshape(-1, 3)
    want = rgb2lab(np.array(colour, np.uint8).reshape(1, 1, 3)).reshape(3)
    assert deltaE_ciede2000(lab.mean(axis=0), want) <= 5.0
    assert np.median(deltaE_ciede2000(lab, want[None])) <= 5.0
    # the wall's texture is kept (not a flat fill)
    assert out[inner].astype(float).std(axis=0).max() > 1.0


def test_swatch_keeps_its_mean_colour_on_neutral_wall(shared_dir):
    sw = np.asarray(Image.open(shared_dir / "data/textures/stone_ashlar_sand_sh3d_stoneWall.jpg").convert("RGB"))
    Ht, size = oblique_homography(yaw=0.4)
    img, region, geo = wall_scene(Ht, size)
    out = project_texture(img, region, geo, Texture(image=sw), 8)
    inner = cv2.erode(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    got = linear_to_srgb(srgb_to_linear(out[inner]).mean(axis=0))
    want = linear_to_srgb(srgb_to_linear(sw).reshape(-1, 3).mean(axis=0))
    assert deltaE_ciede2000(rgb2lab(np.clip(got / 255, 0, 1).reshape(1, 1, 3)).reshape(3),
                            rgb2lab(np.clip(want / 255, 0, 1).reshape(1, 1, 3)).reshape(3)) <= 4.0


@pytest.mark.parametrize("texture", [Texture(colour=(200, 180, 150)), Texture(image=fine_bricks())])
def test_shadows_and_light_persist(texture):
    """A wall lit at grey 190 with an eave shadow (grey 90) across its top third: the render keeps the shadow, with
    about the same linear-light ratio, and its edge stays sharp-ish; not a flat paste."""
    Ht, size = oblique_homography(yaw=0.3)
    ys = np.arange(H)[:, None] * np.ones((1, W))
    region0 = cv2.warpPerspective(np.full(size[::-1], 255, np.uint8), Ht, (W, H), flags=cv2.INTER_NEAREST) > 127
    top = np.nonzero(region0.any(axis=1))[0]
    y_edge = top[0] + (top[-1] - top[0]) // 3
    shade = np.where(ys < y_edge, 90, 190).astype(np.uint8)
    img, region, geo = wall_scene(Ht, size, shade=shade)
    out = project_texture(img, region, geo, texture, 20)
    lum = srgb_to_linear(out).mean(axis=2)
    inner = cv2.erode(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    band = 12
    dark = inner & (ys < y_edge - band)
    lit = inner & (ys > y_edge + band)
    want = srgb_to_linear(np.array([90], np.uint8))[0] / srgb_to_linear(np.array([190], np.uint8))[0]
    got = lum[dark].mean() / lum[lit].mean()
    assert got == pytest.approx(want, rel=0.2)
    # the transition is no wider than ~2 * band pixels
    near_dark = inner & (ys >= y_edge - band) & (ys < y_edge - band // 2)
    assert lum[near_dark].mean() / lum[lit].mean() < want * 1.5
