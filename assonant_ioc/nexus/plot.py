"""What a viewer opens on: the NXdata each entry gets (the frames, else a recorded series)."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from assonant_ioc.model.components import (
    Component,
    ComponentClass,
    DataField,
    Entry,
    TimeSeries,
)
from assonant_ioc.nexus.appdef import link
from assonant_ioc.nexus.h5 import (
    nx_attrs,
    nx_group,
)


def recorded_series(entry: Entry) -> list[str]:
    """Paths (in the entry) of its NXlogs, best to plot first: the recorded axes (the
    sample's first), then the other recorded fields, in config order."""
    axes: list[str] = []
    fields: list[str] = []

    def walk(path: str, comp: Component) -> None:
        if comp.component_class is not ComponentClass.DETECTOR_MODULE:
            axes.extend(
                f"{path}/{n}" for n, a in comp.axes.items() if isinstance(a.value, TimeSeries)
            )
        fields.extend(f"{path}/{n}" for n, v in comp.fields.items() if isinstance(v, TimeSeries))
        for sub in comp.subcomponents:
            walk(f"{path}/{sub.name}", sub)

    if entry.sample is not None:
        walk(entry.sample.name, entry.sample)
    for comp in entry.instrument:
        walk(f"instrument/{comp.name}", comp)
    return axes + fields


def plot_series(group: h5py.Group, entry: Entry) -> bool:
    """An NXdata of the first recorded numeric series against time (``@default`` on the
    entry), so that viewers open on something without detector frames too."""
    for path in recorded_series(entry):
        log_group = group.get(path)
        if not isinstance(log_group, h5py.Group) or "value" not in log_group:
            continue
        value, time = log_group["value"], log_group["time"]
        if value.ndim != 1 or value.dtype.kind not in "iuf" or len(value) == 0:
            continue
        name = path.rsplit("/", 1)[-1]
        signal = name if name != "time" else "value"
        nxdata = nx_group(group, "data", "NXdata")
        link(nxdata, signal, value)
        link(nxdata, "time", time)
        nx_attrs(nxdata, signal=signal, axes="time")
        nx_attrs(group, default="data")
        return True
    return False


def has_array(entry: Entry) -> bool:
    """Whether a field of ``entry`` holds 3 values or more (else no walk of the written
    entry for one: 20,000 objects' proxies for nothing)."""
    comps = [c for top in entry.instrument for c in top.walk()]
    if entry.sample is not None:
        comps += list(entry.sample.walk())
    for comp in comps:
        for value in [*comp.fields.values(), *(a.value for a in comp.axes.values())]:
            if isinstance(value, DataField) and int(np.prod(value.reading.shape)) >= 3:
                return True
    return False


def plot_array(group: h5py.Group) -> bool:
    """A snapshot's NXdata: the first numeric 1-D field of at least 3 values (a waveform, a
    spectrum), so that viewers open on it; ``@default`` on the entry. False: nothing."""
    found: list[h5py.Dataset] = []

    def visit(name: str, item: Any) -> None:
        if found or not isinstance(item, h5py.Dataset) or "provenance" in name.split("/"):
            return
        if item.name.rsplit("/", 1)[-1] in _NOT_PLOTTED:
            return
        if item.ndim == 1 and item.shape[0] >= 3 and item.dtype.kind in "iuf":
            found.append(item)

    for top in ("instrument", *(n for n in group if n not in ("instrument", "provenance"))):
        where = group.get(top)
        if isinstance(where, h5py.Group):
            where.visititems(visit)
        if found:
            break
    if not found:
        return False
    signal = found[0].name.rsplit("/", 1)[-1]
    nxdata = nx_group(group, "data", "NXdata")
    link(nxdata, signal, found[0])
    nx_attrs(nxdata, signal=signal)
    nx_attrs(group, default="data")
    return True


#: Array fields that describe a geometry, not something to plot.
_NOT_PLOTTED = {"data_origin", "data_size", "data_stride", "vector", "offset"}
