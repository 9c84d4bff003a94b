"""`render-appliance` command line: serve | worker | render | models | parser."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _settings(args: argparse.Namespace):
    from .config import load_settings

    return load_settings(args.config)


def cmd_render(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from pipeline import PipelineError, RenderOptions
    from pipeline.backends import build_pipeline

    from .refs import InputRef

    settings = _settings(args)
    options = RenderOptions.from_mapping({"real_world_scale": args.scale, "enable_refinement": args.refine,
                                          "refinement_seed": args.seed,
                                          "stage_timeout_seconds": args.stage_timeout or settings.stage_timeout,
                                          "swatch_width_m": args.swatch_width_m})
    surfaces = _surface_materials(args.surface)  # refused before any model is loaded
    started = time.perf_counter()
    pipeline = build_pipeline(settings.model_dir, max_pixels=settings.max_pixels, **settings.backend_choices())
    from .learning import StudioData

    studio = StudioData(settings.data_dir)
    if studio.current.is_file() and hasattr(pipeline.segmenter, "load_parser"):
        pipeline.segmenter.load_parser(studio.current)  # the studio's fine-tuned house parser, as workers use it
    load_seconds = time.perf_counter() - started

    def progress(stage: str, fraction: float) -> None:
        if not args.json and fraction == 0.0:
            print(f"  {stage} ...", file=sys.stderr, flush=True)

    texture = args.swatch if InputRef.parse(args.swatch).is_colour else Path(args.swatch)
    try:
        result = pipeline.run(Path(args.photo), texture, options, mask=Path(args.mask) if args.mask else None,
                              surfaces=surfaces, progress=progress)
    except PipelineError as exc:
        raise SystemExit(f"render failed ({exc.code}): {exc}") from None
    Image.fromarray(result.image).save(args.output)
    if args.mask_out:
        Image.fromarray(result.mask.astype(np.uint8) * 255).save(args.mask_out)
    total = sum(result.timings.values())
    if args.json:
        print(json.dumps({"output": str(args.output), "timings": result.timings, "total_seconds": total,
                          "model_load_seconds": load_seconds, "backends": result.backends,
                          "warnings": result.warnings, "painted_fraction": float(result.mask.mean()),
                          "scale": getattr(result, "scale", None)}))
    else:
        for stage, seconds in result.timings.items():
            print(f"{stage:<10} {seconds * 1000:8.0f} ms   {result.backends.get(stage, '')}")
        print(f"{'total':<10} {total * 1000:8.0f} ms   (model load {load_seconds * 1000:.0f} ms)")
        for warning in result.warnings:
            print(f"warning: {warning}")
        print(f"wrote {args.output}")
    return 0


def _surface_materials(specs: list[str]) -> list:
    """`--surface NAME=MATERIAL` arguments -> SurfaceMaterial list (the same names and rules as the job API)."""
    from pipeline.surfaces import Surface, SurfaceMaterial, extra_surface_refusal

    from .refs import InputRef

    out, seen = [], set()
    for spec in specs:
        name, sep, material = spec.partition("=")
        if not sep or not material:
            raise SystemExit(f"--surface {spec!r}: expected NAME=MATERIAL, e.g. trim=#F4F1EA")
        if reason := extra_surface_refusal(name, wall="the wall is the main swatch argument"):
            raise SystemExit(f"--surface {name!r}: {reason}")
        if name in seen:
            raise SystemExit(f"--surface {name!r}: given twice")
        seen.add(name)
        out.append(SurfaceMaterial(Surface(name), material if InputRef.parse(material).is_colour else Path(material)))
    return out


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.errors import ModelMissingError
    from pipeline.models import install_from, manifest, pull, status

    settings = _settings(args)
    try:
        if args.action == "pull":
            if args.from_dir:
                install_from(args.from_dir, settings.model_dir, model_set=args.set)
            else:
                pull(settings.model_dir, model_set=args.set)
        elif args.action == "list":
            for spec in manifest().values():
                where = f"{spec.hub_id}@{spec.revision}" if spec.hub_id else spec.file
                print(f"{spec.name:<20} {spec.set:<9} {where:<70} {spec.licence}")
            return 0
        states = status(settings.model_dir, model_set=args.set)
    except ModelMissingError as exc:
        raise SystemExit(f"models: {exc}") from None
    for name, state in states.items():
        print(f"{name:<20} {state}")
    print(f"model folder: {settings.model_dir}")
    return 0 if all(s == "ok" for s in states.values()) else 1


def cmd_parser(args: argparse.Namespace) -> int:
    """parser finetune | rollback | status: the studio's own house parser (appliance/finetune.py)."""
    from .learning import StudioData

    settings = _settings(args)
    studio = StudioData(settings.data_dir)
    if args.action == "finetune":
        from .finetune import FinetuneConfig, run_finetune

        cfg = FinetuneConfig(epochs=args.epochs or settings.finetune_epochs, dry_run=args.dry_run,
                             recipe_dir=settings.learning_recipe_dir, threads=settings.worker_threads)
        try:
            report = run_finetune(settings, cfg)
        except RuntimeError as exc:
            raise SystemExit(f"parser finetune: {exc}") from None
        return 0 if report.accepted else 1
    if args.action == "rollback":
        if not studio.rollback():
            raise SystemExit("parser rollback: nothing to roll back to (no fine-tuned weights were installed)")
        print(f"rolled back: {studio.current} holds the weights in use before the last install; workers load "
              f"them before their next job")
        return 0
    runs = studio.runs()
    print(f"examples: {len(studio.examples())}")
    from .learning import shipped_weights

    fine_tuned = studio.fine_tuned(shipped_weights(settings.model_dir))
    print(f"weights in use: {'fine-tuned, ' + str(studio.current) if fine_tuned else 'as shipped'}")
    if runs:
        last = runs[-1]
        print(f"last run: {time.strftime('%Y-%m-%d %H:%M', time.localtime(last['started_at']))}: {last['reason']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(_settings(args))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .jobs import JobStore

    settings = _settings(args)
    store = JobStore(settings.jobs_db, busy_timeout=settings.store_busy_timeout)
    try:
        count = store.backup(Path(args.path))
    except NotImplementedError as exc:
        raise SystemExit(f"backup: {exc} (cluster mode: pg_dump the database of cluster.database_url)") from None
    except OSError as exc:
        raise SystemExit(f"backup: cannot write {args.path}: {exc.strerror or exc}") from None
    finally:
        store.close()
    print(f"backed up {count} jobs from {store.url} to {args.path}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .supervisor import run_worker

    run_worker(_settings(args), device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="render-appliance", description=__doc__)
    parser.add_argument("--config", help="config.toml (default: ./config.toml if present, then env overrides)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, the console and one worker")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one queue consumer (one per GPU)")
    worker.add_argument("--device", help="cuda:0, cuda:1, ... or cpu (default: from config)")
    worker.set_defaults(func=cmd_worker)

    backup = sub.add_parser("backup", help="copy the job store (SQLite) consistently, while it runs")
    backup.add_argument("path", help="the copy to write (replaced if it exists)")
    backup.set_defaults(func=cmd_backup)

    render = sub.add_parser("render", help="render one photo locally, without the service")
    render.add_argument("photo")
    render.add_argument("swatch", help="swatch image, or a paint colour #RRGGBB")
    render.add_argument("-o", "--output", required=True)
    render.add_argument("--mask", help="paint mask (white = paint), same size as the photo")
    render.add_argument("--mask-out", help="write the paint mask that was used")
    render.add_argument("--scale", type=float, default=24.0,
                        help="swatch repeats across the widest painted wall (default 24)")
    render.add_argument("--swatch-width-m", type=float,
                        help="real width of the swatch image in metres: tile size from the wall's measured scale "
                             "(--scale is the fallback)")
    render.add_argument("--refine", action="store_true", help="diffusion refinement (GPU model set)")
    render.add_argument("--seed", type=int, default=42)
    render.add_argument("--stage-timeout", type=float)
    render.add_argument("--surface", action="append", default=[], metavar="NAME=MATERIAL",
                        help="another surface's material (swatch file or #RRGGBB), e.g. trim=#F4F1EA; repeatable; "
                             "surfaces: roof, trim, garage_door, door")
    render.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    render.set_defaults(func=cmd_render)

    models = sub.add_parser("models", help="install or check the model files")
    models.add_argument("action", choices=["pull", "status", "list"])
    models.add_argument("--from", dest="from_dir", help="copy from a local folder instead of downloading")
    models.add_argument("--set", default="embedded", choices=["embedded", "gpu", "all"],
                        help="which model set (default: embedded, the CPU set every install needs)")
    models.set_defaults(func=cmd_models)

    parser_cmd = sub.add_parser("parser", help="fine-tune the house parser on the studio's corrected photos")
    parser_cmd.add_argument("action", choices=["finetune", "rollback", "status"])
    parser_cmd.add_argument("--epochs", type=int, help="passes over the studio's examples (default: "
                            "learning.finetune_epochs)")
    parser_cmd.add_argument("--dry-run", action="store_true", help="train and compare, install nothing")
    parser_cmd.set_defaults(func=cmd_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen binary must not re-run main in its children
    args = build_parser().parse_args(argv)
    from pipeline.errors import InputError

    from .jobs import StoreUnavailable

    try:
        return args.func(args)
    except (InputError, StoreUnavailable) as exc:
        raise SystemExit(f"{args.command}: {exc}") from None
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
