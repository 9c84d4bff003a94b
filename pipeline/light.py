"""The photo's light on the walls: a relative shading layer, with the old cladding's own pattern taken out.

The luminance (linear light, log domain) inside the mask is split into light and texture with a median filter
wider than a cladding pattern (`PATTERN_SIDE`): a median keeps step edges and ramps (a shadow under the eaves, a
sunlit against a shaded wall, a gradient) but drops anything thinner than half its window (mortar joints, siding
shadow lines, the grain of stucco). The rest of the luminance is the old material's detail.

Shading = exp(light - median over the whole mask + beta * detail). A swatch brings its own detail, so beta is ~0
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


def shading_layer(rgb: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """Relative shading (float32, 1 = the mask's median luminance) from the photo's luminance inside `mask`."""
    if not mask.any():
        return np.ones(mask.shape, np.float32)
    log_y = np.log(luminance(srgb_to_linear(rgb)) + 1e-4).astype(np.float32)
    ref = float(np.median(log_y[mask]))
    low = light_layer(log_y, mask)
    log_s = low - np.float32(ref)
    if beta:
        log_s += np.float32(beta) * np.where(mask, np.clip(log_y - low, -1.0, 1.0), 0.0).astype(np.float32)
    # highlights brighter than the reference are compressed softly (at most x MAX_GAIN): white trim or a lamp
    # inside the mask should not blow the new material out
    k = math.log(MAX_GAIN)
    log_s = np.where(log_s > 0, k * np.tanh(log_s / k), log_s)
    return np.exp(log_s).astype(np.float32)
