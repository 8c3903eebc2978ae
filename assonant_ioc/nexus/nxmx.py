"""NXmx from what was recorded: the rotation sweep (each image's omega at the start of its
oscillation, its end, the scan axis), the detector chain (module, transformations, beam centre
as a length), frames kept or dropped where the motor log says the sweep was not constant;
every doubt a named check."""

from __future__ import annotations

import logging
from typing import Any

import h5py
import numpy as np

from assonant_ioc.config.units import registry, unit_problem
from assonant_ioc.model.components import (
    ComponentClass,
    Entry,
)
from assonant_ioc.nexus.appdef import (
    Checks,
    exposures,
    frame_table,
    in_any_entry,
    link,
    one_value,
    rotation_of,
)
from assonant_ioc.nexus.frames import constant_step, positions_at

log = logging.getLogger(__name__)


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


def nxmx_sweep(group: h5py.Group, entry: Entry, checks: Checks) -> None:
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
    rotation = rotation_of(sample)
    trans = group.get(f"{sample.name}/transformations")
    if rotation is None or not isinstance(trans, h5py.Group) or rotation[0] not in trans:
        return
    name, log_t, log_v, units = rotation
    det_path = _detector_of(group, data)
    keys, stamps = frame_table(entry, data)
    start, end = exposures(group, group[det_path], entry, stamps, checks)
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


def nxmx_detector(group: h5py.Group, entry: Entry, checks: Checks) -> None:
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
        distance = in_any_entry(group, f"{det.name}/distance")
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
