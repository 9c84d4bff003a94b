"""Segment stage, embedded CPU model set: photo -> paint mask of the wall, plus the other house parts.

Two models, both loaded once:
1. ade20k-deeplab150 (TFLite, DeepLabV3+ MobileNetV2, ADE20K-150) runs on the whole photo squeezed to
   513x513. Its graph is changed at load time (in memory) to output its last decoder features (129x129x256)
   and the 129x129 class logits; the class probabilities are summed into a few groups
   (pipeline.facade_parser.ADE_GROUPS: building, sky, vegetation, ground, vehicle, window, door, ...).
2. facade-parser (the house parser, a small UNet, pipeline/facade_parser.py) gets the photo at `side` px on its
   long side (aspect ratio kept) plus features + groups resized to its 1/4 grid, and predicts wall / roof /
   window / door / garage door / trim / sky / vegetation / ground / other. The paint probability is its "wall"
   class.

Edges: the parser's probabilities are brought to the photo's full resolution by a guided filter (He et al.,
"Guided Image Filtering", the fast variant: coefficients fitted at the parser's size, applied at full size) with
the photo as the guide, so the mask edges snap to the photo's edges instead of being a bilinear blur.

`segment_surfaces()` thresholds the wall probability (paint mask, cleaned of specks and pinholes sized
relative to the photo), gives every other house part the pixels where it is the most likely class, and
straightens quadrilateral windows and doors (pipeline/openings.py); `segment()` returns the paint probability's
mask only, without that step (what a wall-only segmenter gives).
"""

from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass, field

import cv2
import numpy as np

from .facade_parser import (CLASSES, N_FEAT, SURFACES, FacadeParser, ade_groups, load_facade_parser,
                            parse)
from .models import require
from .openings import straighten_openings

ADE_SIDE = 513
DEFAULT_SIDE = 512  # long side the facade parser runs at
_SURFACE_IDX = [CLASSES.index(s) for s in SURFACES]
_WALL = SURFACES.index("wall")
# Guided filter: window radius in pixels at the parser's working size (2 px at 512 px = 4 px on a 1024 px photo)
# and the regulariser (larger = smoother, closer to the bilinear result; in units of the [0, 1] guide's variance).
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3


def _features_and_logits_model(model_bytes: bytes) -> bytes:
    """The ade20k-deeplab150 flatbuffer, changed to output its last decoder features (129x129x256) and the
    129x129x151 logits instead of the logits bilinearly resized to 513x513x151 (159 MB per call, and the two
    resize ops cost time)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    sg = model.subgraphs[0]
    producer = {int(t): op for op in sg.operators for t in op.outputs}

    def code(op) -> int:
        c = model.operatorCodes[op.opcodeIndex]
        return max(c.builtinCode, c.deprecatedBuiltinCode)

    dropped = set()
    logits = int(sg.outputs[0])
    while code(producer[logits]) == schema.BuiltinOperator.RESIZE_BILINEAR:
        dropped.add(id(producer[logits]))
        logits = int(producer[logits].inputs[0])
    features = int(producer[logits].inputs[0])
    if (list(sg.tensors[logits].shape) != [1, 129, 129, 151]
            or list(sg.tensors[features].shape) != [1, 129, 129, N_FEAT]):
        raise ValueError("ade20k-deeplab150: unexpected graph (decoder features / logits not found)")
    sg.operators = [op for op in sg.operators if id(op) not in dropped]
    sg.outputs = np.array([features, logits], np.int32)
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class Ade150:
    """ade20k-deeplab150 on the whole photo (squeezed to 513x513): decoder features + class logits, 129x129."""

    def __init__(self, path: Path | str, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        content = _features_and_logits_model(Path(path).read_bytes())
        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._feat, self._logits = (d["index"] for d in self.interpreter.get_output_details())

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (H, W, 3) -> (features (129, 129, 256), logits (129, 129, 151)), float32."""
        interp = cv2.INTER_AREA if min(image.shape[:2]) > ADE_SIDE else cv2.INTER_LINEAR
        x = cv2.resize(image, (ADE_SIDE, ADE_SIDE), interpolation=interp).astype(np.float32)
        x = x * (1 / 127.5) - 1.0
        self.interpreter.set_tensor(self._in, x[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._feat)[0], self.interpreter.get_tensor(self._logits)[0]

    def context(self, image: np.ndarray) -> np.ndarray:
        """-> (129, 129, N_CTX) float32: decoder features then grouped class probabilities."""
        feat, logits = self.run(image)
        return np.concatenate([feat, ade_groups(logits)], -1)

    def groups(self, image: np.ndarray) -> np.ndarray:
        """-> (129, 129, N_ADE) float32 grouped class probabilities."""
        return ade_groups(self.run(image)[1])


def parser_input_size(h: int, w: int, side: int = DEFAULT_SIDE) -> tuple[int, int]:
    """(height, width) the parser runs at: long side = `side`, aspect ratio kept up to rounding to
    multiples of 16."""
    s = side / max(h, w)
    return max(16, 16 * round(h * s / 16)), max(16, 16 * round(w * s / 16))


def parser_probabilities(model: FacadeParser, image: np.ndarray, context: np.ndarray,
                         side: int = DEFAULT_SIDE) -> np.ndarray:
    """Class probabilities (h, w, n_classes) at the parser's working size (see parser_input_size).
    `context`: Ade150.context(image)."""
    h, w = parser_input_size(*image.shape[:2], side)
    interp = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_LINEAR
    rgb = cv2.resize(image, (w, h), interpolation=interp).astype(np.float32) * (1 / 255)
    ctx = resize_channels(context, h // 4, w // 4)
    return parse(model, rgb, ctx)


def resize_channels(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) float32 array with any number of channels (OpenCV takes at most 4 at a
    time reliably)."""
    x = x.astype(np.float32, copy=False)
    out = np.empty((h, w, x.shape[-1]), np.float32)
    for i in range(0, x.shape[-1], 4):
        part = cv2.resize(np.ascontiguousarray(x[..., i:i + 4]), (w, h), interpolation=cv2.INTER_LINEAR)
        out[..., i:i + 4] = part.reshape(h, w, -1)
    return out


class EmbeddedSegmenter:
    """Segmenter protocol implementation of the embedded CPU model set (ADE20K-150 + facade parser).

    `threads` goes to the TFLite interpreter; torch's thread count is left to the caller (torch.set_num_threads).
    """

    def __init__(self, model_dir: Path | str, threads: int = 2, side: int = DEFAULT_SIDE,
                 parser_weights: Path | str | None = None):
        self.ade = Ade150(require(model_dir, "ade20k-deeplab150"), threads)
        # parser_weights: another weights file than the installed one (benchmarks of a training run)
        self.parser = load_facade_parser(parser_weights or require(model_dir, "facade-parser"))
        self.side = side
        self.name = "embedded:ade20k-deeplab150+facade-parser"

    def load_parser(self, weights: Path | str) -> None:
        """Swap in other house parser weights (a worker between jobs, after a fine-tune or a rollback). The new
        model is loaded completely before it replaces the old one."""
        self.parser = load_facade_parser(weights)

    def class_probabilities(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) -> (h, w, len(CLASSES)) float32 at the parser's working size."""
        image = _as_rgb(image)
        return parser_probabilities(self.parser, image, self.ade.context(image), self.side)

    def surface_probabilities(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) -> float32 (H, W, len(SURFACES)) probabilities, channels in SURFACES order, at
        the photo's size, upsampled edge-aware (guided by the photo)."""
        image = _as_rgb(image)
        return guided_upsample(self.class_probabilities(image)[..., _SURFACE_IDX], image)

    def paint_probability(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.surface_probabilities(image)[..., _WALL])


def guided_upsample(probs: np.ndarray, image: np.ndarray, radius: int = GUIDE_RADIUS,
                    eps: float = GUIDE_EPS) -> np.ndarray:
    """Fast guided filter: (h, w, C) probabilities at low resolution -> (H, W, C) at the photo's size.

    Per channel, q = a * I + b with (a, b) fitted over (2 radius + 1)^2 windows of the photo's luminance I at
    the low resolution, then bilinearly upsampled and applied to the full-resolution I: inside a window the
    probability follows the photo's own edges. Clipped to [0, 1]."""
    H, W = image.shape[:2]
    h, w = probs.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1 / 255)
    small = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA if h < H else cv2.INTER_LINEAR)
    k = (2 * radius + 1, 2 * radius + 1)
    p = np.ascontiguousarray(probs, np.float32)
    box = lambda x: cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mean_i = box(small)[..., None]
    mean_p = _channels(box(p), p.shape[-1])
    cov_ip = _channels(box(p * small[..., None]), p.shape[-1]) - mean_i * mean_p
    var_i = box(small * small)[..., None] - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    ab = np.concatenate([_channels(box(a), p.shape[-1]), _channels(box(b), p.shape[-1])], -1)
    ab = resize_channels(ab, H, W)
    c = p.shape[-1]
    return np.clip(ab[..., :c] * grey[..., None] + ab[..., c:], 0.0, 1.0)


def _channels(x: np.ndarray, c: int) -> np.ndarray:
    """OpenCV drops the channel axis of single-channel results: put it back."""
    return x.reshape(x.shape[0], x.shape[1], c)


class AdeOnlySegmenter:
    """Baseline: ADE20K-150 alone, paint = wall + building + house groups (no windows/doors removed)."""

    def __init__(self, model_dir: Path | str, threads: int = 2):
        self.ade = Ade150(require(model_dir, "ade20k-deeplab150"), threads)
        self.name = "baseline:ade20k-deeplab150"

    def paint_probability(self, image: np.ndarray) -> np.ndarray:
        image = _as_rgb(image)
        H, W = image.shape[:2]
        g = self.ade.groups(image)
        prob = g[..., 0] + g[..., 1]  # wall + building (incl. house, skyscraper)
        return np.clip(cv2.resize(prob, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1).astype(np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def clean_mask(mask: np.ndarray, min_fraction: float = 2e-4) -> np.ndarray:
    """Drops painted specks and fills unpainted pinholes smaller than `min_fraction` of the image area
    (2e-4 = 210 px on a 1024x1024 photo, about 14x14 px: smaller than a distant window)."""
    mask = np.asarray(mask, bool)
    min_area = max(4, int(round(min_fraction * mask.size)))
    out = mask.copy()
    for value in (True, False):  # True: remove small painted blobs; False: fill small holes
        src = (out == value).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(src, connectivity=8)
        small = stats[:, cv2.CC_STAT_AREA] < min_area
        small[0] = False  # label 0 is the other value
        if small.any():
            out[small[lab]] = not value
    return out


@dataclass
class Segmentation:
    """The segment stage's result: the paint mask and a bool mask per house part (`SURFACES`; with a segmenter
    that only knows the wall, just "wall"). Surfaces never overlap; "wall" is the paint mask."""

    paint: np.ndarray
    surfaces: dict[str, np.ndarray] = field(default_factory=dict)


def segment_surfaces(image: np.ndarray, segmenter, threshold: float = 0.5) -> Segmentation:
    """Paint mask = wall probability > threshold, cleaned; every other surface gets the pixels outside the paint
    mask where it is the most likely class (and more likely than "none of the house parts")."""
    if not hasattr(segmenter, "surface_probabilities"):
        paint = segment(image, segmenter, threshold)
        return Segmentation(paint, {"wall": paint})
    probs = segmenter.surface_probabilities(image)  # (H, W, len(SURFACES))
    paint = clean_mask(probs[..., _WALL] > threshold)
    rest = np.clip(1.0 - probs.sum(-1), 0.0, 1.0)  # sky, vegetation, ground, other
    best = np.argmax(np.concatenate([probs, rest[..., None]], -1), -1)
    surfaces = {"wall": paint}
    for i, name in enumerate(SURFACES):
        if name != "wall":
            surfaces[name] = (best == i) & ~paint
    surfaces = straighten_openings(surfaces)
    return Segmentation(surfaces["wall"], surfaces)


def segment(image: np.ndarray, segmenter, threshold: float = 0.5) -> np.ndarray:
    """Paint mask (bool, H x W) of `image` (uint8 RGB): the segmenter's probability > threshold, cleaned."""
    prob = segmenter.paint_probability(image)
    return clean_mask(prob > threshold)
