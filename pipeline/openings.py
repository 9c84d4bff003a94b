"""Straight outlines for windows, doors and garage doors.

A segmenter's openings come out with wobbly, rounded outlines (a UNet at half resolution, then upsampled), while
the photo's are straight: in the wall plane they are rectangles, in the photo convex quadrilaterals. Each
connected opening whose shape is close to a quadrilateral is replaced by that quadrilateral; arched windows,
openings cut by a tree or merged with their neighbours do not fit one and are left as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

OPENINGS = ("window", "door", "garage_door")
MIN_AREA_FRACTION = 1e-4  # of the photo: smaller openings keep their outline (a few pixels either way)
MIN_FILL = 0.85  # the opening must fill this share of its quadrilateral (a rectangle ~1.0; an arch ~0.8)
MAX_GROWTH = 1.15  # ...and the quadrilateral may be at most this much larger than the opening


def quadrilateral(component: np.ndarray) -> np.ndarray | None:
    """(4, 2) int32 corners of the convex quadrilateral that outlines a bool blob, or None if it is not one."""
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    perimeter = cv2.arcLength(hull, True)
    for eps in (0.02, 0.035, 0.05):  # the least simplification that leaves four corners
        quad = cv2.approxPolyDP(hull, eps * perimeter, True)
        if len(quad) == 4:
            break
    else:
        return None
    area = float(component.sum())
    quad_area = cv2.contourArea(quad)
    if quad_area <= 0 or area / quad_area < MIN_FILL or quad_area / area > MAX_GROWTH:
        return None
    return quad.reshape(4, 2).astype(np.int32)


def straighten_openings(surfaces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Surfaces with every quadrilateral-shaped window / door / garage door replaced by its quadrilateral. The
    pixels an opening gains are taken from the other surfaces (the wall, mostly): surfaces stay disjoint."""
    out = dict(surfaces)
    shape = next(iter(surfaces.values())).shape
    min_area = max(16, int(MIN_AREA_FRACTION * shape[0] * shape[1]))
    for name in OPENINGS:
        if name not in surfaces:
            continue
        mask = surfaces[name]
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        grown = mask.copy()
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < min_area:
                continue
            x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                     cv2.CC_STAT_HEIGHT))
            quad = quadrilateral(labels[y:y + h, x:x + w] == i)
            if quad is None:
                continue
            filled = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(filled, quad, 1)
            grown[y:y + h, x:x + w] = (grown[y:y + h, x:x + w] & (labels[y:y + h, x:x + w] != i)) | filled.astype(bool)
        out[name] = grown
    # where they grew, openings win over the other surfaces; among themselves, in OPENINGS order
    claimed = np.zeros(shape, bool)
    for name in OPENINGS:
        if name in out:
            out[name] = out[name] & ~claimed
            claimed |= out[name]
    for other in out:
        if other not in OPENINGS:
            out[other] = out[other] & ~claimed
    return out
