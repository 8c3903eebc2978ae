"""Detector files as areaDetector's HDF5 plugin (NDFileHDF5, default layout) writes them.

Frames at ``/entry/data/data``; per-frame NDAttributes at
``/entry/instrument/NDAttributes``: ``NDArrayUniqueId``, ``NDArrayEpicsTSSec``,
``NDArrayEpicsTSnSec`` (EPICS epoch) and ``image_key`` (0 projection, 1 flat,
2 dark: an NDAttribute fed from a PV, as tomography beamlines configure it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from assonant_ioc.model.times import EPICS_EPOCH

DATASET = "/entry/data/data"


def write_frames(
    path: str | Path, frames: np.ndarray, image_key: int, stamps: Sequence[float], first_id: int = 1
) -> str:
    """Write ``frames`` (n, y, x) and their per-frame attributes; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(frames)
    secs = np.array([int(t) - EPICS_EPOCH for t in stamps], dtype=np.uint32)
    nsecs = np.array([round((t - int(t)) * 1e9) for t in stamps], dtype=np.uint32)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        chunks = (1, *frames.shape[1:])
        data.create_dataset("data", data=frames, chunks=chunks, compression="gzip", shuffle=True)
        data.attrs["signal"] = "data"
        nd = entry.create_group("instrument/NDAttributes")
        nd.attrs["NX_class"] = "NXcollection"
        nd.create_dataset("NDArrayUniqueId", data=np.arange(first_id, first_id + n, dtype=np.int32))
        nd.create_dataset("NDArrayEpicsTSSec", data=secs)
        nd.create_dataset("NDArrayEpicsTSnSec", data=nsecs)
        nd.create_dataset("image_key", data=np.full(n, image_key, dtype=np.int32))
    return str(path)
