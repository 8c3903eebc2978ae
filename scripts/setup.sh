#!/usr/bin/env bash
# Create .venv if needed and install the package with the extras given (default: test).
#   bash scripts/setup.sh [EXTRAS]     e.g. bash scripts/setup.sh test,bench
# Nothing is reinstalled when every extra asked for was installed from the same
# pyproject.toml (the install is editable: code changes need no reinstall).
# The test extra comes with the xrf one (PyMca5): its fisx has no wheel and is built from
# source, about 2 minutes, so its wheel is built while the rest installs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${1:-test}
case ",$EXTRAS," in *,test,*) EXTRAS="$EXTRAS,xrf" ;; esac
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
# uv installs the same pinned versions as pip, downloading in parallel (about 10x faster
# here); pip does it when uv cannot be had
install() {
    if .venv/bin/python -m uv --version >/dev/null 2>&1 \
        || .venv/bin/python -m pip install -q "uv>=0.5" >/dev/null 2>&1; then
        # compiled now, as pip does: where PYTHONDONTWRITEBYTECODE is set nothing is
        # compiled later, and every process would compile tiled, pandas... again
        .venv/bin/python -m uv pip install --python .venv/bin/python --compile-bytecode -q "$@"
    else
        .venv/bin/python -m pip install -q "$@"
    fi
}
WHEELS=.venv/wheelhouse
MAIN=${EXTRAS//,xrf/}
FISX_PID=""
if [ "$MAIN" != "$EXTRAS" ] && ! .venv/bin/python -c "import fisx" >/dev/null 2>&1; then
    mkdir -p "$WHEELS"
    .venv/bin/python -m pip wheel -q --no-deps -c constraints.txt -w "$WHEELS" fisx \
        > .venv/fisx-build.log 2>&1 &
    FISX_PID=$!
fi
# the versions tested (constraints.txt): the same install next month
install -c constraints.txt -e ".[$MAIN]"
if [ "$MAIN" != "$EXTRAS" ]; then
    if [ -n "$FISX_PID" ] && ! wait "$FISX_PID"; then
        echo "fisx's wheel could not be built:"; tail -20 .venv/fisx-build.log
    fi
    install -c constraints.txt --find-links "$WHEELS" -e ".[xrf]"
fi
for extra in ${EXTRAS//,/ }; do echo "$HASH $extra" >> "$STAMP"; done
