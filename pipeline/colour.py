"""sRGB <-> linear light and luminance (lookup tables: the renderer converts every painted pixel)."""

from __future__ import annotations

import numpy as np

_DECODE = np.array([(c / 255.0) / 12.92 if c / 255.0 <= 0.04045 else ((c / 255.0 + 0.055) / 1.055) ** 2.4
                    for c in range(256)], np.float32)
_ENC_N = 4096
_enc_lin = (np.arange(_ENC_N, dtype=np.float64) / (_ENC_N - 1)) ** 2  # LUT indexed by sqrt(linear)
_ENCODE = (255.0 * np.where(_enc_lin <= 0.0031308, 12.92 * _enc_lin,
                            1.055 * np.power(_enc_lin, 1 / 2.4) - 0.055)).astype(np.float32)
REC709 = np.array([0.2126, 0.7152, 0.0722], np.float32)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear in [0, 1]."""
    return _DECODE[np.asarray(rgb, np.uint8)]


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """float linear -> float32 sRGB in [0, 255] (not rounded)."""
    idx = np.sqrt(np.clip(lin, 0.0, 1.0)) * (_ENC_N - 1) + 0.5
    return _ENCODE[idx.astype(np.int32)]


def luminance(lin: np.ndarray) -> np.ndarray:
    """Relative luminance of linear RGB (..., 3) -> (...)."""
    return lin[..., 0] * REC709[0] + lin[..., 1] * REC709[1] + lin[..., 2] * REC709[2]
