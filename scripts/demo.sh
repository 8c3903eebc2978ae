#!/usr/bin/env bash
# Set up (a venv in .venv) and run the demo: a local Kafka-protocol broker, the simulated
# beamline, the IOC, one experiment driven by CA puts; prints the NeXus tree and the event.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# --process reconstructs the tomography with nabu on the CPU: its OpenCL backend too
case " $* " in *" --process "*) bash scripts/nabu-cpu.sh ;; esac
exec .venv/bin/assonant-ioc demo "$@"
