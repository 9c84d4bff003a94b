#!/usr/bin/env bash
# One command from a fresh checkout to a full test run: installs everything (system packages when root),
# then runs pytest. Tests read real models and data from the shared folder (RENDER_SHARED_DIR, default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test scripts/install.sh
export RENDER_SHARED_DIR=${RENDER_SHARED_DIR:-$(cd .. && pwd)/shared}
exec .venv/bin/python -m pytest "$@"
