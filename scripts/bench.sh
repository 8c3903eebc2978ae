#!/usr/bin/env bash
# Set up (a venv in .venv with the test and bench extras) and run the benchmarks:
#   bash scripts/bench.sh            every scenario at beamline scale (about 15 minutes)
#   bash scripts/bench.sh --quick    small sizes (under 2 minutes)
# Prints one table; the JSON goes to bench/results.json (or --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,bench]"
exec .venv/bin/python -m bench.run "$@"
