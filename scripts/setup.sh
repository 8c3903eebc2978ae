#!/usr/bin/env bash
# Create .venv if needed and install the package with the extras given (default: test).
#   bash scripts/setup.sh [EXTRAS]     e.g. bash scripts/setup.sh test,bench
# Nothing is reinstalled when every extra asked for was installed from the same
# pyproject.toml (the install is editable: code changes need no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-test}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
STAMP=.venv/.assonant-setup
HASH=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
missing=0
for extra in ${EXTRAS//,/ }; do
    grep -qxF "$HASH $extra" "$STAMP" 2>/dev/null || missing=1
done
[ "$missing" = 0 ] && exit 0
echo "setting up .venv (extras: $EXTRAS)..."
.venv/bin/python -m pip install -q --upgrade pip
# the versions tested (constraints.txt): the same install next month
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
for extra in ${EXTRAS//,/ }; do echo "$HASH $extra" >> "$STAMP"; done
