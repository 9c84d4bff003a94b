"""PyInstaller entry point of the render-appliance binary.

freeze_support() runs before anything else: a worker process started with multiprocessing "spawn" re-executes
this binary with `--multiprocessing-fork ...` arguments, and must run the child's target, not the CLI again
(otherwise `serve` would start itself in a loop).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from appliance.cli import main

    sys.exit(main())
