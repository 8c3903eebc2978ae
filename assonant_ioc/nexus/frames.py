"""When each frame was exposed, and where the rotation was then.

areaDetector stamps an NDArray (``NDArrayEpicsTSSec``/``nSec``) when the frame arrives,
at the end of its exposure. The application definitions want other instants: NXmx's
``omega`` is the start of each image's oscillation and ``omega_end`` its end; a
tomographic projection integrates over its exposure, and its angle is the middle of it.
This module turns a frame's stamp and the exposure time into those instants, and the
recorded motor log into positions at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.model.times import EPICS_EPOCH

#: areaDetector's HDF5 plugin keeps per-frame NDAttributes here.
ND_ATTRIBUTES = "/entry/instrument/NDAttributes"


@dataclass(frozen=True)
class FrameRun:
    """Consecutive frames of one source file, as a virtual dataset maps them."""

    file_name: str  # relative to the master file
    first: int  # first frame in the source file
    count: int


def runs(frames: h5py.Dataset) -> list[FrameRun]:
    """The source files of a virtual dataset's frames, in order, mappings merged."""
    out: list[list[Any]] = []
    for source in frames.virtual_sources():
        low, high = source.vspace.get_select_bounds()
        n = int(high[0] - low[0] + 1)
        first = int(source.src_space.get_select_bounds()[0][0])
        last = out[-1] if out else None
        if last is not None and last[0] == source.file_name and last[1] + last[2] == first:
            last[2] += n
        else:
            out.append([source.file_name, first, n])
    return [FrameRun(*r) for r in out]


def frame_metadata(frames: h5py.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(image_key, POSIX stamp) of every frame of a virtual dataset, in its order.

    From each source file's NDAttributes (``image_key``: 0 projection, 1 flat, 2 dark, as
    tomography beamlines record it; ``NDArrayEpicsTSSec``/``nSec``). A file without them
    counts as projections with unknown times (NaN). Only metadata is read.
    """
    keys: list[np.ndarray] = []
    times: list[np.ndarray] = []
    master_dir = Path(frames.file.filename).resolve().parent
    for run in runs(frames):
        first, n = run.first, run.count
        key = np.zeros(n, dtype=np.int32)
        stamp = np.full(n, np.nan)
        with h5py.File(master_dir / run.file_name, "r") as f:
            nd = f.get(ND_ATTRIBUTES)
            if isinstance(nd, h5py.Group):
                if "image_key" in nd:
                    key[:] = np.asarray(nd["image_key"][first : first + n], dtype=np.int32)
                if "NDArrayEpicsTSSec" in nd and "NDArrayEpicsTSnSec" in nd:
                    secs = np.asarray(nd["NDArrayEpicsTSSec"][first : first + n], np.float64)
                    nsecs = np.asarray(nd["NDArrayEpicsTSnSec"][first : first + n], np.float64)
                    stamp[:] = secs + EPICS_EPOCH + nsecs * 1e-9
        keys.append(key)
        times.append(stamp)
    if not keys:
        return np.zeros(0, dtype=np.int32), np.zeros(0)
    return np.concatenate(keys), np.concatenate(times)


def exposure_window(
    stamps: np.ndarray, exposure_s: float, stamp: str = "end"
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each frame's exposure from its stamp, taken at the ``stamp`` instant."""
    if stamp == "start":
        start = stamps
    elif stamp == "middle":
        start = stamps - exposure_s / 2
    else:
        start = stamps - exposure_s
    return start, start + exposure_s


def positions_at(log_t: np.ndarray, log_v: np.ndarray, times: np.ndarray) -> np.ndarray:
    """A motor's position at ``times`` from its recorded log (time, value).

    Between two updates a moving motor is interpolated linearly. A gap much longer than
    the updates around it is a rest, not a slow move (a monitor posts nothing while the
    position does not change): the position holds until one typical update interval before
    the next update. Before the first update and after the last the position holds. NaN
    where a time is unknown (NaN) or the log is empty.
    """
    t = np.asarray(log_t, np.float64)
    v = np.asarray(log_v, np.float64)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    out = np.full(len(times), np.nan)
    if t.size == 0:
        return out
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if t.size > 2:
        gaps = np.diff(t)
        typical = float(np.median(gaps))
        rests = np.nonzero(gaps > 3 * typical)[0] if typical > 0 else np.zeros(0, int)
        if rests.size:  # a held point one interval before each update that ends a rest
            t = np.insert(t, rests + 1, t[rests + 1] - typical)
            v = np.insert(v, rests + 1, v[rests])
    known = np.isfinite(times)
    out[known] = np.interp(np.asarray(times)[known], t, v)
    return out


def constant_step(angles: np.ndarray, tolerance: float = 0.1) -> tuple[float, bool]:
    """(the sweep's step, whether every step is within ``tolerance`` of it)."""
    steps = np.diff(angles)
    if steps.size == 0:
        return 0.0, True
    step = float(np.median(steps))
    if step == 0:
        return 0.0, bool(np.all(steps == 0))
    return step, bool(np.all(np.abs(steps - step) <= tolerance * abs(step)))
