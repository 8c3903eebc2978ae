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
# the page's test drives Debian's Chromium (playwright through its executable)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the page's test..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "could not install chromium; the page's test will fail"
fi
# nabu's CPU backend for the reconstruction tests (the demo's --process installs it too)
bash scripts/nabu-cpu.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# the tests start many processes of this package: its bytecode compiled once, here (where
# PYTHONDONTWRITEBYTECODE is set, Python would compile it again in each)
.venv/bin/python -m compileall -q -j 0 assonant_ioc tests bench >/dev/null
.venv/bin/python -m pytest "$@"
