"""A 1D small-angle curve I(q) as NXcanSAS (canSAS 1.1 in NeXus), the format SasView and
sasdata read."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import h5py
import numpy as np


def _group(parent: h5py.Group, name: str, nx_class: str, cansas: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    group.attrs["canSAS_class"] = cansas
    return group


def write_cansas(
    path: str | os.PathLike[str],
    q: np.ndarray,
    intensity: np.ndarray,
    sigma: np.ndarray | None = None,
    *,
    title: str,
    source: str = "",
    program: str = "pyFAI",
    q_units: str = "1/angstrom",
) -> None:
    """Write I(q) (``q`` in ``q_units``; intensity in arbitrary units, its standard
    deviation ``sigma``) with the raw file it came from (``source``) and the program."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "sasentry01"
        entry = _group(f, "sasentry01", "NXentry", "SASentry")
        entry.attrs["version"] = "1.1"
        entry.attrs["default"] = "sasdata01"
        entry.create_dataset("definition", data="NXcanSAS")
        entry.create_dataset("title", data=title)
        entry.create_dataset("run", data=os.path.basename(source) or title)
        data = _group(entry, "sasdata01", "NXdata", "SASdata")
        data.attrs["signal"] = "I"
        data.attrs["I_axes"] = "Q"
        data.attrs["Q_indices"] = np.int32(0)
        qd = data.create_dataset("Q", data=np.asarray(q, dtype=np.float64))
        qd.attrs["units"] = q_units
        i = data.create_dataset("I", data=np.asarray(intensity, dtype=np.float64))
        i.attrs["units"] = "arbitrary"
        if sigma is not None:
            i.attrs["uncertainties"] = "Idev"
            dev = data.create_dataset("Idev", data=np.asarray(sigma, dtype=np.float64))
            dev.attrs["units"] = "arbitrary"
        process = _group(entry, "sasprocess01", "NXprocess", "SASprocess")
        process.create_dataset("name", data=program)
        process.create_dataset("date", data=datetime.now(timezone.utc).isoformat())
        if source:
            process.create_dataset("term", data=source)
