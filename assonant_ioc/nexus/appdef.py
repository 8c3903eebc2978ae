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

from assonant_ioc.config.units import registry, unit_problem
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


def _in_any_entry(group: h5py.Group, path: str) -> h5py.Dataset | None:
    """``group[path]`` as one value, else the same field of another entry of the file (a
    distance captured before the sweep, say)."""
    found = _scalar(group.parent[path.rsplit("/", 1)[0]], path.rsplit("/", 1)[1])
    if found is not None:
        return found
    for other in group.file.values():
        rel = path.split("/", 2)[2]
        item = other.get(rel) if isinstance(other, h5py.Group) else None
        if isinstance(item, h5py.Dataset) and item.ndim == 0 and item.dtype.kind in "iuf":
            return item
    return None


def _mm(item: h5py.Dataset) -> float:
    """A length field's value in mm (pint converts its ``units``; none or unknown: mm)."""
    units = item.attrs.get("units", "mm")
    units = units.decode() if isinstance(units, bytes) else str(units)
    value = float(item[()])
    if unit_problem(units) is not None or not units.strip():
        return value
    return float(registry().Quantity(value, units).to("mm").magnitude)


def _transformation(
    parent: h5py.Group, name: str, value: Any, kind: str, vector: Any, units: str, on: str
) -> h5py.Dataset:
    dset = parent.create_dataset(name, data=value)
    dset.attrs["transformation_type"] = kind
    dset.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    dset.attrs["units"] = units
    dset.attrs["depends_on"] = on
    dset.attrs["offset"] = np.zeros(3)
    dset.attrs["offset_units"] = units
    return dset


def _nxmx_sweep(group: h5py.Group, entry: Entry) -> None:
    """The rotation per image, as MX processing reads it (nexgen's layout): the sample's
    rotation axis holds one angle per frame (the position at each frame's timestamp), with
    ``<axis>_increment_set`` and ``<axis>_end`` beside it; the NXdata has it as its axis."""
    data = group.get("data/data")
    sample = entry.sample
    if not isinstance(data, h5py.Dataset) or not data.is_virtual or sample is None:
        return
    rotation = next(
        (n for n, a in sample.axes.items() if a.transformation_type is TransformationType.ROTATION),
        None,
    )
    trans = group.get(f"{sample.name}/transformations")
    if rotation is None or not isinstance(trans, h5py.Group) or rotation not in trans:
        return
    _, times = frame_metadata(data)
    angles, units = _angles_at(sample, times)
    old = trans[rotation]
    attrs = dict(old.attrs)
    del trans[rotation]
    per_image = trans.create_dataset(rotation, data=angles)
    for key, value in attrs.items():
        per_image.attrs[key] = value
    steps = np.diff(angles)
    increment = float(np.median(steps)) if steps.size else 0.0
    for suffix, value in (("increment_set", increment), ("end", angles + increment)):
        extra = trans.create_dataset(f"{rotation}_{suffix}", data=value)
        extra.attrs["units"] = units
        extra.attrs["transformation_type"] = "rotation"
    nxdata = group["data"]  # the angles again, as a plain axis (no transformation attributes)
    nxdata.create_dataset(rotation, data=angles).attrs["units"] = units
    axes = [rotation] + ["."] * (data.ndim - 1)  # silx reads the list, nexgen the indices
    nxdata.attrs["axes"] = np.array(axes, dtype=h5py.string_dtype())
    nxdata.attrs[f"{rotation}_indices"] = np.array([0], dtype=np.int64)


def _nxmx_detector(group: h5py.Group, entry: Entry) -> None:
    """The detector on a transformation chain, as MX processing follows it: ``det_z``
    (the sample-detector ``distance`` along the beam), then the module's ``module_offset``
    (from ``beam_center_x``/``beam_center_y``, in pixels, and the pixel directions), then
    the pixel directions; ``x_pixel_size``/``y_pixel_size`` and ``data_stride`` beside."""
    for comp in entry.instrument:
        if comp.component_class is not ComponentClass.DETECTOR:
            continue
        det = group[f"instrument/{comp.name}"]
        module = next(
            (
                det[s.name]
                for s in comp.subcomponents
                if s.name in det and s.component_class is ComponentClass.DETECTOR_MODULE
            ),
            None,
        )
        distance = _in_any_entry(group, f"{det.name}/distance")
        if distance is None or "transformations" in det:
            log.warning("%s: NXmx detector without a distance: no det_z", det.name)
            continue
        trans = det.create_group("transformations")
        trans.attrs["NX_class"] = "NXtransformations"
        if distance.parent != det:  # from another entry: the same value here
            det.create_dataset("distance", data=distance[()])
            det["distance"].attrs["units"] = distance.attrs.get("units", "mm")
        det_z = _transformation(trans, "det_z", _mm(distance), "translation", [0, 0, 1], "mm", ".")
        det.create_dataset("depends_on", data=det_z.name)
        if not isinstance(module, h5py.Group):
            continue
        if "data_stride" not in module:
            module.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
        fast, slow = module.get("fast_pixel_direction"), module.get("slow_pixel_direction")
        if not isinstance(fast, h5py.Dataset) or not isinstance(slow, h5py.Dataset):
            continue
        for name, axis in (("x_pixel_size", fast), ("y_pixel_size", slow)):
            if name not in det:
                size = det.create_dataset(name, data=float(axis[()]))
                size.attrs["units"] = axis.attrs.get("units", "mm")
        on = det_z.name
        bx, by = _scalar(det, "beam_center_x"), _scalar(det, "beam_center_y")
        if bx is not None and by is not None:
            corner = -(
                float(bx[()]) * _mm(fast) * np.asarray(fast.attrs["vector"], dtype=np.float64)
                + float(by[()]) * _mm(slow) * np.asarray(slow.attrs["vector"], dtype=np.float64)
            )
            length = float(np.linalg.norm(corner))
            vector = corner / length if length else np.array([0.0, 0.0, 1.0])
            offset = _transformation(
                module, "module_offset", length, "translation", vector, "mm", on
            )
            on = offset.name
        else:
            log.warning("%s: NXmx detector without beam_center_x/y: no module_offset", det.name)
        for axis in (fast, slow):
            axis.attrs["depends_on"] = on


def _nxmx(group: h5py.Group, entry: Entry) -> None:
    group.create_dataset("end_time_estimated", data=iso(entry.end_time))
    for comp in entry.instrument:
        for sub in comp.walk():
            path = f"instrument/{'/'.join(_path_to(comp, sub))}"
            if sub.component_class is ComponentClass.BEAM:
                _scalar(group[path], "incident_wavelength")  # one wavelength per sweep
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
    _nxmx_sweep(group, entry)
    _nxmx_detector(group, entry)


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
