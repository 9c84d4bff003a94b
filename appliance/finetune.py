"""`render-appliance parser finetune`: the house parser trained further on the studio's own corrected photos.

1. The examples (appliance/learning.py) are split, seeded: VAL_SHARE of them (at least MIN_VAL) are held back.
2. Each becomes a training item (pipeline.parser_training.cache_item: photo at 640 px, label, ADE20K context):
   a per-class map where the example has one, else its paint mask (white = wall, the rest "not wall").
3. Training starts from the weights in use, on the held-in examples plus, when `[learning] recipe_data_dir`
   names the shipped recipe's data (houses-train/, facades-hslu/), that data for half of every batch (so the
   model keeps what it knew). Steps = epochs x held-in examples / (batch x studio share). Batch-norm
   statistics stay those of the weights we start from. CUDA when the machine has it (and not force_cpu).
4. Both models are scored on the held-back examples the way bench.quality scores (the run-time paint mask):
   wall IoU and "house parts painted". The new weights are installed only if neither figure is worse;
   otherwise (or with --dry-run) the weights in use stay, and the run says why. Every run lands in runs.json.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .learning import StudioData, shipped_weights

MIN_EXAMPLES = 5
VAL_SHARE = 0.2
MIN_VAL = 2
DEFAULT_EPOCHS = 20
STUDIO_SHARE_WITH_RECIPE = 0.5


@dataclass
class FinetuneConfig:
    epochs: int = DEFAULT_EPOCHS
    lr: float = 1e-3
    batch: int = 4
    crop: int = 128  # at the parser's run-time scale (pipeline.parser_training.sample): 4x cheaper than 256
    class_weights: str = ""  # plain cross-entropy: a studio's examples are mostly paint masks
    leak_weight: float = 0.1
    val_share: float = VAL_SHARE
    seed: int = 0
    dry_run: bool = False
    recipe_dir: Path | None = None
    device: str | None = None  # None: cuda when available (and not force_cpu), else cpu
    threads: int = 2


@dataclass
class FinetuneReport:
    installed: bool
    accepted: bool  # the fine-tuned model is no worse on either figure (installed unless a dry run)
    reason: str
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def split(ids: list[str], seed: int, val_share: float = VAL_SHARE) -> tuple[list[str], list[str]]:
    """(train, held back): a seeded shuffle, val_share of the examples (at least MIN_VAL) held back."""
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n_val = max(MIN_VAL, round(val_share * len(ids)))
    return order[n_val:], order[:n_val]


def example_item(ade, example) -> tuple:
    """An example as a training item: its per-class map, else its paint mask as wall / NOT_WALL."""
    import cv2
    from PIL import Image

    from pipeline.images import load_photo
    from pipeline.parser_training import NOT_WALL, cache_item

    photo = load_photo(example.photo, min_side=16)  # any photo a job rendered (or a labelled import) will do
    if example.classes is not None:
        label = np.array(Image.open(example.classes))
    else:
        paint = np.array(Image.open(example.mask).convert("L")) > 127
        label = np.where(paint, 1, NOT_WALL).astype(np.uint8)
    if label.shape != photo.shape[:2]:  # a mask made on the photo before EXIF rotation: keep it usable
        label = cv2.resize(label, photo.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    return cache_item(ade, photo, label)


def recipe_items(recipe_dir: Path, cache_dir: Path, ade_path: Path, log: Callable[[str], None]) -> list:
    """The shipped recipe's training data found under recipe_dir (cached once in cache_dir)."""
    from pipeline.parser_training import build_cache, hslu_photos, house_photos, load_cache

    items = []
    if (recipe_dir / "houses-train" / "labels").is_dir():
        items += load_cache(build_cache("houses-train", house_photos(recipe_dir / "houses-train"), False,
                                        cache_dir, ade_path))
    if (recipe_dir / "facades-hslu" / "train" / "images").is_dir():
        items += load_cache(build_cache("hslu-train", hslu_photos(recipe_dir / "facades-hslu", "train"), True,
                                        cache_dir, ade_path))
    log(f"recipe data: {len(items)} photos from {recipe_dir}")
    return items


def choose_device(settings: Any, wanted: str | None) -> str:
    import torch

    if wanted:
        return wanted
    if getattr(settings, "force_cpu", False) or getattr(settings, "worker_device", None) == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_finetune(settings: Any, cfg: FinetuneConfig, log: Callable[[str], None] = print) -> FinetuneReport:
    """One fine-tune run (holds the studio's fine-tune lock). Raises RuntimeError when another run holds it."""
    studio = StudioData(settings.data_dir)
    lock = studio.lock()
    if lock is None:
        raise RuntimeError("a fine-tune is already running")
    try:
        return _run(settings, cfg, studio, log)
    except Exception as exc:
        studio.set_progress(phase="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        lock.close()


def _run(settings: Any, cfg: FinetuneConfig, studio: StudioData, log: Callable[[str], None]) -> FinetuneReport:
    import torch

    from pipeline.models import require
    from pipeline.parser_training import Pool, TrainConfig, evaluate, init_model, train
    from pipeline.facade_parser import save_facade_parser
    from pipeline.segment import Ade150

    started = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    examples = {e.id: e for e in studio.examples()}
    record: dict[str, Any] = {"started_at": started, "examples": len(examples), "epochs": cfg.epochs,
                              "dry_run": cfg.dry_run}
    if len(examples) < MIN_EXAMPLES:
        reason = f"too few examples: {len(examples)} (a fine-tune needs at least {MIN_EXAMPLES})"
        return _done(studio, record, FinetuneReport(False, False, reason), log)
    train_ids, val_ids = split(sorted(examples), cfg.seed, cfg.val_share)
    studio.set_progress(phase="preparing", step=0, steps=0, examples=len(examples))
    ade = Ade150(require(settings.model_dir, "ade20k-deeplab150"), cfg.threads)
    items = {}
    for i, example_id in enumerate(train_ids + val_ids):
        try:
            items[example_id] = example_item(ade, examples[example_id])
        except Exception as exc:  # an unreadable example is left out and named; the others still count
            log(f"example {example_id} left out: {type(exc).__name__}: {exc}")
        studio.set_progress(phase="preparing", done=i + 1, examples=len(examples), step=0, steps=0)
    train_ids = [i for i in train_ids if i in items]
    val_ids = [i for i in val_ids if i in items]
    if not train_ids or len(val_ids) < MIN_VAL:
        reason = f"too few readable examples: {len(train_ids)} to train on, {len(val_ids)} held back"
        return _done(studio, record, FinetuneReport(False, False, reason), log)
    pools = [Pool([items[i] for i in train_ids], 1.0)]
    if cfg.recipe_dir is not None:
        recipe = recipe_items(cfg.recipe_dir, studio.root / "cache", require(settings.model_dir, "ade20k-deeplab150"),
                              log)
        if recipe:
            pools = [Pool(pools[0].items, STUDIO_SHARE_WITH_RECIPE), Pool(recipe, 1.0, aspect_jitter=0.3)]
    studio_share = pools[0].share
    steps = max(1, math.ceil(cfg.epochs * len(train_ids) / (cfg.batch * studio_share)))
    base_path = studio.weights(shipped_weights(settings.model_dir))
    device = choose_device(settings, cfg.device)
    log(f"examples: {len(train_ids)} to train on, {len(val_ids)} held back; {cfg.epochs} epochs = {steps} steps "
        f"(batch {cfg.batch}) on {device}, from {base_path.name}")
    prepare_seconds = time.time() - started
    base, _ = init_model(base_path)
    val = [items[i] for i in val_ids]
    before = evaluate(base, val)
    model, base_meta = init_model(base_path)
    t0 = time.time()

    def on_step(step: int, loss: float, lr: float) -> None:
        if step % 5 == 0 or step == steps:
            studio.set_progress(phase="training", step=step, steps=steps, loss=round(loss, 4),
                                seconds=round(time.time() - t0, 1))

    studio.set_progress(phase="training", step=0, steps=steps)
    train(model, pools, TrainConfig(steps=steps, lr=cfg.lr, warmup=max(1, steps // 10), batch=cfg.batch,
                                    crop=cfg.crop, class_weights=cfg.class_weights, leak_weight=cfg.leak_weight,
                                    freeze_norm=True), np.random.default_rng(cfg.seed), device=device,
          on_step=on_step)
    train_seconds = time.time() - t0
    studio.set_progress(phase="scoring", step=steps, steps=steps)
    after = evaluate(model, val)
    record.update(train=len(train_ids), held_back=len(val_ids), steps=steps, device=device,
                  prepare_seconds=round(prepare_seconds, 1), train_seconds=round(train_seconds, 1),
                  seconds=round(time.time() - started, 1), before=before, after=after, base=base_path.name)
    log(f"{'held-back examples (' + str(len(val_ids)) + ')':<32} {'in use':>8} {'fine-tuned':>11}")
    log(f"{'wall IoU (higher is better)':<32} {before['wall_iou']:8.3f} {after['wall_iou']:11.3f}")
    log(f"{'house parts painted (lower)':<32} {before['parts_painted']:8.3f} {after['parts_painted']:11.3f}")
    worse = [name for name, bad in (("wall IoU", after["wall_iou"] < before["wall_iou"]),
                                    ("house parts painted", after["parts_painted"] > before["parts_painted"]))
             if bad]
    if worse:
        return _done(studio, record, FinetuneReport(False, False, f"kept the weights in use: the fine-tuned model is "
                                                    f"worse on {' and '.join(worse)}", before, after), log)
    if cfg.dry_run:
        return _done(studio, record, FinetuneReport(False, True, "dry run: the fine-tuned model is no worse, but "
                                                    "nothing was installed", before, after), log)
    meta = {"finetune": {k: record[k] for k in ("examples", "train", "held_back", "epochs", "steps", "before",
                                                 "after")}, "init": base_meta, "seed": cfg.seed}
    with tempfile.TemporaryDirectory(dir=studio.root) as tmp:
        candidate = Path(tmp) / "candidate.pt"
        save_facade_parser(model.to("cpu"), candidate, meta)
        studio.install(candidate, shipped_weights(settings.model_dir))
    return _done(studio, record, FinetuneReport(True, True, "installed: no worse on either figure", before, after), log)


def start_in_background(settings: Any) -> int:
    """Start `render-appliance parser finetune` in its own process (the console's button): the web process only
    spawns it. Its output goes to learning/finetune.log, its progress to learning/progress.json. Returns the pid;
    RuntimeError when one is running or there are too few examples."""
    import subprocess
    import sys

    studio = StudioData(settings.data_dir)
    if studio.running():
        raise RuntimeError("a fine-tune is already running")
    if len(studio.examples()) < MIN_EXAMPLES:
        raise RuntimeError(f"too few examples: a fine-tune needs at least {MIN_EXAMPLES}")
    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "appliance.cli"]
    if settings.config_path is not None:
        command += ["--config", str(settings.config_path)]
    command += ["parser", "finetune"]
    studio.set_progress(phase="starting", step=0, steps=0)
    with open(studio.log_file, "wb") as log_fh:
        proc = subprocess.Popen(command, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own session: a console restart does not stop it
    threading.Thread(target=proc.wait, name="finetune-reaper", daemon=True).start()  # reaped when it ends
    return proc.pid


def _done(studio: StudioData, record: dict[str, Any], report: FinetuneReport,
          log: Callable[[str], None]) -> FinetuneReport:
    record.update(finished_at=time.time(), installed=report.installed, accepted=report.accepted,
                  reason=report.reason)
    studio.record_run(record)
    studio.set_progress(phase="done", installed=report.installed, reason=report.reason)
    log(report.reason)
    report.record = record
    return report
