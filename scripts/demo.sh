#!/usr/bin/env bash
# Set up (a venv in .venv) and run the demo: a local Kafka-protocol broker, the simulated
# beamline, the IOC, one experiment driven by CA puts; prints the NeXus tree and the event.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
exec .venv/bin/python -m assonant_ioc.sim.demo "$@"
