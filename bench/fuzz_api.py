"""Schemathesis against a real `render-appliance serve` (API only, no worker): every operation of /openapi.json
with generated and mutated inputs; the number of 500 answers must be 0.

    python -m venv /tmp/st && /tmp/st/bin/pip install schemathesis      # kept out of the appliance's venv
    .venv/bin/python -m bench.fuzz_api --st /tmp/st/bin/st [--max-examples 100]

Prints schemathesis' report and a line per route with the 5xx statuses it saw. /readyz answers 503 by design here
(no worker, no models: "not ready"); any 500 is a bug.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from service_fixtures import Appliance, free_port, write_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--st", required=True, help="the schemathesis CLI (st)")
    parser.add_argument("--max-examples", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        tmp = Path(tmp)
        port = free_port()
        config = write_config(tmp / "config.toml", {
            "paths": {"data_dir": str(tmp / "data"), "model_dir": str(tmp / "models")},
            "server": {"port": port}, "queue": {"depth": 100_000}, "worker": {"enabled": False}})
        app = Appliance(config, port, tmp / "server.log").start(wait_ready=False)
        try:
            app.wait_alive(60)
            started = time.monotonic()
            run = subprocess.run([args.st, "run", f"{app.base}/openapi.json", "--checks", "all",
                                  "--max-examples", str(args.max_examples)], capture_output=True, text=True)
            took = time.monotonic() - started
            print(run.stdout[-6000:])
            errors = []  # (route, status) of each failure section reporting a server error
            sections = re.split(r"\n_{3,} (\w+ \S+) _{3,}\n", run.stdout)
            for route, text in zip(sections[1::2], sections[2::2]):
                if "ST101 Server error" in text:
                    errors += [(route, status) for status in sorted(set(re.findall(r"^\[(5\d\d)\]", text, re.M)))]
            cases = re.search(r"(\d+) generated", run.stdout)
            print(f"\n{cases.group(1) if cases else '?'} test cases in {took:.0f} s; 5xx answers: "
                  f"{', '.join(f'{route} {status}' for route, status in errors) or 'none'}")
            return 1 if any(status == "500" for _, status in errors) else 0
        finally:
            app.close()


if __name__ == "__main__":
    sys.exit(main())
