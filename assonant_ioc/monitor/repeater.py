"""The CA repeater (``caRepeater``) from the libca that pyepics ships.

libca starts a repeater on first use when none listens on ``EPICS_CA_REPEATER_PORT``: it
runs the executable ``caRepeater`` from ``PATH`` and prints ``The executable "caRepeater"
couldn't be located`` when there is none. pyepics' wheels carry libca but no Linux
``caRepeater``, so this package installs one (the console script ``caRepeater``, which runs
libca's own ``ca_repeater()``) and puts its directory on ``PATH`` for libca
(``repeater_on_path``). Like EPICS' caRepeater it runs until it is stopped; one per host
serves every client, a second exits at once.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import sysconfig
from pathlib import Path
from typing import Any

NAME = "caRepeater"


def repeater_on_path() -> None:
    """Make ``caRepeater`` findable on ``PATH`` for libca, when this package installed it."""
    if shutil.which(NAME):
        return
    for where in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (where / NAME).is_file():
            os.environ["PATH"] = os.pathsep.join([str(where), os.environ.get("PATH", "")])
            return


def _ca_repeater() -> Any:
    from epics import ca

    libca = ctypes.CDLL(ca.find_libca())
    for symbol in ("caRepeaterThread", "_Z11ca_repeaterv"):  # C, then C++ ca_repeater()
        if hasattr(libca, symbol):
            function = getattr(libca, symbol)
            function.restype = None
            function.argtypes = [ctypes.c_void_p] if symbol == "caRepeaterThread" else []
            return function
    raise SystemExit(f"{NAME}: the libca at {ca.find_libca()} has no repeater")


def main() -> None:
    """Run the repeater, detached from the terminal and from the output of whoever started it
    (libca starts it from the IOC: it must not hold the IOC's log or a pipe open)."""
    repeater = _ca_repeater()
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the loop below never returns to Python
    if repeater.__name__ == "caRepeaterThread":
        repeater(None)
    else:
        repeater()


if __name__ == "__main__":
    main()
