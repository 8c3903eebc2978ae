#!/usr/bin/env bash
# Set up (a venv in .venv, the package with its test extras) and run every check:
# ruff, mypy, the unit tests and the system tests (real IOCs, a real broker, real files).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# `docker compose config` needs a compose client; the Debian package brings one (no engine)
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing docker-compose (Debian) for the compose file's test..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) \
            >/dev/null 2>&1 || echo "could not install docker-compose; its test will fail"
    fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
