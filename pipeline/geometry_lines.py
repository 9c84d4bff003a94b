"""Line segments for the line geometry (pipeline/geometry.py): OpenCV's LSD on a downscaled grey copy, in
normalised image coordinates ((p - centre) / long side), and which of them lie on or near a mask."""

from __future__ import annotations

import cv2
import numpy as np

DETECT_SIDE = 640  # long side of the image the segments are detected on


class Segments:
    """Line segments in normalised image coordinates ((p - centre) / long side)."""

    def __init__(self, p1: np.ndarray, p2: np.ndarray, scale_px: float):
        self.p1, self.p2 = p1, p2
        self.mid = 0.5 * (p1 + p2)
        delta = p2 - p1
        self.length = np.hypot(delta[:, 0], delta[:, 1])
        self.d = delta / np.maximum(self.length, 1e-12)[:, None]
        h1 = np.concatenate([p1, np.ones((len(p1), 1))], axis=1)
        h2 = np.concatenate([p2, np.ones((len(p2), 1))], axis=1)
        lines = np.cross(h1, h2)
        self.lines = lines / np.maximum(np.linalg.norm(lines, axis=1), 1e-12)[:, None]
        # angular tolerance (as a sine): ~1.5 degrees, wider for short segments (about 1 px at detection scale)
        len_px = self.length * scale_px
        self.tol = np.maximum(0.026, 1.2 / np.maximum(len_px, 1.0))

    def __len__(self) -> int:
        return len(self.length)


def detect(image: np.ndarray, detect_side: int = DETECT_SIDE) -> tuple[Segments, float]:
    """Segments of the image (at least 8 px long at detection scale) and the detection scale."""
    h, w = image.shape[:2]
    L = float(max(h, w))
    if image.ndim == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    else:
        gray = np.ascontiguousarray(image)
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    s = min(1.0, detect_side / L)
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)
    found = lsd.detect(gray)[0]
    if found is None or not len(found):
        raw = np.zeros((0, 4))
    else:
        raw = found.reshape(-1, 4).astype(np.float64)
    raw = (raw + 0.5) / s - 0.5  # to full-resolution pixel coordinates
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    p1 = np.stack([(raw[:, 0] - cx) / L, (raw[:, 1] - cy) / L], axis=1)
    p2 = np.stack([(raw[:, 2] - cx) / L, (raw[:, 3] - cy) / L], axis=1)
    min_len = max(8.0, 0.012 * L * s) / (L * s)  # at least 8 px at detection scale
    keep = np.hypot(*(p2 - p1).T) >= min_len
    return Segments(p1[keep], p2[keep], scale_px=L * s), s


class NearMask:
    """Which segments have their midpoint on or near (within ~2 % of the image) a mask, at detection scale: the
    mask may exclude the wall's own edges, windows, ..."""

    def __init__(self, seg: Segments, shape: tuple[int, int], s: float):
        h, w = shape
        L = float(max(h, w))
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        self.small_size = (max(1, round(w * s)), max(1, round(h * s)))
        self.r = max(2, int(round(0.02 * max(self.small_size))))
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.r + 1, 2 * self.r + 1))
        self.mx = np.clip(np.round((seg.mid[:, 0] * L + cx + 0.5) * s - 0.5).astype(int), 0, self.small_size[0] - 1)
        self.my = np.clip(np.round((seg.mid[:, 1] * L + cy + 0.5) * s - 0.5).astype(int), 0, self.small_size[1] - 1)
        self.n = len(seg)

    def of(self, mask: np.ndarray) -> np.ndarray:
        """bool per segment: its midpoint is on or near `mask`."""
        small = cv2.resize(mask.astype(np.uint8), self.small_size, interpolation=cv2.INTER_NEAREST)
        near = cv2.dilate(small, self.kernel) > 0
        return near[self.my, self.mx] if self.n else np.zeros(0, bool)
