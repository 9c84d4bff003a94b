#!/usr/bin/env bash
# One command from a fresh checkout to a running appliance on its embedded defaults:
# install, put the models in place, serve the API and console on http://127.0.0.1:8000.
#   scripts/start.sh                       # online: models are downloaded from their public sources
#   scripts/start.sh --models-from DIR     # offline: models are copied from DIR (e.g. ../shared/models)
# Other arguments go to `render-appliance serve`; RENDER_CONFIG names a config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
models_from=""
if [ "${1:-}" = "--models-from" ]; then models_from=$2; shift 2; fi
scripts/install.sh
config_args=()
[ -n "${RENDER_CONFIG:-}" ] && config_args=(--config "$RENDER_CONFIG")
if [ -n "$models_from" ]; then
  .venv/bin/render-appliance "${config_args[@]}" models pull --from "$models_from"
else
  .venv/bin/render-appliance "${config_args[@]}" models pull
fi
exec .venv/bin/render-appliance "${config_args[@]}" serve "$@"
