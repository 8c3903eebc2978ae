#!/usr/bin/env bash
# Set up (a venv in .venv with the test and bench extras) and run the benchmarks:
#   bash scripts/bench.sh            every scenario at beamline scale (about 15 minutes)
#   bash scripts/bench.sh --quick    small sizes (under 2 minutes)
# Prints one table; the JSON goes to bench/results.json (or --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,bench
exec .venv/bin/python -m bench.run "$@"
