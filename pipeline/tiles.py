"""Seamless tiles: a swatch photo made to wrap around without a visible seam, built once per swatch and cached.

* Seam visibility (`seam_ratio`): the gradient energy across the wrap-around border (last column -> first column,
  last row -> first row) over the mean gradient energy between neighbouring columns / rows inside the tile. A
  seamless tile scores ~1; a photo whose light or colour drifts across the frame, or whose pattern does not line
  up, scores several times that.
* Making a tile seamless (`seamless_tile`), only when a border stands out from the tile's own edges
  (`needs_blending`; a catalogue tile whose border lies on a joint is left alone):
  1. the periodic component of the periodic + smooth decomposition (Moisan, "Periodic plus smooth image
     decomposition", JMIV 2011), applied as a gain: it removes the smooth factor that makes the opposite
     borders disagree (a lighting or colour drift across the photo) and leaves the detail's contrast, and the
     mean colour, as they were;
  2. where the pattern itself does not line up, a cross-fade over a narrow band at each border with the tile
     shifted by half a period (whose own seam lies in the middle, far from the band). The band is narrow so the
     swatch keeps its contrast nearly everywhere.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import cv2
import numpy as np

SEAM_OUTLIER = 1.5  # a border edge this much stronger than any inside the tile is a seam
SEAM_DRIFT = 3.0  # the same for steps between 1/16-tile means (boards of different tones differ by ~2x)
BAND = 1 / 12  # width of the cross-fade band, as a fraction of the tile's side
_CACHE_SIZE = 16
_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
_lock = threading.Lock()


def _grey(tile: np.ndarray) -> np.ndarray:
    t = np.asarray(tile, np.float32)
    return t.mean(axis=2) if t.ndim == 3 else t


def seam_ratio(tile: np.ndarray) -> float:
    """Gradient energy across the wrap-around borders / mean gradient energy inside (the worse of x and y)."""
    g = _grey(tile)
    ratios = []
    for a in (g, g.T):
        inner = np.mean(np.diff(a, axis=1) ** 2)
        seam = np.mean((a[:, 0] - a[:, -1]) ** 2)
        ratios.append(seam / max(float(inner), 1e-9))
    return float(max(ratios))


def _outlier_step(a: np.ndarray, k: int) -> float:
    """The step between the means of k columns either side of the wrap-around border, over the largest such step
    anywhere inside: > 1 when the border is an edge unlike any in the tile (a real edge of the pattern, such as a
    stripe or a joint that happens to lie on the border, has its equals inside)."""
    n = a.shape[1]
    ext = np.concatenate([a[:, -k:], a, a[:, :k]], axis=1).cumsum(axis=1)
    ext = np.concatenate([np.zeros((a.shape[0], 1)), ext], axis=1)
    left = (ext[:, k:k + n + 1] - ext[:, 0:n + 1]) / k  # mean of the k columns before each boundary 0..n
    right = (ext[:, 2 * k:2 * k + n + 1] - ext[:, k:k + n + 1]) / k
    step = np.mean((right - left) ** 2, axis=0)[:n]  # boundary j: between columns j-1 and j (0 = the border)
    near = np.r_[0:k, n - k + 1:n]  # boundaries whose windows straddle the border
    inside = np.delete(step, near)
    return float(step[0] / max(float(inside.max()) if len(inside) else 0.0, 1e-12))


def needs_blending(tile: np.ndarray, *, drift: bool = True) -> bool:
    """True when a border stands out: stronger than the tile's own edges at the pixel scale (the pattern does
    not line up) or, with `drift`, at 1/16 of the tile (a light or colour drift across the photo)."""
    g = _grey(tile).astype(np.float64)
    return any(_outlier_step(a, 1) > SEAM_OUTLIER
               or (drift and _outlier_step(a, max(2, a.shape[1] // 16)) > SEAM_DRIFT) for a in (g, g.T))


def _smooth_along(j: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass (wrap-around) of a border's jump profile (N, C) along the border."""
    if sigma <= 0:
        return j
    n = len(j)
    ext = np.concatenate([j, j, j], axis=0)
    out = cv2.GaussianBlur(ext.reshape(3 * n, 1, -1).astype(np.float64), (1, 0), sigmaX=0.0001, sigmaY=sigma)
    return out.reshape(3 * n, -1)[n:2 * n]


def periodic_component(tile: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    """Moisan's periodic component of a float image (H, W[, C]): same mean and detail, opposite borders agree.
    With `sigma` > 0 only the border jumps' low frequencies along the border (a drift) are removed, so the
    correction stays smooth instead of packing the per-pixel mismatch into the border rows."""
    u = np.asarray(tile, np.float64)
    flat = u.ndim == 2
    if flat:
        u = u[..., None]
    h, w = u.shape[:2]
    jx = _smooth_along(u[:, -1] - u[:, 0], sigma)  # (h, C): per row, last column -> first column
    jy = _smooth_along(u[-1] - u[0], sigma)  # (w, C)
    v = np.zeros_like(u)
    v[0] += jy
    v[-1] -= jy
    v[:, 0] += jx
    v[:, -1] -= jx
    cy = np.cos(2 * np.pi * np.arange(h) / h)[:, None]
    cx = np.cos(2 * np.pi * np.arange(w) / w)[None, :]
    denom = 2 * cx + 2 * cy - 4
    denom[0, 0] = 1.0
    s_hat = np.fft.fft2(v, axes=(0, 1)) / denom[..., None]
    s_hat[0, 0] = 0.0
    p = u - np.real(np.fft.ifft2(s_hat, axes=(0, 1)))
    return p[..., 0] if flat else p


def _band_weight(n: int) -> np.ndarray:
    """1 inside, falling smoothly to 0 at both borders over BAND * n samples."""
    band = max(2.0, BAND * n)
    d = np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5)  # distance to the nearest border
    t = np.clip(d / band, 0.0, 1.0)
    return t * t * (3 - 2 * t)  # smoothstep


def _cross_fade(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[:2]
    wx, wy = _band_weight(w)[None, :, None], _band_weight(h)[:, None, None]
    # at the border only the half-shifted copy shows, and it is continuous across the wrap there
    shifted = np.roll(p, w // 2, axis=1)
    p = wx * p + (1 - wx) * shifted
    shifted = np.roll(p, h // 2, axis=0)
    return wy * p + (1 - wy) * shifted


def seamless_tile(lin: np.ndarray) -> np.ndarray:
    """A seamless version of a linear-light swatch (H, W, 3) float32, or the swatch itself if it already is.
    Cached by content: one build per swatch."""
    lin = np.ascontiguousarray(lin, np.float32)
    key = hashlib.blake2b(lin.tobytes(), digest_size=16, person=str(lin.shape).encode()[:16]).digest()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    out = lin
    if min(lin.shape[:2]) >= 8 and needs_blending(lin):
        # the smooth part s is applied as a gain (1 - s / local mean): a light drift is a factor, so the detail
        # keeps its contrast where the tile is lifted or lowered (subtracting s would not); then the linear mean
        # of each channel is put back
        u = lin.astype(np.float64)
        smooth = u - periodic_component(u, sigma=min(u.shape[:2]) / 32)
        local = cv2.GaussianBlur(np.tile(u, (3, 3, 1)), (0, 0), max(2.0, min(u.shape[:2]) / 32))
        local = local[u.shape[0]:2 * u.shape[0], u.shape[1]:2 * u.shape[1]]
        out = u * np.clip(1.0 - smooth / np.maximum(local, 1e-3), 0.25, 4.0)
        out *= u.reshape(-1, 3).mean(axis=0) / np.maximum(out.reshape(-1, 3).mean(axis=0), 1e-9)
        if needs_blending(out, drift=False):  # the drift is gone; what is left is pattern that does not line up
            out = _cross_fade(out)
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    with _lock:
        _cache[key] = out
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return out
