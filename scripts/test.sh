#!/usr/bin/env bash
# One command from a fresh checkout to a full test run: installs everything, then runs pytest.
# System packages (Debian chromium for the browser tests) are installed with apt when missing and we are root.
# Tests read real models and data from the shared folder (RENDER_SHARED_DIR, default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: /usr/bin/chromium is missing; run 'sudo apt-get install chromium' for the browser tests" >&2
  fi
fi

EXTRAS=test scripts/install.sh
export RENDER_SHARED_DIR=${RENDER_SHARED_DIR:-$(cd .. && pwd)/shared}
# Redis + PostgreSQL on 127.0.0.1 for the cluster-mode tests (apt-installs them when missing and root).
if [ -z "${SKIP_CLUSTER_TESTS:-}" ]; then
  eval "$(scripts/services.sh)"   # exports RENDER_TEST_REDIS_URL, RENDER_TEST_POSTGRES_URL
fi

# The React client kit: Node's test runner against a real appliance (npm ci from the committed lock file).
if [ -z "${SKIP_NODE_TESTS:-}" ]; then
  (cd clients/react && npm ci --no-audit --no-fund --loglevel=error && npm test)
fi
exec .venv/bin/python -m pytest "$@"
