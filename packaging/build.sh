#!/usr/bin/env bash
# Builds the render-appliance binary with PyInstaller into dist/render-appliance/ (onedir, the default) or
# dist/onefile/render-appliance (one file, RENDER_ONEFILE=1). Uses ./.venv (scripts/install.sh makes it; a GPU
# workstation installs its CUDA torch with TORCH_SPEC before building, CI builds the same spec on the CPU wheel).
#   RENDER_ONEFILE=1   one self-extracting file (slower start: see packaging/README.md)
#   RENDER_GPU_SET=1   include transformers/diffusers (the GPU model set) in the binary
#   PYINSTALLER_SPEC   pip requirement for PyInstaller (default pyinstaller==6.22.*)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "build.sh: no .venv; run scripts/install.sh first" >&2; exit 2; }
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  "$PY" -m pip install --quiet "${PYINSTALLER_SPEC:-pyinstaller==6.22.*}"
fi
start=$(date +%s)
if [ "${RENDER_ONEFILE:-}" = 1 ]; then dist=dist/onefile; work=build/pyinstaller-onefile; else dist=dist; work=build/pyinstaller; fi
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$dist" --workpath "$work" \
  packaging/render-appliance.spec
end=$(date +%s)
if [ "${RENDER_ONEFILE:-}" = 1 ]; then target=$dist/render-appliance; else target=$dist/render-appliance; fi
echo "build: $((end - start)) s; $(du -sh "$target" | cut -f1) in $target"
echo "binary: $target$([ -d "$target" ] && echo /render-appliance)"
