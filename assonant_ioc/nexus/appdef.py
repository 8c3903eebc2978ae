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
from assonant_ioc.nexus.frames import constant_step, exposure_window, frame_metadata, positions_at
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


def _frame_table(entry: Entry, data: h5py.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(image_key, POSIX stamp) of every frame: from the run's documents when the entry's
    frames carry them (a Bluesky run), else from the detector files' NDAttributes."""
    for comp in entry.instrument:
        linked = comp.data
        if linked is not None and linked.keys and len(linked.keys) == data.shape[0]:
            return np.asarray(linked.keys, np.int32), np.asarray(linked.times, np.float64)
    return frame_metadata(data)


def _read_with_frames(entry: Entry, source: str, n: int) -> np.ndarray | None:
    """The position of ``source`` read with each of the ``n`` frames (a Bluesky step scan
    reads the rotation in the frame's event; NaN for a frame read without it), or None."""
    for comp in entry.instrument:
        linked = comp.data
        for name, values in linked.positions if linked is not None else ():
            if name == source and len(values) == n:
                return np.asarray(values, np.float64)
    return None


def _rotation(sample: Component) -> tuple[str, np.ndarray, np.ndarray, str] | None:
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


def _source_of(sample: Component, axis: str) -> str:
    value = sample.axes[axis].value
    readings = (value.reading,) if isinstance(value, DataField) else value.points()
    return next((r.source for r in readings), "")


def _seconds(item: h5py.Dataset | None) -> float | None:
    """A time field's value in seconds (pint converts its ``units``; none: s)."""
    if item is None:
        return None
    units = item.attrs.get("units", "s")
    units = units.decode() if isinstance(units, bytes) else str(units)
    value = float(item[()])
    if not np.isfinite(value) or unit_problem(units) is not None or not units.strip():
        return value if np.isfinite(value) else None
    return float(registry().Quantity(value, units).to("s").magnitude)


def _exposures(
    group: h5py.Group, det: h5py.Group, entry: Entry, stamps: np.ndarray, checks: Checks
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each frame's exposure: its stamp (the instant the config's
    ``frames: {stamp: ...}`` says, areaDetector's end by default) and the detector's
    ``count_time`` (AcquireTime), from this entry or a snapshot."""
    stamp = next(
        (c.data.stamp for c in entry.instrument if c.data is not None and c.data.stamp), "end"
    )
    exposure = _seconds(_in_any_entry(group, f"{det.name}/count_time"))
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


def _nxtomo(group: h5py.Group, entry: Entry, checks: Checks) -> None:
    det = group["instrument/detector"]
    data = det.get("data")
    if not isinstance(data, h5py.Dataset) or not data.is_virtual or entry.sample is None:
        log.warning("%s: NXtomo without frames; the entry will not validate", group.name)
        return
    keys, stamps = _frame_table(entry, data)
    data.attrs["units"] = "counts"
    det.create_dataset("image_key", data=keys)
    sample = group[entry.sample.name]
    rotation = _rotation(entry.sample)
    if "rotation_angle" not in sample and rotation is not None:
        name, log_t, log_v, units = rotation
        start, end = _exposures(group, det, entry, stamps, checks)
        # a projection integrates over its exposure: its angle is the middle one, unless
        # the run read the rotation with each frame (a step scan: it stood still)
        angles = positions_at(log_t, log_v, (start + end) / 2)
        read = _read_with_frames(entry, _source_of(entry.sample, name), len(keys))
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


def _in_any_entry(group: h5py.Group, path: str) -> h5py.Dataset | None:
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


def _nxmx_sweep(group: h5py.Group, entry: Entry, checks: Checks) -> None:
    """The rotation per image, as MX processing reads it (nexgen's layout): the sample's
    rotation axis holds one angle per image, the start of its oscillation (the position
    when its exposure began), ``<axis>_end`` the position when it ended and
    ``<axis>_increment_set`` the step; the NXdata has it as its axis.

    One sweep: frames taken while the rotation did not move (darks, flats, a test shot) or
    with an image key other than 0 are left out of the sweep's data and named."""
    data = group.get("data/data")
    sample = entry.sample
    if not isinstance(data, h5py.Dataset) or not data.is_virtual or sample is None:
        return
    rotation = _rotation(sample)
    trans = group.get(f"{sample.name}/transformations")
    if rotation is None or not isinstance(trans, h5py.Group) or rotation[0] not in trans:
        return
    name, log_t, log_v, units = rotation
    det_path = _detector_of(group, data)
    keys, stamps = _frame_table(entry, data)
    start, end = _exposures(group, group[det_path], entry, stamps, checks)
    begin, finish = positions_at(log_t, log_v, start), positions_at(log_t, log_v, end)
    moving = np.abs(finish - begin) > 1e-9
    sweep = (keys == 0) & (moving if moving.any() else True)
    left = np.nonzero(~sweep)[0]
    if left.size:
        checks.warning(
            f"{group.name}: {left.size} frame(s) left out of the sweep (not rotating, or image "
            f"key dark/flat): {_ranges(left)}"
        )
        _keep_frames(group, det_path, np.nonzero(sweep)[0])
        data = group["data/data"]
    if log_t.size and np.isfinite(start).all() and sweep.any():
        outside = (start[sweep] < log_t[0] - 1e-6) | (end[sweep] > log_t[-1] + 1e-6)
        if outside.any():
            checks.warning(
                f"{group.name}: {int(outside.sum())} image(s) exposed outside the recorded "
                f"log of {name} ({_ranges(np.nonzero(outside)[0])}): their angles are held"
            )
    angles, ends = begin[sweep], finish[sweep]
    increment, constant = constant_step(angles)
    if not angles.size:
        checks.error(f"{group.name}: no image of the sweep")
    elif angles.size == 1:
        increment = float(ends[0] - angles[0])
    if not constant:
        steps = np.diff(angles)
        checks.error(
            f"{group.name}: {name} step is not constant (from {steps.min():g} to "
            f"{steps.max():g} {units}, median {increment:g}): not one constant-step sweep"
        )
    old = trans[name]
    attrs = dict(old.attrs)
    del trans[name]
    per_image = trans.create_dataset(name, data=angles)
    for key, value in attrs.items():
        per_image.attrs[key] = value
    for suffix, value in (("increment_set", increment), ("end", ends)):
        extra = trans.create_dataset(f"{name}_{suffix}", data=value)
        for key in ("units", "transformation_type", "vector", "depends_on"):
            if key in attrs:  # a transformation scippnexus takes as one (nexgen's attributes)
                extra.attrs[key] = attrs[key]
        extra.attrs["units"] = units
    nxdata = group["data"]  # the angles again, as a plain axis (no transformation attributes)
    nxdata.create_dataset(name, data=angles).attrs["units"] = units
    axes = [name] + ["."] * (data.ndim - 1)  # silx reads the list, nexgen the indices
    nxdata.attrs["axes"] = np.array(axes, dtype=h5py.string_dtype())
    nxdata.attrs[f"{name}_indices"] = np.array([0], dtype=np.int64)


def _ranges(indices: np.ndarray) -> str:
    """``0-4, 9`` for frames 0, 1, 2, 3, 4, 9."""
    out: list[list[int]] = []
    for i in indices.tolist():
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def _detector_of(group: h5py.Group, data: h5py.Dataset) -> str:
    """The detector group holding the frames the NXdata links."""
    for item in group["instrument"].values():
        if isinstance(item, h5py.Group) and item.attrs.get("NX_class") == "NXdetector":
            frames = item.get("data")
            if isinstance(frames, h5py.Dataset) and frames.id == data.id:
                return str(item.name)
    return str(group["instrument"].name) + "/detector"


def _keep_frames(group: h5py.Group, det_path: str, keep: np.ndarray) -> None:
    """The detector's virtual frames (and the NXdata's link) cut down to ``keep``."""
    det = group[det_path]
    old = det["data"]
    sources = old.virtual_sources()
    shape, dtype, attrs = old.shape, old.dtype, dict(old.attrs)
    frame = shape[1:]
    vspace = h5py.h5s.create_simple((len(keep), *frame))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.zeros((), dtype=dtype))
    block, origin = (1, *frame), (0,) * len(frame)
    by_frame = {}
    for source in sources:  # one mapping per frame (the writer's layout)
        low, high = source.vspace.get_select_bounds()
        for i in range(int(low[0]), int(high[0]) + 1):
            by_frame[i] = (source, i - int(low[0]))
    for new, i in enumerate(keep.tolist()):
        source, offset = by_frame[i]
        src_first = int(source.src_space.get_select_bounds()[0][0]) + offset
        sspace = source.src_space.copy()
        sspace.select_hyperslab((src_first, *origin), block)
        vspace.select_hyperslab((new, *origin), block)
        dcpl.set_virtual(vspace, source.file_name.encode(), source.dset_name.encode(), sspace)
    vspace.select_all()
    del det["data"]
    tid = h5py.h5t.py_create(np.dtype(dtype))
    h5py.h5d.create(det.id, b"data", tid, vspace, dcpl=dcpl).close()
    for key, value in attrs.items():
        if key != "target":
            det["data"].attrs[key] = value
    nxdata = group["data"]
    del nxdata["data"]
    link(nxdata, "data", det["data"])


def _check_geometry(det: h5py.Group, module: h5py.Group, checks: Checks) -> None:
    """``data_size`` (slow, fast: NXmx orders it like the data), ``data_origin`` and the
    beam centre against the frames actually linked; the pixel sizes against the module's."""
    frames = det.get("data")
    if not isinstance(frames, h5py.Dataset) or frames.ndim != 3:
        return
    shape = [int(n) for n in frames.shape[1:]]
    size = module.get("data_size")
    if isinstance(size, h5py.Dataset):
        declared = [int(n) for n in np.atleast_1d(size[()])]
        if declared != shape:
            hint = (
                " (given as fast, slow: NXmx orders data_size like the data, slow then fast)"
                if declared == shape[::-1]
                else ""
            )
            checks.error(
                f"{module.name}/data_size is {declared} but the linked frames are "
                f"{shape[0]} x {shape[1]} (slow, fast){hint}"
            )
    origin = module.get("data_origin")
    if isinstance(origin, h5py.Dataset):
        at = [int(n) for n in np.atleast_1d(origin[()])]
        if len(at) != 2 or not all(0 <= a < n for a, n in zip(at, shape, strict=False)):
            checks.error(f"{module.name}/data_origin {at} is outside the frames {shape}")
    for name, n in (("beam_center_x", shape[1]), ("beam_center_y", shape[0])):
        item = det.get(name)
        if isinstance(item, h5py.Dataset) and _units(item) in ("pixel", "pixels"):
            value = float(item[()])
            if not 0 <= value <= n:
                checks.warning(
                    f"{det.name}/{name} {value:g} pixel is off the frames (0 to {n} pixel)"
                )
    for name, axis in (
        ("x_pixel_size", "fast_pixel_direction"),
        ("y_pixel_size", "slow_pixel_direction"),
    ):
        size_item, direction = det.get(name), module.get(axis)
        if isinstance(size_item, h5py.Dataset) and isinstance(direction, h5py.Dataset):
            if abs(_mm(size_item) - _mm(direction)) > 1e-9 * max(1.0, abs(_mm(direction))):
                checks.error(
                    f"{det.name}/{name} ({_mm(size_item):g} mm) differs from "
                    f"{module.name}/{axis} ({_mm(direction):g} mm)"
                )


def beam_centre_as_length(entry: h5py.Group) -> None:
    """Each detector's ``beam_center_x``/``y`` given in pixels becomes a length (mm, from the
    module's pixel directions, or the detector's ``x_pixel_size``/``y_pixel_size`` without a
    module), as NXdetector, NXmx and NXsas want and scipp reads (scipp has no unit
    "pixel"); a recorded one (an NXlog, or the series kept beside its one value) too.
    Without pixel sizes it stays as it is."""
    instrument = entry.get("instrument")
    if not isinstance(instrument, h5py.Group):
        return
    for det in instrument.values():
        if not isinstance(det, h5py.Group) or det.attrs.get("NX_class") != "NXdetector":
            continue
        module = next(
            (
                g
                for g in det.values()
                if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXdetector_module"
            ),
            None,
        )
        for name, axis, size in (
            ("beam_center_x", "fast_pixel_direction", "x_pixel_size"),
            ("beam_center_y", "slow_pixel_direction", "y_pixel_size"),
        ):
            pixel = module.get(axis) if module is not None else det.get(size)
            if not isinstance(pixel, h5py.Dataset):
                continue
            for where, key in (
                (det, name),
                (det.get(name), "value"),
                (det.get(f"{name}_log"), "value"),
            ):
                item = where.get(key) if isinstance(where, h5py.Group) else None
                if isinstance(item, h5py.Dataset) and _units(item) in ("pixel", "pixels"):
                    value = np.asarray(item[()], dtype=np.float64) * _mm(pixel)
                    del where[key]
                    where.create_dataset(key, data=value).attrs["units"] = "mm"


def _units(item: h5py.Dataset) -> str:
    units = item.attrs.get("units", "")
    return (units.decode() if isinstance(units, bytes) else str(units)).strip()


def _nxmx_detector(group: h5py.Group, entry: Entry, checks: Checks) -> None:
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
        _check_geometry(det, module, checks)
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
        bx, by = one_value(det, "beam_center_x"), one_value(det, "beam_center_y")
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


def _source_in_entry(group: h5py.Group, entry: Entry, checks: Checks) -> None:
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


#: The named builders a definition table's ``step`` may call: what a table cannot say
#: (per-frame tomography angles, the MX sweep and detector chain).
STEPS = {
    "frames_with_rotation": _nxtomo,
    "tomo_geometry": lambda group, entry, checks: _nxtomo_geometry(group, entry),
    "source_in_entry": _source_in_entry,
    "mx_sweep": _nxmx_sweep,
    "mx_detector": _nxmx_detector,
}


def needs_virtual(definition: str) -> bool:
    """Whether frames must be a virtual dataset even from one file: under an application
    definition (NXtomo wants ``data@units``, which only a dataset of the master file can
    carry; pynxtools 0.16 fails on an external link, taking its target's parent from the
    master file)."""
    return bool(definition)
