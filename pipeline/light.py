"""The photo's light on the walls: a relative shading layer, with the old cladding's own pattern taken out.

The luminance (linear light, log domain) inside the mask is split into light and texture in two medians. A thin
one (`THIN_SIDE`, ~9 px at 1024 px) drops the old wall's lines (mortar joints, siding shadow lines); a wide one
on top of it (`PATTERN_SIDE`, ~1/20 of the long side) drops what is left of the pattern (bricks, boards, stones)
and keeps step edges and ramps (a shadow under the eaves, a sunlit against a shaded wall, a gradient). Cast
shadows thinner than half the wide window (a post's, a downspout's, the edge of an awning) are put back from the
thin median where it departs from the wide light by more than `THIN_STEP` over a stretch at least as long as the
wide window (see `light_with_thin_shadows`). The rest of the luminance is the old material's detail.

Shading = exp(light - median light over the mask + beta * detail). A swatch brings its own detail, so beta is ~0
for swatches (the old pattern must not show through the new material) and 0.7 for paint (paint keeps the wall's
surface texture). Gains above 1 are compressed softly to at most `MAX_GAIN`. On a uniformly lit wall the shading
is exactly 1, so a swatch keeps its own mean colour and contrast and a paint colour comes out as requested.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .colour import luminance, srgb_to_linear

BETA_SWATCH = 0.0
BETA_PAINT = 0.7
MAX_GAIN = 2.5  # brightest shading relative to the mask's median
PATTERN_SIDE = 1 / 20  # median window (full-resolution pixels) as a fraction of the long side: ~51 px at 1024 px
THIN_SIDE = 1 / 112  # second median (full resolution): ~9 px at 1024 px; bands wider than ~5 px survive it
THIN_STEP = 0.3  # log departure from the wide light that a long thin band needs to count as light (~26%)
_WORK_SIDE = 512  # the median runs on a copy at most this large (the light is smooth; the edges stay sharp enough)


def _fill_outside(values: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """Values outside the mask replaced by the masked local mean, so that the median near the mask's edge is not
    pulled towards the sky, the roof or the windows."""
    m = mask.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    num = cv2.boxFilter(values * m, -1, k, borderType=cv2.BORDER_REFLECT)
    den = cv2.boxFilter(m, -1, k, borderType=cv2.BORDER_REFLECT)
    fallback = float(np.median(values[mask]))
    local = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    return np.where(mask, values, local).astype(np.float32)


def light_layer(log_y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The light part of the log luminance (same shape), from a median of a pattern-sized window."""
    h, w = mask.shape
    f = min(1.0, _WORK_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(log_y, size, interpolation=cv2.INTER_AREA) if f < 1 else log_y
    small_m = (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5) if f < 1 else mask
    if not small_m.any():
        small_m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    ksize = max(3, int(round(PATTERN_SIDE * max(h, w) * f)) | 1)
    filled = _fill_outside(small, small_m, ksize)
    # medianBlur needs uint8 for large windows: quantise over the mask's own range (steps ~1%, smoothed below)
    lo, hi = np.percentile(small[small_m], [0.2, 99.8])
    lo, hi = float(lo) - 0.05, float(hi) + 0.05
    q = np.clip(np.rint((filled - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    med = cv2.medianBlur(q, ksize).astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    med = cv2.GaussianBlur(med, (0, 0), 0.8)  # the quantisation steps, not the edges
    if f < 1:
        med = cv2.resize(med, (w, h), interpolation=cv2.INTER_LINEAR)
    return med


def _thin_median(log_y: np.ndarray, mask: np.ndarray, fill: np.ndarray, k: int) -> np.ndarray:
    vals = log_y[mask]
    lo, hi = np.percentile(vals[:: max(1, len(vals) // 50000)], [0.2, 99.8])
    lo, hi = float(lo) - 0.05, float(hi) + 0.05
    # outside the mask: `fill` (a window's frame or the sky must not read as a band)
    q = np.clip(np.rint((np.where(mask, log_y, fill) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return cv2.medianBlur(q, k).astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)


def light_with_thin_shadows(log_y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The wide light (`light_layer`) with cast shadows (and sunlit strips) thinner than its window put back.

    A second median, `THIN_SIDE` wide (~9 px at 1024 px), keeps any band wider than half of it (an 8 px post
    shadow) and still drops the old wall's thin lines (mortar joints, siding shadow lines). Where it departs from
    the wide light by more than `THIN_STEP` (log) over a connected stretch at least as long as the wide window,
    and where the wide light has no edge of its own, that is light, not pattern: a brick darker than its neighbours is short, a cast shadow is long. Such a band
    also pulls the wide median beside it towards its own level (by ~10% on a textured wall), so the wide light is
    taken again with the band left out (filled from the wall around it), then the band's departure from it is added back with a soft threshold
    (the band keeps its own edges and penumbra)."""
    h, w = mask.shape
    k = max(3, int(round(THIN_SIDE * max(h, w))) | 1)
    # the wide median runs on the thin median: without the old wall's lines its values spread less, so a
    # shadow's edge pulls it less
    thin = _thin_median(log_y, mask, _fill_outside(log_y, mask, k), k)
    wide = light_layer(thin, mask)
    d = np.where(mask, thin - wide, 0.0).astype(np.float32)
    # where the wide light has an edge of its own (an eave shadow's) about as large, it needs no help
    box = np.ones((k, k), np.uint8)
    flat = (cv2.dilate(wide, box) - cv2.erode(wide, box)) < np.maximum(THIN_STEP, 0.5 * np.abs(d))
    keep = np.zeros(mask.shape, bool)
    for sign in (-1.0, 1.0):
        cand = ((sign * d > THIN_STEP) & flat).astype(np.uint8)
        if not cand.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
        long = np.zeros(n, bool)
        long[1:] = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]) >= PATTERN_SIDE * max(h, w)
        keep |= long[labels]
    if not keep.any():
        return wide
    # the band and its rim (penumbra), weighted softly by how far it departs
    rim = cv2.dilate(keep.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    wgt = np.where(rim, np.clip((np.abs(d) - 0.5 * THIN_STEP) / (0.5 * THIN_STEP), 0.0, 1.0), 0.0)
    wgt = wgt.astype(np.float32)
    rest = mask & ~rim
    if rest.any():  # the band counts as outside: filled from the wall around it, not from its own level
        wide = light_layer(thin, rest)
    return (wide + wgt * (thin - wide)).astype(np.float32)


def shading_layer(rgb: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """Relative shading (float32, 1 = the mask's median luminance) from the photo's luminance inside `mask`."""
    if not mask.any():
        return np.ones(mask.shape, np.float32)
    log_y = np.log(luminance(srgb_to_linear(rgb)) + 1e-4).astype(np.float32)
    low = light_with_thin_shadows(log_y, mask)
    ref = float(np.median(low[mask]))  # 1 = the mask's median light
    log_s = low - np.float32(ref)
    if beta:
        log_s += np.float32(beta) * np.where(mask, np.clip(log_y - low, -1.0, 1.0), 0.0).astype(np.float32)
    # highlights brighter than the reference are compressed softly (at most x MAX_GAIN): white trim or a lamp
    # inside the mask should not blow the new material out
    k = math.log(MAX_GAIN)
    log_s = np.where(log_s > 0, k * np.tanh(log_s / k), log_s)
    return np.exp(log_s).astype(np.float32)
