"""What `render-appliance parser finetune` costs: labelled photos imported as stand-in studio examples into a
throw-away data folder, then one fine-tune (a dry run: nothing installed anywhere).

    python -m bench.finetune [--examples 50] [--epochs 20] [--threads 2] [--device cpu|cuda]

Prints the examples, epochs, steps, device, wall-clock per phase (preparing = the ADE20K context of every
example; training; total) and the held-back figures before / after. Shared data from RENDER_SHARED_DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.quality import shared_dir  # noqa: E402


def import_houses(studio, root: Path, n: int) -> int:
    """houses-train photos with their per-class labels (usable ones, name order)."""
    from appliance.learning import Source
    from pipeline.parser_training import house_photos

    files = house_photos(root)[:n]
    for photo, mask in files:
        classes = np.array(Image.open(mask))
        studio.add_example(photo.read_bytes(), classes == 1, job_id=None, source=Source.IMPORTED, classes=classes)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    from appliance.config import Settings
    from appliance.finetune import FinetuneConfig, run_finetune
    from appliance.learning import StudioData

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", type=Path, default=shared_dir() / "models")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        settings = Settings(data_dir=Path(tmp), model_dir=args.model_dir)
        studio = StudioData(settings.data_dir)
        n = import_houses(studio, shared_dir() / "data" / "houses-train", args.examples)
        print(f"imported {n} houses-train photos as studio examples", flush=True)
        report = run_finetune(settings, FinetuneConfig(epochs=args.epochs, dry_run=True, threads=args.threads,
                                                       device=args.device))
        keys = ("examples", "train", "held_back", "epochs", "steps", "device", "prepare_seconds", "train_seconds",
                "seconds", "before", "after", "reason")
        print(json.dumps({k: report.record.get(k) for k in keys}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
