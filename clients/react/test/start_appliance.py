"""Start a real render appliance for the Node tests of clients/react; stay up until stdin closes.

Run with the repository's venv (the Node tests do: test/appliance.js):

    .venv/bin/python clients/react/test/start_appliance.py [--queue-depth 1] [--geometry-delay 0.8] [--stage-pause 0.4]
                                                          [--cors-origin http://x] [--supabase] [--api-key K]

What it starts, with the helpers of tests/service_fixtures.py (the same parts as the Python service tests):
- a photo server over real HTTP: $RENDER_SHARED_DIR/data/{houses,textures} plus tiny.png (too small to render);
- with --supabase, the Storage contract double tests/supabase_storage_server.py (bucket "project-images", public,
  PNG and JPEG allowed); the appliance then stores its results there, as a studio's does;
- `python -m appliance.cli --config <tmp>/config.toml serve` (real SQLite queue, real worker, the real embedded
  pipeline, models installed from $RENDER_SHARED_DIR/models); with --geometry-delay its geometry stage pauses
  first (service_fixtures:slow_pipeline), which gives the tests a window while a job runs.

When ready it prints ONE JSON line on stdout:
    {"baseUrl", "photosUrl", "house", "swatch", "tiny", "storageUrl", "serviceKey", "bucket", "logPath"}
then reads commands from stdin, one JSON object a line, and answers each with one JSON line:
    {"cmd": "storage_refuse_png"}   the bucket refuses image/png: the next result upload fails (upload_failed)
    {"cmd": "storage_accept_png"}   back to normal
    {"cmd": "active_jobs"}          {"ok": true, "active_jobs": N}
EOF on stdin stops everything (so a killed test run leaves nothing behind).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from service_fixtures import SMALL_HOUSE, SWATCH, Appliance, free_port, photo_server, write_config

SHARED = Path(os.environ.get("RENDER_SHARED_DIR", ROOT.parent / "shared")).resolve()
BUCKET = "project-images"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-depth", type=int, default=1)
    parser.add_argument("--geometry-delay", type=float, default=0.0, help="seconds the geometry stage pauses")
    parser.add_argument("--stage-pause", type=float, default=0.0,
                        help="seconds every stage lasts at least (longer than a live event stream's read)")
    parser.add_argument("--cors-origin", action="append", default=[])
    parser.add_argument("--supabase", action="store_true", help="results to the Storage double")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    if not (SHARED / "data").is_dir() or not (SHARED / "models").is_dir():
        print(json.dumps({"error": f"shared folder not found at {SHARED}; set RENDER_SHARED_DIR"}), flush=True)
        return 2

    from pipeline.models import install_from

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="react-client-")))
        extra = tmp / "photos"
        extra.mkdir()
        Image.new("RGB", (120, 80), (200, 180, 160)).save(extra / "tiny.png")
        photos = stack.enter_context(photo_server(SHARED / "data", extra))
        models = tmp / "models"
        install_from(SHARED / "models", models, log=lambda _msg: None)

        env: dict[str, str] = {}
        storage = None
        if args.supabase:
            from supabase_storage_server import running_storage_server

            storage = stack.enter_context(running_storage_server(buckets={BUCKET: {
                "public": True, "allowed_mime_types": ["image/png", "image/jpeg"]}}))
            env.update(SUPABASE_URL=storage.url, SUPABASE_SERVICE_ROLE_KEY=storage.service_key)
        worker: dict[str, object] = {"lease_seconds": 10}
        if args.geometry_delay > 0 or args.stage_pause > 0:
            worker["pipeline"] = "service_fixtures:slow_pipeline"
            env["RENDER_TEST_GEOMETRY_DELAY"] = str(args.geometry_delay)
            env["RENDER_TEST_STAGE_PAUSE"] = str(args.stage_pause)
        port = free_port()
        server: dict[str, object] = {"port": port, "cors_origins": args.cors_origin}
        if args.api_key:
            server["api_key"] = args.api_key
        config = write_config(tmp / "config.toml", {
            "paths": {"data_dir": str(tmp / "data"), "model_dir": str(models)},
            "server": server,
            "queue": {"depth": args.queue_depth},
            "fetch": {"allow_networks": ["127.0.0.1"]},
            "storage": {"bucket": BUCKET},
            "worker": worker,
        })
        app = Appliance(config, port, tmp / "server.log", env=env, api_key=args.api_key)
        stack.callback(app.close)
        try:
            app.start(timeout=120)
        except Exception as exc:  # noqa: BLE001 - reported to the Node side as JSON
            print(json.dumps({"error": f"appliance did not start: {exc}"}), flush=True)
            return 1
        print(json.dumps({
            "baseUrl": app.base, "photosUrl": photos, "house": f"{photos}/{SMALL_HOUSE}",
            "swatch": f"{photos}/{SWATCH}", "tiny": f"{photos}/tiny.png",
            "storageUrl": storage.url if storage else None, "serviceKey": storage.service_key if storage else None,
            "bucket": BUCKET, "logPath": str(app.log_path),
        }), flush=True)

        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line).get("cmd")
            except ValueError:
                cmd = None
            answer: dict[str, object] = {"ok": True, "cmd": cmd}
            if cmd in ("storage_refuse_png", "storage_accept_png") and storage is not None:
                storage.buckets[BUCKET].allowed_mime_types = (
                    ["image/jpeg"] if cmd == "storage_refuse_png" else ["image/png", "image/jpeg"])
            elif cmd == "active_jobs":
                answer["active_jobs"] = app.http.get("/readyz").json()["checks"]["job_store"].get("active_jobs")
            elif cmd == "log_tail":
                answer["log"] = app.log_tail(80)
            else:
                answer = {"ok": False, "cmd": cmd, "error": "unknown command"}
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
