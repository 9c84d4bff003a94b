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

The cache, augmentation, loss and training loop live in pipeline/parser_training.py (shared with
`render-appliance parser finetune`); this script is the recipe: which data, how long, where the weights go.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.facade_parser import PAINT_CLASS, save_facade_parser  # noqa: E402
from pipeline.parser_training import (DEFAULT_CLASS_WEIGHTS, Pool, TrainConfig, build_cache,  # noqa: E402
                                      hslu_photos, house_photos, init_model, load_cache, quick_eval, train)
from pipeline.segment import parser_probabilities  # noqa: E402

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()


# -------------------------------------------------------------------------------------------- calibration
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
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    t0 = time.time()
    step = 0

    def checkpoint() -> dict:
        q = quick_eval(model, val, args.eval_side)
        meta = {"steps": step, "seconds": round(time.time() - t0), "args": " ".join(sys.argv[1:]),
                "data": "houses-train (usable) + facades-hslu/train", "init": init_meta, "seed": args.seed,
                "hslu_valid_quick": q}
        save_facade_parser(model, args.out, meta)
        return q

    def on_step(done: int, loss: float, lr: float) -> None:
        nonlocal step
        step = done
        if step % 25 == 0:
            print(f"step {step} loss {loss:.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0:
            q = checkpoint()
            print(f"step {step}: hslu-valid(quick) iou {q['iou']:.3f} leakage {q['leakage']:.3f} -> {args.out}",
                  flush=True)

    # hslu photos were squeezed to squares by their publisher: undo a random aspect ratio
    pools = [Pool(houses, args.houses_share, 0.15), Pool(hslu, 1 - args.houses_share, 0.55)]
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, batch=args.batch, crop=args.crop,
                      class_weights=args.class_weights, leak_weight=args.leak_weight, minutes=args.minutes)
    step = train(model, pools, cfg, rng, on_step=on_step)
    q = checkpoint()
    print(f"done: {step} steps in {time.time() - t0:.0f}s; hslu-valid(quick) iou {q['iou']:.3f} "
          f"leakage {q['leakage']:.3f} -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
