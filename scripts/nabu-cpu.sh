#!/usr/bin/env bash
# nabu's CPU backend into .venv, when missing: OpenCL through PoCL, pyvkfft built against
# Debian's OpenCL headers (installed system-wide when missing, as root). The tests' nabu
# reconstruction and the demo's --process run nabu on the CPU with it.
set -euo pipefail
cd "$(dirname "$0")/.."
if .venv/bin/python -c "import pyopencl, pyvkfft" >/dev/null 2>&1; then
    exit 0
fi
if [ ! -f /usr/include/CL/cl.h ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's OpenCL headers for nabu's CPU backend..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        opencl-headers ocl-icd-opencl-dev) >/dev/null 2>&1 \
        || echo "could not install the OpenCL headers; nabu cannot run on the CPU"
fi
echo "installing nabu's CPU backend (pyopencl, PoCL, pyvkfft) into .venv..."
.venv/bin/python -m pip install -q -c constraints.txt pyopencl pocl-binary-distribution
VKFFT_BACKEND=opencl .venv/bin/python -m pip install -q -c constraints.txt --no-cache-dir pyvkfft
