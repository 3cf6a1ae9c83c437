#!/usr/bin/env bash
# Set up the package (no extras needed) and run the main job: a flow with a .map() over 10,000 items on the
# default runner (threads) and the default result store (DISTRIBUTARY_HOME/storage). Arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e .
exec .venv/bin/python examples/demo_map.py "$@"
