"""The techniques' experiments on the simulated beamline, driven over Channel Access as a
control system would (puts with callback, waits on the devices' own PVs): the demo and the
system tests run the same ones.

Each takes the service's prefix ``P``, the beamline's ``BL``, ``put(pv, value)`` and
``get(pv)``; it runs the snapshots, the recording and EndOfExperiment, and returns the path
of the file written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.sim import procs, samples

Put = Callable[[str, Any], None]
Get = Callable[[str], Any]


def _move(put: Put, get: Get, motor: str, value: float) -> None:
    put(f"{motor}:VAL", value)
    procs.wait_until(lambda: get(f"{motor}:DMOV") == 1, 30, f"{motor} to reach {value}")


def _around(put: Put, get: Get, P: str, during: Callable[[], None]) -> Path:
    put(f"{P}Snapshot:Pre", 1)
    put(f"{P}Record:During", 1)
    during()
    put(f"{P}Record:During", 0)
    put(f"{P}Snapshot:Post", 1)
    put(f"{P}EndOfExperiment", 1)
    return Path(get(f"{P}LastFile"))


def saxs(P: str, BL: str, put: Put, get: Get, folder: Path, frames: int = 3) -> Path:
    """Silver behenate on the SAXS camera: I0 counted, ``frames`` frames in one file
    (written under ``folder``), I0 counted again."""
    put(f"{BL}saxs:HDF1:FilePath", str(folder))
    put(f"{BL}saxs:ImageMode", 1)  # Multiple
    put(f"{BL}saxs:NumImages", frames)
    put(f"{BL}saxs:AcquireTime", 0.2)
    put(f"{BL}saxs:AcquirePeriod", 0.2)

    def during() -> None:
        put(f"{BL}sc:Count", 1)
        counted = get(f"{BL}saxs:ArrayCounter_RBV")
        put(f"{BL}saxs:Acquire", 1)
        procs.wait_until(
            lambda: (
                get(f"{BL}saxs:ArrayCounter_RBV") >= counted + frames
                and get(f"{BL}saxs:HDF1:Capture_RBV") == 0
            ),
            30,
            "the SAXS camera's frames and file",
        )
        put(f"{BL}sc:Count", 1)

    return _around(put, get, P, during)


#: the XRF map's sample positions (mm)
XRF_POINTS = (0.0, 0.5, 1.0)


def xrf(P: str, BL: str, put: Put, get: Get, points: tuple[float, ...] = XRF_POINTS) -> Path:
    """A line scan of the sample: at each position I0 is counted, then an MCA spectrum."""

    def during() -> None:
        for x in points:
            _move(put, get, f"{BL}smp:x", x)
            put(f"{BL}sc:Count", 1)
            put(f"{BL}mca:Acquire", 1)

    return _around(put, get, P, during)


def xas_energies() -> np.ndarray:
    """An energy grid (keV) over the copper K edge: coarse before and after, 1 eV across."""
    edge = samples.CU_K_EDGE_EV
    ev = np.concatenate(
        [
            np.arange(edge - 80, edge - 20, 10.0),
            np.arange(edge - 20, edge + 20, 1.0),
            np.arange(edge + 20, edge + 121, 10.0),
        ]
    )
    return np.round(ev / 1000.0, 6)


def xas(P: str, BL: str, put: Put, get: Get, energies: np.ndarray | None = None) -> Path:
    """A step scan of the monochromator over the copper K edge, the counters read at each
    energy."""
    grid = xas_energies() if energies is None else energies
    _move(put, get, f"{BL}mono:energy", float(grid[0]))

    def during() -> None:
        for e in grid:
            _move(put, get, f"{BL}mono:energy", float(e))
            put(f"{BL}sc:Count", 1)

    return _around(put, get, P, during)


#: technique -> (config, driver)
TECHNIQUES: dict[str, tuple[str, Callable[..., Path]]] = {
    "saxs": ("sim_saxs", saxs),
    "xrf": ("sim_xrf", xrf),
    "xas": ("sim_xas", xas),
}
