#!/usr/bin/env bash
# Smoke test of the real binary: build it (packaging/build.sh, CPU torch from .venv), then run every CLI command
# from it and one job over HTTP (packaging/smoke_test.py). Called by .ci/run after the tests.
#   SMOKE_REUSE_DIST=1   reuse an existing dist/ instead of rebuilding
#   RENDER_SHARED_DIR    shared models/data folder (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
export RENDER_SHARED_DIR=${RENDER_SHARED_DIR:-$(cd .. && pwd)/shared}
[ -x .venv/bin/python ] || scripts/install.sh
total_start=$(date +%s)
if [ "${SMOKE_REUSE_DIST:-}" = 1 ] && [ -x dist/render-appliance/render-appliance ]; then
  echo "smoke: reusing dist/render-appliance"
else
  build_start=$(date +%s)
  packaging/build.sh
  echo "smoke: build took $(( $(date +%s) - build_start )) s"
fi
echo "smoke: dist size $(du -sh dist/render-appliance | cut -f1) ($(find dist/render-appliance -type f | wc -l) files)"
.venv/bin/python packaging/smoke_test.py
echo "smoke: total $(( $(date +%s) - total_start )) s"
