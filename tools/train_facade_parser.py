"""Train the house parser (pipeline/facade_parser.py) on houses-train + facades-hslu/train.

The parser is a small UNet (0.96 M parameters) over the photo; at 1/4 resolution it also gets the ADE20K context
of ade20k-deeplab150 (its last decoder features, 256 channels, and its class probabilities summed into groups),
and predicts the house classes (`CLASSES`: wall, roof, window, door, garage_door, trim, sky, vegetation, ground,
other). Unlabelled pixels are left out of the loss.

Training data (`--houses`, `--hslu`):
- shared data `houses-train/` (US listing photos with polygon labels, the usable ones; a research benchmark:
  citation requested, no licence stated). The only source of roofs, garage doors, entry doors and trim; drawn
  for half of every batch (`--houses-share`).
- `facades-hslu/train` (Lucerne street photos, CC BY 4.0), its classes mapped by
  `pipeline.facade_parser.HSLU_TO_HOUSE` (facade -> wall, window and shop -> window, balcony-fence -> trim,
  street -> ground, vegetation, the rest -> other; its unlabelled sky and roofs stay unlabelled).
Never used: shared `houses/` (the validation set; scored by `bench/quality.py --split houses`) and
`facades-cmp` (evaluation only). `facades-hslu/valid` gives the progress figures printed during training.

Steps:
1. cache: every photo at 640 px on its long side (aspect kept) with its house-index mask, plus the ADE20K
   context (129x129, float16) computed from the full-size photo exactly as pipeline.segment does at run time
   (cache folder, default /tmp/house_parser_cache_v1, about 6 GB; made once in ~2 min, reused).
2. train: random square crops of 35-125 % of the photo's short side (outside the photo: ignored), small aspect
   and perspective jitter, horizontal flips, colour jitter, 256x256, batch 8, AdamW + cosine learning rate over
   the step or time budget (whichever ends first), class-weighted cross-entropy plus a leakage term (the mean
   wall probability over labelled non-wall pixels). The weights (half precision, ~2 MB) are written to --out
   every --eval-every steps and at the end, so a usable model always exists.
   `--init` starts from existing weights. Weights of the earlier facades-hslu-only parser (other classes) are
   accepted: their output rows are mapped onto the house classes (`OLD_HEAD_ROWS`), the rest is kept.

The shipped weights (pipeline/models/weights/facade_parser.pt) were made on the shared 2-core CPU, continued
from the earlier facades-hslu-only parser (git history: pipeline/models/weights/facade_parser.pt before the
house taxonomy; see that commit's docstring for its three runs):

    git show 65753ff:pipeline/models/weights/facade_parser.pt > /tmp/fp_hslu.pt
    nice -n 5 .venv/bin/python tools/train_facade_parser.py --init /tmp/fp_hslu.pt --minutes 40 --steps 2400 \\
        --lr 2e-3 --warmup 30 --eval-every 300 --seed 3 --out /tmp/hp_run1.pt

The time budget ended first: 1114 steps in 45 min on the shared CPU (other work running beside it), so a repeat
elsewhere runs a different number of steps. No calibration was applied to the shipped file (`--calibrate` is
there for a later run: it sweeps the wall threshold on training photos only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.facade_parser import (ADE_GROUPS, CLASSES, HSLU_TO_HOUSE, PAINT_CLASS, FacadeParser,  # noqa: E402
                                    save_facade_parser)
from pipeline.segment import Ade150, parser_probabilities  # noqa: E402

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
CACHE_SIDE = 640
IGNORE = 255
# Output rows of the earlier facades-hslu parser's head that start each house class (continued training).
OLD_CLASSES = ("balcony-fence", "car", "facade", "fence", "non-building-infrastructure", "shop", "street",
               "traffic-infrastructure", "vegetation", "window", "background")
OLD_HEAD_ROWS = {"wall": "facade", "roof": "background", "window": "window", "door": "shop",
                 "garage_door": "background", "trim": "balcony-fence", "sky": "background",
                 "vegetation": "vegetation", "ground": "street", "other": "car"}
DEFAULT_CLASS_WEIGHTS = "roof=2,garage_door=2.5,door=2,trim=1.5,window=1.5"


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


_HSLU_LUT = np.zeros(256, np.uint8)
for _k, _v in HSLU_TO_HOUSE.items():
    _HSLU_LUT[_k] = CLASSES.index(_v) + 1


def build_cache(name: str, files: list[tuple[Path, Path]], hslu: bool, cache_dir: Path, ade_path: Path) -> Path:
    """cache_dir/name.pkl: list of (photo at 640 px long side, house-index mask, ADE20K context float16)."""
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
        if hslu:
            mask = _HSLU_LUT[mask]
        ctx = ade.context(img).astype(np.float16)
        s = CACHE_SIDE / max(img.shape[:2])
        size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
        items.append((cv2.resize(img, size, interpolation=cv2.INTER_AREA),
                      cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), ctx))
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
    f = rng.uniform(0.35, 1.25) * min(H, W)
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
    pixels and outside the photo)."""
    cls = lab.astype(np.int64) - 1
    known = (lab > 0) & (lab != IGNORE)
    cls[~known] = 0
    w = np.where(known, class_weights[np.clip(cls, 0, len(CLASSES) - 1)], 0).astype(np.float32)
    return cls, w


# ------------------------------------------------------------------------------------------------- model
def init_model(path: Path | None, widths: str, ctx_width: int) -> tuple[FacadeParser, dict | None]:
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


# -------------------------------------------------------------------------------------------- evaluation
def quick_eval(model: FacadeParser, items: list, side: int) -> dict[str, float]:
    """Wall IoU / leakage (labelled non-wall pixels painted) on cached photos: progress figures only."""
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


def calibrate(weights: Path, items: list, side: int, out: Path) -> float:
    """Shifts the wall logit's bias so that "wall probability > 0.5" (what pipeline.segment applies) falls at the
    threshold that maximises wall IoU - leakage on `items` (training photos: never the validation set).
    Returns the threshold chosen."""
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    model, _ = init_model(weights, "", 0)
    model.eval()
    thresholds = np.round(np.arange(0.2, 0.71, 0.05), 2)
    stats = np.zeros((len(thresholds), 4))  # inter, union, leak, nonpaint
    for img, mask, ctx in items:
        prob = parser_probabilities(model, img, np.asarray(ctx, np.float32), side)[..., PAINT_CLASS]
        prob = cv2.resize(prob, mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
        lab, wall = mask > 0, mask == PAINT_CLASS + 1
        for k, t in enumerate(thresholds):
            pred = prob > t
            stats[k] += (np.sum(pred & wall), np.sum((pred | wall) & lab), np.sum(pred & lab & ~wall),
                         np.sum(lab & ~wall))
    iou, leak = stats[:, 0] / stats[:, 1], stats[:, 2] / stats[:, 3]
    for t, i, lk in zip(thresholds, iou, leak):
        print(f"threshold {t:.2f}: iou {i:.3f} leakage {lk:.3f} iou-leakage {i - lk:.3f}")
    best = float(thresholds[int(np.argmax(iou - leak))])
    shift = math.log((1 - best) / best)
    bias = ckpt["state_dict"]["head.bias"]
    bias[PAINT_CLASS] = (bias[PAINT_CLASS].float() + shift).half()
    ckpt["meta"]["calibration"] = (f"head.bias[wall] += log((1 - {best}) / {best}) = {shift:.4f}: threshold "
                                   f"{best} maximised iou - leakage on {len(items)} training photos")
    torch.save(ckpt, out)
    print(f"calibrated at {best} -> {out}")
    return best


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--houses", type=Path, default=SHARED / "data" / "houses-train")
    ap.add_argument("--hslu", type=Path, default=SHARED / "data" / "facades-hslu")
    ap.add_argument("--ade", type=Path, default=SHARED / "models" /
                    "lite-model_deeplabv3-mobilenetv2-ade20k_1_default_1.tflite")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/house_parser_cache_v1"))
    ap.add_argument("--out", type=Path, default=ROOT / "pipeline" / "models" / "weights" / "facade_parser.pt")
    ap.add_argument("--steps", type=int, default=2000, help="optimizer steps (cosine schedule length)")
    ap.add_argument("--minutes", type=float, default=0.0, help="time budget; 0 = none. The schedule follows "
                    "whichever of steps / minutes runs out first")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--widths", type=str, default="16,32,64,96,128")
    ap.add_argument("--ctx-width", type=int, default=48)
    ap.add_argument("--houses-share", type=float, default=0.5, help="share of each batch from houses-train")
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--eval-side", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None, help="continue from these weights (their widths are "
                    "used; --widths / --ctx-width are ignored)")
    ap.add_argument("--warmup", type=int, default=50, help="linear learning-rate warm-up steps")
    ap.add_argument("--class-weights", type=str, default=DEFAULT_CLASS_WEIGHTS,
                    help=f'per-class cross-entropy weights (default "{DEFAULT_CLASS_WEIGHTS}")')
    ap.add_argument("--leak-weight", type=float, default=0.3,
                    help="weight of the leakage term: mean wall probability over labelled non-wall pixels")
    ap.add_argument("--cache-only", action="store_true")
    ap.add_argument("--calibrate", type=Path, default=None, metavar="WEIGHTS",
                    help="no training: calibrate WEIGHTS' wall threshold on houses-train + every 17th "
                    "facades-hslu/train photo and write the result to --out")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    houses = load_cache(build_cache("houses-train", house_photos(args.houses), False, args.cache, args.ade))
    hslu = load_cache(build_cache("hslu-train", hslu_photos(args.hslu, "train"), True, args.cache, args.ade))
    val = load_cache(build_cache("hslu-valid", hslu_photos(args.hslu, "valid"), True, args.cache, args.ade))
    if args.cache_only:
        return 0
    if args.calibrate:
        calibrate(args.calibrate, houses + hslu[::17], args.eval_side, args.out)
        return 0
    print(f"train: houses {len(houses)} photos, hslu {len(hslu)}; progress figures on hslu-valid", flush=True)
    val = val[::4]

    model, init_meta = init_model(args.init, args.widths, args.ctx_width)
    model.train()
    class_weights = parse_class_weights(args.class_weights)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = max(1, args.warmup)
    t0 = time.time()
    budget = args.minutes * 60
    step = 0
    ema = None

    def checkpoint() -> dict:
        q = quick_eval(model, val, args.eval_side)
        meta = {"steps": step, "seconds": round(time.time() - t0), "args": " ".join(sys.argv[1:]),
                "data": "houses-train (usable) + facades-hslu/train", "init": init_meta, "seed": args.seed,
                "hslu_valid_quick": q}
        save_facade_parser(model, args.out, meta)
        return q

    while True:
        progress = step / args.steps
        if budget:
            progress = max(progress, (time.time() - t0) / budget)
        if progress >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        xs, cs, ys, ws = [], [], [], []
        for _ in range(args.batch):
            from_houses = rng.random() < args.houses_share
            pool = houses if from_houses else hslu
            img, mask, ctx = pool[rng.integers(len(pool))]
            # hslu photos were squeezed to squares by their publisher: undo a random aspect ratio
            x, c, lab = sample(rng, img, mask, ctx, args.crop, 0.15 if from_houses else 0.55)
            cls, w = targets(lab, class_weights)
            xs.append(x.transpose(2, 0, 1))
            cs.append(c.transpose(2, 0, 1))
            ys.append(cls)
            ws.append(w)
        x = torch.from_numpy(np.stack(xs))
        c = torch.from_numpy(np.stack(cs))
        y = torch.from_numpy(np.stack(ys))
        w = torch.from_numpy(np.stack(ws))
        logits = model(x, c)
        loss = (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1)
        if args.leak_weight:
            # labelled non-wall pixels (scored as leakage / "house parts painted"): penalise their wall probability
            dnp = ((y != PAINT_CLASS) & (w > 0)).float()
            p_wall = torch.softmax(logits, 1)[:, PAINT_CLASS]
            loss = loss + args.leak_weight * (p_wall * dnp).sum() / dnp.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {ema:.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0:
            q = checkpoint()
            print(f"step {step}: hslu-valid(quick) iou {q['iou']:.3f} leakage {q['leakage']:.3f} -> {args.out}",
                  flush=True)
    q = checkpoint()
    print(f"done: {step} steps in {time.time() - t0:.0f}s; hslu-valid(quick) iou {q['iou']:.3f} "
          f"leakage {q['leakage']:.3f} -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
