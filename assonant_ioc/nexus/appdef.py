"""Application definitions (NXtomo, NXmx): what the entry holding the exposure adds.

The config check (``assonant_ioc.config.appdef``) made sure the components are
there; this module writes what is derived from them: ``definition``,
NXtomo's per-frame ``image_key`` and ``rotation_angle``, the NXdata links and what the
tomography programs (nabu, nxtomo, tomoscan) read beside them, NXmx's
``end_time_estimated``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np

from assonant_ioc.model.components import (
    Component,
    ComponentClass,
    DataField,
    Entry,
    TransformationType,
)
from assonant_ioc.model.times import EPICS_EPOCH, iso
from assonant_ioc.nexus.provenance import move

log = logging.getLogger(__name__)

#: areaDetector's HDF5 plugin keeps per-frame NDAttributes here.
ND_ATTRIBUTES = "/entry/instrument/NDAttributes"


def frame_metadata(frames: h5py.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(image_key, POSIX time) of every frame of a virtual dataset, in its order.

    From each source file's NDAttributes (``image_key``: 0 projection, 1 flat, 2 dark, as
    tomography beamlines record it; ``NDArrayEpicsTSSec``/``nSec``). A file without them
    counts as projections with unknown times (NaN). Only metadata is read.
    """
    keys: list[np.ndarray] = []
    times: list[np.ndarray] = []
    master_dir = Path(frames.file.filename).resolve().parent
    runs: list[list[Any]] = []  # [file, first frame in the file, frames]: mappings merged
    for source in frames.virtual_sources():
        low, high = source.vspace.get_select_bounds()
        n = int(high[0] - low[0] + 1)
        first = int(source.src_space.get_select_bounds()[0][0])
        last = runs[-1] if runs else None
        if last is not None and last[0] == source.file_name and last[1] + last[2] == first:
            last[2] += n
        else:
            runs.append([source.file_name, first, n])
    for file_name, first, n in runs:
        key = np.zeros(n, dtype=np.int32)
        stamp = np.full(n, np.nan)
        with h5py.File(master_dir / file_name, "r") as f:
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


def _angles_at(sample: Component, times: np.ndarray) -> tuple[np.ndarray, str]:
    """The sample's rotation at each frame time: the last position reported at or before it
    (a monitored PV holds its value until the next update), or the last position known
    when the frames carry no time."""
    axis = next(
        a for a in sample.axes.values() if a.transformation_type is TransformationType.ROTATION
    )
    value = axis.value
    readings = (value.reading,) if isinstance(value, DataField) else value.points()
    known = [(r.timestamp, float(cast(float, r.value))) for r in readings if r.value is not None]
    if not known:
        return np.full(len(times), np.nan), value.units
    stamps = np.array([t for t, _ in known])
    positions = np.array([v for _, v in known])
    order = np.argsort(stamps, kind="stable")
    stamps, positions = stamps[order], positions[order]
    held = np.clip(np.searchsorted(stamps, np.nan_to_num(times), side="right") - 1, 0, None)
    angles = np.where(np.isnan(times), positions[-1], positions[held])
    return angles, value.units


def _scalar(group: h5py.Group, name: str) -> h5py.Dataset | None:
    """``group[name]`` as one value: a recorded series (NXlog) moves to ``<name>_log`` and
    ``<name>`` is its median (the tomography programs read one energy, distance or pixel
    size per scan). None when there is no such field or no finite value."""
    item = group.get(name)
    if isinstance(item, h5py.Group) and "value" in item:
        values = np.asarray(item["value"][()], dtype=np.float64)
        units = item["value"].attrs.get("units", "")
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        move(group, name, f"{name}_log")
        item = group.create_dataset(name, data=float(np.median(values)))
        if units:
            item.attrs["units"] = units
    return item if isinstance(item, h5py.Dataset) and item.dtype.kind in "iuf" else None


def _nxtomo_geometry(group: h5py.Group, entry: Entry) -> None:
    """What nabu, nxtomo and tomoscan read beside the frames: ``image_key_control``, the
    NXsource at ``instrument/source`` (moved there from its configured name), the energy
    at ``instrument/beam/incident_energy`` (from an NXbeam's ``incident_energy`` or a
    monochromator's ``energy``), and the
    detector's ``distance`` (sample to detector), ``x_pixel_size`` and ``y_pixel_size``
    as single values. What the config does not give is named in the log."""
    instrument = group["instrument"]
    det = instrument["detector"]
    if "image_key" in det and "image_key_control" not in det:
        det.create_dataset("image_key_control", data=det["image_key"][()])
    if "source" not in instrument:  # NXtomo allows one NXsource: it moves there
        for comp in entry.instrument:
            if comp.component_class.nx_class == "NXsource" and comp.name in instrument:
                move(instrument, comp.name, "source")
                break
    energy = None
    for comp in entry.instrument:
        for sub in comp.walk():
            where = instrument.get("/".join(_path_to(comp, sub)))
            if not isinstance(where, h5py.Group):
                continue
            if sub.component_class is ComponentClass.BEAM and energy is None:
                energy = _scalar(where, "incident_energy")
            elif sub.component_class.nx_class == "NXmonochromator" and energy is None:
                energy = _scalar(where, "energy")
    if energy is not None and energy.name != f"{instrument.name}/beam/incident_energy":
        beam = instrument.get("beam")
        if beam is None:
            beam = instrument.create_group("beam")
            beam.attrs["NX_class"] = "NXbeam"
        link(beam, "incident_energy", energy)
    missing = [n for n in ("distance", "x_pixel_size", "y_pixel_size") if _scalar(det, n) is None]
    missing += [] if energy is not None else ["energy (NXbeam incident_energy or a monochromator)"]
    if missing:
        log.warning(
            "%s: NXtomo without %s: tomography programs need them (config constants or PVs)",
            group.name,
            ", ".join(missing),
        )


def _nxtomo(group: h5py.Group, entry: Entry) -> None:
    det = group["instrument/detector"]
    data = det.get("data")
    if not isinstance(data, h5py.Dataset) or not data.is_virtual or entry.sample is None:
        log.warning("%s: NXtomo without frames; the entry will not validate", group.name)
        return
    keys, times = frame_metadata(data)
    data.attrs["units"] = "counts"
    det.create_dataset("image_key", data=keys)
    sample = group[entry.sample.name]
    angles, units = _angles_at(entry.sample, times)
    if "rotation_angle" not in sample:
        rot = sample.create_dataset("rotation_angle", data=angles)
        rot.attrs["units"] = units
    nxdata = group["data"]
    for name, target in (("rotation_angle", sample), ("image_key", det)):
        link(nxdata, name, target[name])
    nxdata.attrs["axes"] = np.array(["rotation_angle", ".", "."], dtype=h5py.string_dtype())
    nxdata.attrs["rotation_angle_indices"] = 0
    _nxtomo_geometry(group, entry)


def link(group: h5py.Group, name: str, target: h5py.Dataset) -> None:
    """A NeXus link: a hard link, the original naming itself in ``@target``."""
    if "target" not in target.attrs:
        target.attrs["target"] = target.name
    group[name] = target


def _field_of_log(group: h5py.Group, name: str) -> None:
    """Where a definition wants a field and the exposure recorded a series: the NXlog moves
    to ``<name>_log`` and ``<name>`` links its values."""
    if isinstance(group.get(name), h5py.Group):
        move(group, name, f"{name}_log")
        link(group, name, group[f"{name}_log/value"])


def _nxmx(group: h5py.Group, entry: Entry) -> None:
    group.create_dataset("end_time_estimated", data=iso(entry.end_time))
    for comp in entry.instrument:
        for sub in comp.walk():
            path = f"instrument/{'/'.join(_path_to(comp, sub))}"
            if sub.component_class is ComponentClass.BEAM:
                _field_of_log(group[path], "incident_wavelength")
            elif sub.component_class is ComponentClass.STORAGE_RING and "source" not in group:
                group["source"] = group[path]  # NXmx wants the NXsource in the entry too
    if "source" not in group:  # not captured at this moment: the one of an earlier entry
        for other in group.file.values():
            found = [
                g
                for g in other.get("instrument", {}).values()
                if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXsource"
            ]
            if found:
                group["source"] = found[0]
                break


def _path_to(top: Component, target: Component) -> list[str]:
    """Group names from ``top`` down to ``target`` (a component of ``top``'s tree)."""
    if top is target:
        return [top.name]
    for sub in top.subcomponents:
        below = _path_to(sub, target)
        if below:
            return [top.name, *below]
    return []


_FILL = {"NXtomo": _nxtomo, "NXmx": _nxmx}


def fill_definition(definition: str, group: h5py.Group, entry: Entry) -> None:
    """Write ``definition`` and what it derives into the NXentry ``group`` of ``entry``."""
    group.create_dataset("definition", data=definition)
    _FILL[definition](group, entry)


def needs_virtual(definition: str) -> bool:
    """Whether frames must be a virtual dataset even from one file: under an application
    definition (NXtomo wants ``data@units``, which only a dataset of the master file can
    carry; pynxtools 0.16 fails on an external link, taking its target's parent from the
    master file)."""
    return bool(definition)
