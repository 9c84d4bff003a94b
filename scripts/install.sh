#!/usr/bin/env bash
# Installs the appliance into ./.venv (Python 3.11+). Idempotent: a second run only checks.
#   TORCH_SPEC   torch requirement (default torch==2.13.0, the CPU build; a GPU workstation sets its CUDA build)
#   EXTRAS       pip extras to install (default: none; the test script uses "test")
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: anything that asks for plain "torch" later finds it satisfied instead of
# pulling a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
target="."
[ -n "$EXTRAS" ] && target=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet -e "$target"
