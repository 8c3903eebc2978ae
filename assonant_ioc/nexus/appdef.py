"""Application definitions: the named builders of what a table cannot say (NXtomo's per-frame
angles, NXmx's sweep and detector chain), and the helpers the table steps share.

The config check (``assonant_ioc.config.appdef``) made sure the components are
there; this module writes what is derived from them: ``definition``,
NXtomo's per-frame ``image_key`` and ``rotation_angle``, the NXdata links and what the
tomography programs (nabu, nxtomo, tomoscan) read beside them, NXmx's
``end_time_estimated``.
"""

from __future__ import annotations

import logging
from typing import cast

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
from assonant_ioc.nexus.frames import exposure_window, frame_metadata, positions_at
from assonant_ioc.nexus.provenance import move

log = logging.getLogger(__name__)


class Checks:
    """What the writer found wrong or doubtful in what it wrote (geometry against the frames,
    the sweep, the detector files): kept in the file and sent in the event, named."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, text: str) -> None:
        log.error("%s", text)
        self.errors.append(text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)


def frame_table(entry: Entry, data: h5py.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(image_key, POSIX stamp) of every frame: from the run's documents when the entry's
    frames carry them (a Bluesky run), else from the detector files' NDAttributes."""
    for comp in entry.instrument:
        linked = comp.data
        if linked is not None and linked.keys and len(linked.keys) == data.shape[0]:
            return np.asarray(linked.keys, np.int32), np.asarray(linked.times, np.float64)
    return frame_metadata(data)


def read_with_frames(entry: Entry, source: str, n: int) -> np.ndarray | None:
    """The position of ``source`` read with each of the ``n`` frames (a Bluesky step scan
    reads the rotation in the frame's event; NaN for a frame read without it), or None."""
    for comp in entry.instrument:
        linked = comp.data
        for name, values in linked.positions if linked is not None else ():
            if name == source and len(values) == n:
                return np.asarray(values, np.float64)
    return None


def rotation_of(sample: Component) -> tuple[str, np.ndarray, np.ndarray, str] | None:
    """(name, log times, log positions, units) of the sample's rotation axis."""
    name = next(
        (n for n, a in sample.axes.items() if a.transformation_type is TransformationType.ROTATION),
        None,
    )
    if name is None:
        return None
    value = sample.axes[name].value
    readings = (value.reading,) if isinstance(value, DataField) else value.points()
    known = [(r.timestamp, float(cast(float, r.value))) for r in readings if r.value is not None]
    t = np.array([k[0] for k in known], dtype=np.float64)
    v = np.array([k[1] for k in known], dtype=np.float64)
    return name, t, v, value.units


def source_of(sample: Component, axis: str) -> str:
    value = sample.axes[axis].value
    readings = (value.reading,) if isinstance(value, DataField) else value.points()
    return next((r.source for r in readings), "")


def seconds_of(item: h5py.Dataset | None) -> float | None:
    """A time field's value in seconds (pint converts its ``units``; none: s)."""
    if item is None:
        return None
    units = item.attrs.get("units", "s")
    units = units.decode() if isinstance(units, bytes) else str(units)
    value = float(item[()])
    if not np.isfinite(value) or unit_problem(units) is not None or not units.strip():
        return value if np.isfinite(value) else None
    return float(registry().Quantity(value, units).to("s").magnitude)


def exposures(
    group: h5py.Group, det: h5py.Group, entry: Entry, stamps: np.ndarray, checks: Checks
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each frame's exposure: its stamp (the instant the config's
    ``frames: {stamp: ...}`` says, areaDetector's end by default) and the detector's
    ``count_time`` (AcquireTime), from this entry or a snapshot."""
    stamp = next(
        (c.data.stamp for c in entry.instrument if c.data is not None and c.data.stamp), "end"
    )
    exposure = seconds_of(in_any_entry(group, f"{det.name}/count_time"))
    if exposure is None:
        if stamp != "start":
            checks.warning(
                f"{det.name}: no count_time (exposure time): each frame's {stamp} stamp is "
                "taken as the start of its exposure"
            )
        exposure = 0.0
    return exposure_window(stamps, exposure, stamp)


def one_value(group: h5py.Group, name: str) -> h5py.Dataset | None:
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


def nxtomo_geometry(group: h5py.Group, entry: Entry) -> None:
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
    if "field_of_view" not in det:  # nabu's half-tomography "auto" reads it (nxtomo writes it)
        det.create_dataset("field_of_view", data="Full")
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
                energy = one_value(where, "incident_energy")
            elif sub.component_class.nx_class == "NXmonochromator" and energy is None:
                energy = one_value(where, "energy")
    if energy is not None and energy.name != f"{instrument.name}/beam/incident_energy":
        beam = instrument.get("beam")
        if beam is None:
            beam = instrument.create_group("beam")
            beam.attrs["NX_class"] = "NXbeam"
        link(beam, "incident_energy", energy)
    missing = [n for n in ("distance", "x_pixel_size", "y_pixel_size") if one_value(det, n) is None]
    missing += [] if energy is not None else ["energy (NXbeam incident_energy or a monochromator)"]
    if missing:
        log.warning(
            "%s: NXtomo without %s: tomography programs need them (config constants or PVs)",
            group.name,
            ", ".join(missing),
        )


def nxtomo(group: h5py.Group, entry: Entry, checks: Checks) -> None:
    det = group["instrument/detector"]
    data = det.get("data")
    if not isinstance(data, h5py.Dataset) or not data.is_virtual or entry.sample is None:
        log.warning("%s: NXtomo without frames; the entry will not validate", group.name)
        return
    keys, stamps = frame_table(entry, data)
    data.attrs["units"] = "counts"
    det.create_dataset("image_key", data=keys)
    sample = group[entry.sample.name]
    rotation = rotation_of(entry.sample)
    if "rotation_angle" not in sample and rotation is not None:
        name, log_t, log_v, units = rotation
        start, end = exposures(group, det, entry, stamps, checks)
        # a projection integrates over its exposure: its angle is the middle one, unless
        # the run read the rotation with each frame (a step scan: it stood still)
        angles = positions_at(log_t, log_v, (start + end) / 2)
        read = read_with_frames(entry, source_of(entry.sample, name), len(keys))
        if read is not None:
            angles = np.where(np.isfinite(read), read, angles)
        if np.isnan(stamps).any() and log_v.size:  # frames without a time: the last position
            angles = np.where(np.isnan(stamps), log_v[-1], angles)
        rot = sample.create_dataset("rotation_angle", data=angles)
        rot.attrs["units"] = units
    nxdata = group["data"]
    for name, target in (("rotation_angle", sample), ("image_key", det)):
        if name in target:
            link(nxdata, name, target[name])
    nxdata.attrs["axes"] = np.array(["rotation_angle", ".", "."], dtype=h5py.string_dtype())
    nxdata.attrs["rotation_angle_indices"] = 0
    # every per-frame field says which dimension it follows: a reader guessing from shapes
    # cannot tell when there are as many frames as pixels on a side (scippnexus gave up)
    nxdata.attrs["image_key_indices"] = 0


def link(group: h5py.Group, name: str, target: h5py.Dataset) -> None:
    """A NeXus link: a hard link, the original naming itself in ``@target``."""
    if "target" not in target.attrs:
        target.attrs["target"] = target.name
    group[name] = target


def in_any_entry(group: h5py.Group, path: str) -> h5py.Dataset | None:
    """``group[path]`` as one value, else the same field of another entry of the file (a
    distance captured before the sweep, say)."""
    found = one_value(group.parent[path.rsplit("/", 1)[0]], path.rsplit("/", 1)[1])
    if found is not None:
        return found
    for other in group.file.values():
        rel = path.split("/", 2)[2]
        item = other.get(rel) if isinstance(other, h5py.Group) else None
        if isinstance(item, h5py.Dataset) and item.ndim == 0 and item.dtype.kind in "iuf":
            return item
    return None


def source_in_entry(group: h5py.Group, entry: Entry, checks: Checks) -> None:
    """NXmx wants the NXsource in the entry too: the storage ring's, or (not captured at
    this moment) the one of an earlier entry."""
    for comp in entry.instrument:
        for sub in comp.walk():
            path = f"instrument/{'/'.join(_path_to(comp, sub))}"
            if sub.component_class is ComponentClass.STORAGE_RING and "source" not in group:
                group["source"] = group[path]
    if "source" not in group:
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


def needs_virtual(definition: str) -> bool:
    """Whether frames must be a virtual dataset even from one file: under an application
    definition (NXtomo wants ``data@units``, which only a dataset of the master file can
    carry; pynxtools 0.16 fails on an external link, taking its target's parent from the
    master file)."""
    return bool(definition)
