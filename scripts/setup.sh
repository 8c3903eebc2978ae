#!/usr/bin/env bash
# Create .venv if needed and install the package with the extras given (default: test).
#   bash scripts/setup.sh [EXTRAS]     e.g. bash scripts/setup.sh test,bench
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${1:-test}]"
