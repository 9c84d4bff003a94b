"""Stage 3: project a swatch (or a paint colour) onto the walls, keeping the photo's light.

`project_texture(image, mask, geometry, texture, real_world_scale)`:

* Scale. `real_world_scale` is how many times the swatch repeats horizontally across the WIDEST painted wall,
  measured in that wall's rectified frame (`Wall.width`). Every wall uses the same physical tile: the tile is
  `widest.width / real_world_scale` rectified units wide (and as tall as the swatch's aspect ratio says), so the
  walls of one house share one brick size. This relies on the walls' rectified frames sharing a unit, which
  `LineGeometry` provides for the walls of one corner.
* Tiling. Every painted pixel is mapped through its wall's homography into the rectified frame and the swatch is
  sampled there with wrap-around, so courses stay level in the wall and converge to the vanishing points in the
  image. Tile origin = the rectified frame's origin (the top-left of the wall's mask; continuous across a corner).
* Anti-aliasing. A mip pyramid of the swatch (area-averaged, in linear light) is sampled trilinearly; the level
  comes from the per-pixel footprint, i.e. the longer of the two columns of the Jacobian of the pixel -> swatch
  mapping (analytic for a homography). Pixels at or beyond a wall's vanishing line get the swatch's mean.
* Light. The photo's luminance (linear light, log domain) inside the mask is split into a low-frequency, edge-
  preserving part (a self-guided filter with masked box means: keeps shadow edges under eaves and sunlit/shaded
  walls) and the residual detail. The shading layer is exp(low - median over the whole mask + beta * detail),
  beta = 0.3 for swatches (the old material's pattern mostly goes) and 0.7 for paint (the wall's surface texture
  stays); gains above 1 are compressed softly to at most 2.5. Output (linear) = albedo x shading, per channel.
  On a uniformly lit wall the shading is 1, so a paint colour comes out as requested and a swatch keeps its own
  mean colour. Walls in shadow stay darker than sunlit ones because the reference is the median over all walls
  together. Only luminance is transferred: a coloured cast of the light is not, and the photo's absolute exposure
  is not either (a night shot renders the new material at its daylight colour where the wall is at its median).
* Paint mode (`texture.colour`): albedo = that colour everywhere (then the same shading).
* Edges. The mask is feathered (a Gaussian of radius ~ long side / 512 px, at least 1 px), centred on its edge.
  Pixels where the feathered alpha is 0 are copied from the input untouched (bit-identical).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .colour import linear_to_srgb, srgb_to_linear
from .errors import InputError
from .images import Texture
from .light import BETA_PAINT, BETA_SWATCH, shading_layer
from .stages import Geometry
from .tiles import seamless_tile

__all__ = ["feather_alpha", "feather_radius", "linear_to_srgb", "project_texture", "srgb_to_linear",
           "widest_painted_wall"]
_REMAP_COLS = 1024


def feather_radius(shape: tuple[int, int]) -> int:
    return max(1, int(round(max(shape[:2]) / 512)))


def feather_alpha(mask: np.ndarray) -> np.ndarray:
    """Feathered alpha (float32), exactly 0 further than `feather_radius` from the mask, exactly 1 deep inside."""
    r = feather_radius(mask.shape)
    a = cv2.GaussianBlur(mask.astype(np.float32), (2 * r + 1, 2 * r + 1), r / 2.0,
                         borderType=cv2.BORDER_REPLICATE)
    a[a > 0.999] = 1.0
    a[a < 1e-4] = 0.0
    return a


def _pyramid(tex_lin: np.ndarray) -> list[np.ndarray]:
    levels = [np.ascontiguousarray(tex_lin, np.float32)]
    while max(levels[-1].shape[:2]) > 1:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (max(1, (w + 1) // 2), max(1, (h + 1) // 2)),
                                 interpolation=cv2.INTER_AREA).reshape(max(1, (h + 1) // 2), max(1, (w + 1) // 2), 3))
    return levels


def _sample_level(level: np.ndarray, w0: int, h0: int, s: np.ndarray, t: np.ndarray,
                  interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Bilinear (or `interp`), wrapping samples of one mip level at level-0 texel coordinates (s, t) in [0, w0) x [0, h0)
    -> (N, 3)."""
    h, w = level.shape[:2]
    x = s * np.float32(w / w0) - np.float32(0.5)  # in [-0.5, w): BORDER_WRAP does the rest
    y = t * np.float32(h / h0) - np.float32(0.5)
    n = len(x)
    rows = -(-n // _REMAP_COLS)
    pad = rows * _REMAP_COLS - n
    if pad:
        x = np.concatenate([x, np.zeros(pad, np.float32)])
        y = np.concatenate([y, np.zeros(pad, np.float32)])
    out = cv2.remap(level, x.reshape(rows, _REMAP_COLS), y.reshape(rows, _REMAP_COLS), interp,
                    borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1, 3)[:n]


def sample_swatch(levels: list[np.ndarray], s: np.ndarray, t: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Trilinear mip sampling: (s, t) in level-0 texels (any range: wrapped here, in float64 if given so),
    footprint in level-0 texels per output pixel (inf or nan: the swatch's mean). Returns (N, 3) float32."""
    h0, w0 = levels[0].shape[:2]
    s = np.mod(s, w0).astype(np.float32)
    t = np.mod(t, h0).astype(np.float32)
    n_lev = len(levels)
    foot = np.nan_to_num(np.asarray(footprint, np.float32), nan=np.inf, posinf=np.inf)
    lam = np.clip(np.log2(np.maximum(foot, 1e-6)), 0.0, n_lev - 1.0)
    l0 = np.minimum(lam.astype(np.int16), n_lev - 1)
    frac = (lam - l0).astype(np.float32)
    order = np.argsort(l0, kind="stable")  # radix sort: pixels grouped by level, each group contiguous
    bounds = np.concatenate([[0], np.cumsum(np.bincount(l0, minlength=n_lev))])
    s_o, t_o, f_o = s[order], t[order], frac[order]
    acc = np.zeros((len(s), 3), np.float32)
    for k in range(n_lev):
        lo = bounds[k - 1] if k > 0 else bounds[0]  # [lo, mid): base level k - 1 (weight frac)
        mid, hi = bounds[k], bounds[k + 1]  # [mid, hi): base level k (weight 1 - frac)
        if hi == lo:
            continue
        wgt = np.concatenate([f_o[lo:mid], 1.0 - f_o[mid:hi]])
        if k == n_lev - 1:
            val = levels[k].reshape(-1, 3).mean(axis=0)[None, :]
        else:
            # level 0 (about one texel per pixel after prefiltering) bicubic: bilinear at a random sub-texel phase
            # would soften the finest joints by up to a [0.5, 0.5] blur
            val = _sample_level(levels[k], w0, h0, s_o[lo:hi], t_o[lo:hi],
                                cv2.INTER_CUBIC if k == 0 else cv2.INTER_LINEAR)
        acc[lo:hi] += wgt[:, None] * val
    out = np.empty_like(acc)
    out[order] = acc
    return out


def _wall_labels(geometry: Geometry, mask: np.ndarray, region: np.ndarray, radius: int) -> np.ndarray:
    """Wall index per pixel of `region` (-1 elsewhere): the wall's own mask first, then its dilation (for the
    feathered fringe and for mask pixels no wall claims), then the wall with the most pixels."""
    labels = np.full(mask.shape, -1, np.int16)
    for k, wall in enumerate(geometry.walls):
        wm = np.asarray(wall.mask, bool)
        labels[wm & region & (labels < 0)] = k
    todo = region & (labels < 0)
    if todo.any():
        kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * radius + 3, 4 * radius + 3))
        for k, wall in enumerate(geometry.walls):
            dil = cv2.dilate(np.asarray(wall.mask, np.uint8), kern) > 0
            sel = todo & dil & (labels < 0)
            labels[sel] = k
        todo = region & (labels < 0)
        if todo.any():
            sizes = [int(np.asarray(w.mask, bool).sum()) for w in geometry.walls]
            labels[todo] = int(np.argmax(sizes))
    return labels


def widest_painted_wall(geometry: Geometry, mask: np.ndarray) -> float:
    """Rectified width of the widest wall that has painted pixels: the span `real_world_scale` refers to."""
    painted = [w for w in geometry.walls if (np.asarray(w.mask, bool) & mask).any()] or geometry.walls
    widest = max((float(w.width) for w in painted), default=0.0)
    if not (widest > 0 and math.isfinite(widest)):
        xs = np.nonzero(mask.any(axis=0))[0]
        widest = float(xs.max() - xs.min() + 1) if len(xs) else 1.0
    return widest


def _wall_coords(H: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rectified (u, v) of pixels (X, Y) and the footprint in rectified units per pixel (the longer Jacobian
    column, analytic for a homography; inf on or beyond the wall's vanishing line)."""
    pw = H[2, 0] * X + H[2, 1] * Y + H[2, 2]
    # the wall's own side of its vanishing line: the sign that (most of) its pixels have
    side = np.sign(np.median(pw[:: max(1, len(pw) // 4000)]))
    side = side if side != 0 else 1.0
    valid = pw * side > 1e-9
    inv = 1.0 / np.where(valid, pw, side)
    u = (H[0, 0] * X + H[0, 1] * Y + H[0, 2]) * inv
    v = (H[1, 0] * X + H[1, 1] * Y + H[1, 2]) * inv
    u32, v32, inv32 = u.astype(np.float32), v.astype(np.float32), np.abs(inv).astype(np.float32)
    h32 = H.astype(np.float32)
    jx = np.hypot(h32[0, 0] - u32 * h32[2, 0], h32[1, 0] - v32 * h32[2, 0])
    jy = np.hypot(h32[0, 1] - u32 * h32[2, 1], h32[1, 1] - v32 * h32[2, 1])
    foot = np.maximum(jx, jy) * inv32
    valid &= np.isfinite(u) & np.isfinite(v)
    foot[~valid] = np.inf
    u[~valid] = 0.0
    v[~valid] = 0.0
    return u, v, foot


def _prefiltered(tile: np.ndarray, texels_per_pixel: float) -> np.ndarray:
    """The tile area-resampled to about one texel per output pixel at the typical footprint: most pixels then
    sample mip level 0 at ~1:1 instead of blending two levels (each softer than needed), which keeps the swatch's
    fine contrast (mortar joints, board edges) at full strength."""
    if not (texels_per_pixel > 1.05 and math.isfinite(texels_per_pixel)):
        return tile
    h, w = tile.shape[:2]
    size = (max(1, round(w / texels_per_pixel)), max(1, round(h / texels_per_pixel)))
    return cv2.resize(tile, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3)


def project_texture(image: np.ndarray, mask: np.ndarray, geometry: Geometry, texture: Texture,
                    real_world_scale: float, *, tile_units: float | None = None,
                    canvas: np.ndarray | None = None) -> np.ndarray:
    """Render the swatch / paint colour onto the masked walls (see the module docstring). `tile_units`, when
    given, is the tile's width in rectified units (from a metric scale estimate) and replaces `real_world_scale`.
    `canvas` (default `image`): what the result is composited onto, e.g. the render of the surfaces behind this
    one; the light is always read from `image`, the photo.
    Returns uint8 RGB of the image's shape; pixels where the feathered mask is 0 are identical to `canvas`."""
    image = np.asarray(image)
    canvas = image if canvas is None else np.asarray(canvas)
    if canvas.shape != image.shape or canvas.dtype != np.uint8:
        raise InputError("project: canvas must be uint8 RGB of the image's shape")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError("project: image must be uint8 RGB (H, W, 3)")
    mask = np.asarray(mask).astype(bool)
    if mask.shape != image.shape[:2]:
        raise InputError(f"project: mask {mask.shape} does not match the image {image.shape[:2]}")
    if not (isinstance(real_world_scale, (int, float)) and math.isfinite(real_world_scale)
            and real_world_scale > 0):
        raise InputError("project: real_world_scale must be a positive number")
    if tile_units is not None and not (math.isfinite(tile_units) and tile_units > 0):
        raise InputError("project: tile_units must be a positive number")
    out = canvas.copy()
    if not mask.any() or not geometry.walls:
        return out

    alpha_full = feather_alpha(mask)
    region_full = alpha_full > 0
    ys, xs = np.nonzero(region_full)
    pad = 2 * max(2, int(round(max(mask.shape) / 100))) + 2  # context for the shading filter
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + 1 + pad)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + 1 + pad)
    img = image[y0:y1, x0:x1]
    m = mask[y0:y1, x0:x1]
    alpha = alpha_full[y0:y1, x0:x1]
    region = region_full[y0:y1, x0:x1]

    # the tile: one physical size for all walls, from the widest painted wall
    tile_w = float(tile_units) if tile_units is not None else widest_painted_wall(geometry, mask) / real_world_scale

    labels = _wall_labels(geometry, mask, region_full, feather_radius(mask.shape))[y0:y1, x0:x1]
    ry, rx = np.nonzero(region)
    lab = labels[ry, rx]

    if texture.is_colour:
        albedo = np.broadcast_to(srgb_to_linear(np.array(texture.colour, np.uint8)), (len(ry), 3))
        beta = BETA_PAINT
    else:
        tile = seamless_tile(srgb_to_linear(texture.image))
        tile_h = tile_w * tile.shape[0] / tile.shape[1]
        n = len(ry)
        u, v, foot = np.zeros(n), np.zeros(n), np.full(n, np.inf, np.float32)
        px = (rx + x0).astype(np.float64)
        py = (ry + y0).astype(np.float64)
        for k, wall in enumerate(geometry.walls):
            sel = np.nonzero(lab == k)[0]
            if len(sel):
                u[sel], v[sel], foot[sel] = _wall_coords(np.asarray(wall.homography, np.float64), px[sel], py[sel])
        finite = foot[np.isfinite(foot)]
        typical = float(np.median(finite)) * tile.shape[1] / tile_w if len(finite) else 1.0
        levels = _pyramid(_prefiltered(tile, typical))
        h0, w0 = levels[0].shape[:2]
        kx, ky = w0 / tile_w, h0 / tile_h  # level-0 texels per rectified unit (equal up to rounding)
        albedo = sample_swatch(levels, u * kx, v * ky, foot * np.float32(max(kx, ky)))
        beta = BETA_SWATCH

    shade = shading_layer(img, m, beta)[ry, rx]
    render = linear_to_srgb(albedo * shade[:, None])
    a = alpha[ry, rx][:, None]
    src = canvas[ry + y0, rx + x0].astype(np.float32)
    blended = np.clip(np.rint(src + a * (render - src)), 0, 255).astype(np.uint8)
    out[ry + y0, rx + x0] = blended
    return out
