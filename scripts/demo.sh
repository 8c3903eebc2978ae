#!/usr/bin/env bash
# Set up (a venv in .venv) and run the demo: a local Kafka-protocol broker, the simulated
# beamline, the IOC, one experiment driven by CA puts; prints the NeXus tree and the event.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/assonant-ioc demo "$@"
