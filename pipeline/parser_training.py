"""Training the house parser: the reusable core of tools/train_facade_parser.py and `render-appliance parser
finetune` (appliance/finetune.py).

    cache_item(ade, photo, mask)          one training item: photo at CACHE_SIDE, label map, ADE20K context
    build_cache / load_cache              a folder of labelled photos cached once (the recipe's data)
    init_model(path)                      a parser from weights (or a new one)
    train(model, pools, steps, ...)       AdamW + warm-up + cosine schedule over random augmented crops
    evaluate(model, items)                wall IoU and "house parts painted" of the real paint mask

Labels are house-index maps (shared data `houses/`: 0 unlabelled, 1 wall ... 10 other) with one addition:
NOT_WALL marks pixels known not to be wall whose class is unknown (a paint mask: white = wall, the rest NOT_WALL).
Those pixels get a binary loss (-log(1 - p_wall)); labelled pixels the class-weighted cross-entropy; both count in
the leakage term (mean wall probability over pixels that are not wall).
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from .facade_parser import ADE_GROUPS, CLASSES, HSLU_TO_HOUSE, PAINT_CLASS, FacadeParser

CACHE_SIDE = 640
IGNORE = 255
NOT_WALL = 254  # label: not wall, class unknown (the unpainted part of a paint mask)
# Output rows of the earlier facades-hslu parser's head that start each house class (continued training).
OLD_CLASSES = ("balcony-fence", "car", "facade", "fence", "non-building-infrastructure", "shop", "street",
               "traffic-infrastructure", "vegetation", "window", "background")
OLD_HEAD_ROWS = {"wall": "facade", "roof": "background", "window": "window", "door": "shop",
                 "garage_door": "background", "trim": "balcony-fence", "sky": "background",
                 "vegetation": "vegetation", "ground": "street", "other": "car"}
DEFAULT_CLASS_WEIGHTS = "roof=2,garage_door=2.5,door=2,trim=1.5,window=1.5"
HOUSE_PARTS = (2, 3, 4, 5, 6)  # label indices of roof, window, door, garage door, trim ("house parts painted")
MIN_PART_PIXELS = 100  # at CACHE_SIDE: a photo with fewer house-part pixels is not scored for "parts painted"

Item = tuple  # (photo uint8 (h, w, 3) at CACHE_SIDE, label uint8 (h, w), ADE20K context float16 (129, 129, N_CTX))


# ----------------------------------------------------------------------------------------------- data
def house_photos(root: Path) -> list[tuple[Path, Path]]:
    """(photo, index mask) of the usable photos of a houses-style folder (images/ or flat, labels/, masks/)."""
    out = []
    for lab in sorted((root / "labels").glob("*.json")):
        meta = json.loads(lab.read_text())
        mask = root / "masks" / (lab.stem + ".png")
        photo = next((p for p in (root / "images" / meta["image"], root / meta["image"]) if p.is_file()), None)
        if meta.get("usable", True) and mask.is_file() and photo is not None:
            out.append((photo, mask))
    return out


def hslu_photos(root: Path, split: str) -> list[tuple[Path, Path]]:
    return [(f, root / split / "masks" / (f.stem + ".png")) for f in sorted((root / split / "images").glob("*.jpg"))]


HSLU_LUT = np.zeros(256, np.uint8)
for _k, _v in HSLU_TO_HOUSE.items():
    HSLU_LUT[_k] = CLASSES.index(_v) + 1


def cache_item(ade, image: np.ndarray, label: np.ndarray) -> Item:
    """uint8 RGB photo + label map of the same size -> a training item. The ADE20K context is computed from the
    full-size photo exactly as pipeline.segment does at run time."""
    ctx = ade.context(image).astype(np.float16)
    s = CACHE_SIDE / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST), ctx)


def build_cache(name: str, files: list[tuple[Path, Path]], hslu: bool, cache_dir: Path, ade_path: Path) -> Path:
    """cache_dir/name.pkl: list of items (see cache_item); made once, reused."""
    from .segment import Ade150

    out = cache_dir / f"{name}.pkl"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    ade = Ade150(ade_path, threads=2)
    items = []
    t0 = time.time()
    for i, (photo, mask_path) in enumerate(files):
        img = cv2.cvtColor(cv2.imread(str(photo), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = np.array(Image.open(mask_path))  # palette / grey index, not colour
        items.append(cache_item(ade, img, HSLU_LUT[mask] if hslu else mask))
        if i % 50 == 0:
            print(f"cache {name}: {i}/{len(files)} {time.time() - t0:.0f}s", flush=True)
    with open(out.with_suffix(".part"), "wb") as f:
        pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
    out.with_suffix(".part").rename(out)
    return out


def load_cache(path: Path) -> list:
    with open(path, "rb") as f:
        return pickle.load(f)


# ------------------------------------------------------------------------------------------ augmentation
def warp_channels(x: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """warpPerspective (M: output pixel -> source pixel) of an (H, W, C) array, 4 channels at a time."""
    x = np.asarray(x, np.float32)
    out = np.empty((size, size, x.shape[-1]), np.float32)
    for i in range(0, x.shape[-1], 4):
        part = cv2.warpPerspective(np.ascontiguousarray(x[..., i:i + 4]), M, (size, size),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        out[..., i:i + 4] = part.reshape(size, size, -1)
    return out


def sample(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, ctx: np.ndarray, crop: int,
           aspect_jitter: float):
    """One random training crop: rgb (crop, crop, 3) float32, ctx (crop/4, crop/4, N_CTX) float32, target
    (crop, crop) uint8 (house index, IGNORE outside the photo)."""
    H, W = image.shape[:2]
    # 35-125 % of the short side for a 256 px crop; a smaller crop covers proportionally less of the photo so
    # that the scale it learns at stays the one the parser runs at (512 px on the long side)
    f = rng.uniform(0.35, 1.25) * min(H, W) * crop / 256
    r = math.exp(rng.uniform(-aspect_jitter, aspect_jitter))  # aspect-ratio distortion of the crop box
    cw, ch = f * math.sqrt(r), f / math.sqrt(r)
    cx = rng.uniform(min(cw / 2, W / 2), max(W - cw / 2, W / 2))
    cy = rng.uniform(min(ch / 2, H / 2), max(H - ch / 2, H / 2))
    src = np.array([[cx - cw / 2, cy - ch / 2], [cx + cw / 2, cy - ch / 2], [cx + cw / 2, cy + ch / 2],
                    [cx - cw / 2, cy + ch / 2]], np.float32)
    src += rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * np.array([cw, ch], np.float32)
    dst = np.array([[0, 0], [crop, 0], [crop, crop], [0, crop]], np.float32)
    if rng.random() < 0.5:
        dst = dst[[1, 0, 3, 2]]
    M = cv2.getPerspectiveTransform(dst, src)  # output pixel -> cache pixel
    flags = cv2.WARP_INVERSE_MAP
    img = cv2.warpPerspective(image, M, (crop, crop), flags=cv2.INTER_LINEAR | flags,
                              borderMode=cv2.BORDER_REFLECT_101)
    lab = cv2.warpPerspective(mask, M, (crop, crop), flags=cv2.INTER_NEAREST | flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
    g = ctx.shape[0]  # the context grid covers the whole photo squeezed to a square
    A = np.array([[g / W, 0, 0.5 * g / W - 0.5], [0, g / H, 0.5 * g / H - 0.5], [0, 0, 1]])  # = cv2.resize
    D = np.array([[4, 0, 1.5], [0, 4, 1.5], [0, 0, 1]])  # 1/4 grid cell -> its centre in output pixels
    c = warp_channels(ctx, A @ M @ D, crop // 4)
    return colour_jitter(rng, img.astype(np.float32) * (1 / 255)), c, lab


def colour_jitter(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 1.5)  # saturation
    x = x * rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    m = x.mean()
    x = m + (x - m) * rng.uniform(0.7, 1.3)  # contrast
    x = x * rng.uniform(0.7, 1.3)  # brightness
    x = np.clip(x, 0, 1) ** rng.uniform(0.75, 1.33)  # gamma
    if rng.random() < 0.1:
        x = np.repeat(x.mean(-1, keepdims=True), 3, -1)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(0.005, 0.03), x.shape).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32)


def parse_class_weights(spec: str) -> np.ndarray:
    """"roof=2,trim=1.5" -> per-class loss weights (len(CLASSES),), 1 for classes not named."""
    cw = np.ones(len(CLASSES), np.float32)
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, value = item.split("=")
        cw[CLASSES.index(name.strip())] = float(value)
    return cw


def targets(lab: np.ndarray, class_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """house index -> class index (index - 1) and per-pixel loss weight (the class's weight; 0 for unlabelled
    pixels, NOT_WALL pixels and outside the photo)."""
    cls = lab.astype(np.int64) - 1
    known = (lab > 0) & (lab < NOT_WALL)
    cls[~known] = 0
    w = np.where(known, class_weights[np.clip(cls, 0, len(CLASSES) - 1)], 0).astype(np.float32)
    return cls, w


# ------------------------------------------------------------------------------------------------- model
def init_model(path: Path | None, widths: str = "16,32,64,96,128", ctx_width: int = 48
               ) -> tuple[FacadeParser, dict | None]:
    """New model, or weights from `path` (house classes, or the earlier facades-hslu classes mapped over)."""
    if path is None:
        return FacadeParser(tuple(int(w) for w in widths.split(",")), ctx_width), None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("ade_groups") != list(ADE_GROUPS):
        raise ValueError(f"{path}: weights made for other ADE20K input groups")
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    if ckpt.get("classes") == list(OLD_CLASSES):
        rows = [OLD_CLASSES.index(OLD_HEAD_ROWS[c]) for c in CLASSES]
        state["head.weight"] = state["head.weight"][rows].clone()
        state["head.bias"] = state["head.bias"][rows].clone()
    elif ckpt.get("classes") != list(CLASSES):
        raise ValueError(f"{path}: weights made for unknown classes {ckpt.get('classes')}")
    model = FacadeParser(tuple(ckpt["widths"]), ckpt["ctx_width"])
    model.load_state_dict(state)
    return model, ckpt.get("meta")


# -------------------------------------------------------------------------------------------------- train
@dataclass
class Pool:
    """Training items drawn for `share` of each batch, with this much crop aspect-ratio jitter."""

    items: Sequence[Item]
    share: float
    aspect_jitter: float = 0.15


@dataclass
class TrainConfig:
    steps: int
    lr: float = 2e-3
    warmup: int = 50
    batch: int = 8
    crop: int = 256
    class_weights: str = DEFAULT_CLASS_WEIGHTS
    leak_weight: float = 0.3
    minutes: float = 0.0  # time budget; 0 = none. The schedule follows whichever of steps / minutes ends first
    # keep the batch-norm statistics of the weights we start from: a few small batches of a handful of photos
    # would otherwise replace statistics gathered over thousands of crops (fine-tuning)
    freeze_norm: bool = False


StepFn = Callable[[int, float, float], None]  # (step, smoothed loss, learning rate)


def train(model: FacadeParser, pools: Sequence[Pool], cfg: TrainConfig, rng: np.random.Generator, *,
          device: str = "cpu", on_step: StepFn | None = None) -> int:
    """Trains `model` in place (left in train mode, on `device`); returns the steps run. Each crop comes from
    pools[0] with probability pools[0].share, else from pools[1] (one pool: always pools[0])."""
    model.to(device).train()
    if cfg.freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    class_weights = parse_class_weights(cfg.class_weights)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    warmup = max(1, cfg.warmup)
    t0 = time.time()
    budget = cfg.minutes * 60
    step = 0
    ema = None
    while True:
        progress = step / cfg.steps
        if budget:
            progress = max(progress, (time.time() - t0) / budget)
        if progress >= 1.0:
            break
        lr = cfg.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        xs, cs, ys = [], [], []
        for _ in range(cfg.batch):
            pool = pools[0] if rng.random() < pools[0].share or len(pools) == 1 else pools[1]
            img, mask, ctx = pool.items[rng.integers(len(pool.items))]
            x, c, lab = sample(rng, img, mask, ctx, cfg.crop, pool.aspect_jitter)
            xs.append(x.transpose(2, 0, 1))
            cs.append(c.transpose(2, 0, 1))
            ys.append(lab)
        x = torch.from_numpy(np.stack(xs)).to(device)
        c = torch.from_numpy(np.stack(cs)).to(device)
        loss = batch_loss(model(x, c), np.stack(ys), class_weights, cfg.leak_weight, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if on_step is not None:
            on_step(step, ema, lr)
    return step


def batch_loss(logits: torch.Tensor, labels: np.ndarray, class_weights: np.ndarray, leak_weight: float,
               device: str = "cpu") -> torch.Tensor:
    """Class-weighted cross-entropy over labelled pixels, -log(1 - p_wall) over NOT_WALL pixels, plus
    leak_weight x the mean wall probability over every pixel known not to be wall."""
    cls, w = targets(labels, class_weights)
    y = torch.from_numpy(cls).to(device)
    w = torch.from_numpy(w).to(device)
    not_wall = torch.from_numpy(labels == NOT_WALL).to(device)
    ce = F.cross_entropy(logits, y, reduction="none") * w
    log_p = torch.log_softmax(logits, 1)
    p_wall = log_p[:, PAINT_CLASS].exp()
    binary = -torch.log1p(-p_wall.clamp(max=1 - 1e-6)) * not_wall  # the wall class is wrong here, whatever it is
    n = w.sum() + not_wall.sum()
    loss = (ce.sum() + binary.sum()) / n.clamp_min(1)
    if leak_weight:
        dnp = (((y != PAINT_CLASS) & (w > 0)) | not_wall).float()
        loss = loss + leak_weight * (p_wall * dnp).sum() / dnp.sum().clamp_min(1)
    return loss


# -------------------------------------------------------------------------------------------- evaluation
def quick_eval(model: FacadeParser, items: list, side: int) -> dict[str, float]:
    """Wall IoU / leakage (labelled non-wall pixels painted) on cached photos: progress figures only."""
    from .segment import parser_probabilities

    model.eval()
    inter = union = leak = nonpaint = 0
    for img, mask, ctx in items:
        prob = parser_probabilities(model, img, np.asarray(ctx, np.float32), side)[..., PAINT_CLASS]
        pred = cv2.resize(prob, mask.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5
        lab = mask > 0
        wall = mask == PAINT_CLASS + 1
        inter += np.sum(pred & wall)
        union += np.sum((pred | wall) & lab)
        leak += np.sum(pred & lab & ~wall)
        nonpaint += np.sum(lab & ~wall)
    model.train()
    return {"iou": float(inter / max(union, 1)), "leakage": float(leak / max(nonpaint, 1))}


class _CachedContext:
    """Segmenter protocol over one cached item: the parser with the item's stored ADE20K context."""

    def __init__(self, model: FacadeParser, ctx: np.ndarray, side: int):
        self.model, self.ctx, self.side = model, np.asarray(ctx, np.float32), side

    def surface_probabilities(self, image: np.ndarray) -> np.ndarray:
        from .segment import _SURFACE_IDX, guided_upsample, parser_probabilities

        return guided_upsample(parser_probabilities(self.model, image, self.ctx, self.side)[..., _SURFACE_IDX],
                               image)


def evaluate(model: FacadeParser, items: Sequence[Item], side: int = 512) -> dict[str, float]:
    """The figures bench.quality reports, on cached items (at CACHE_SIDE) and through the run-time paint mask
    (pipeline.segment.segment_surfaces): wall IoU pooled over known pixels, and "parts painted": per photo the
    share of house-part pixels (labels 2-6; for a paint-mask item, its NOT_WALL pixels) inside the paint mask,
    averaged over the photos that show at least MIN_PART_PIXELS of them."""
    from .segment import segment_surfaces

    model.to("cpu").eval()
    inter = union = 0
    shares = []
    for img, label, ctx in items:
        paint = segment_surfaces(img, _CachedContext(model, ctx, side)).paint
        wall = label == PAINT_CLASS + 1
        known = (label > 0) & (label != IGNORE)
        inter += int(np.sum(paint & wall))
        union += int(np.sum((paint | wall) & known))
        parts = np.isin(label, HOUSE_PARTS) | (label == NOT_WALL)
        if parts.sum() >= MIN_PART_PIXELS:
            shares.append(float(paint[parts].mean()))
    return {"wall_iou": inter / max(union, 1), "parts_painted": float(np.mean(shares)) if shares else 0.0,
            "n": len(items)}
