"""A definition table's ``fill`` steps, run on the NXentry holding the exposure.

The table (``assonant_ioc/definitions/<name>.yaml``) says what to add; each step kind is
written once here (see :data:`assonant_ioc.definitions.FILL_OPS`). A step whose source
the entry does not hold is skipped and logged (what a definition requires was checked when
the config loaded); one that cannot give what it must (a ``points`` series with no point)
is an error in the file's checks.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import h5py
import numpy as np

from assonant_ioc import definitions
from assonant_ioc.model.components import Component, Entry
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.appdef import (
    Checks,
    link,
    nxtomo,
    nxtomo_geometry,
    one_value,
    source_in_entry,
)
from assonant_ioc.nexus.nxmx import nxmx_detector, nxmx_sweep
from assonant_ioc.nexus.provenance import mirror, mirror_path, move

log = logging.getLogger(__name__)

_PLACE = re.compile(r"\{([^{}]+)\}")


class _Paths:
    """``{Detector}`` (the first of the class; a detector with frames first), ``{name:i0}``,
    ``{sample}``, ``{end_time}`` in a step's text."""

    def __init__(self, entry: Entry) -> None:
        self.by_class: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        framed: set[str] = set()

        def walk(path: str, comp: Component) -> None:
            cls = comp.component_class.value
            if comp.data is not None and cls not in framed:  # the detector with frames first
                framed.add(cls)
                self.by_class[cls] = path
            self.by_class.setdefault(cls, path)
            self.by_name.setdefault(comp.name, path)
            for sub in comp.subcomponents:
                walk(f"{path}/{sub.name}", sub)

        for comp in entry.instrument:
            walk(f"instrument/{comp.name}", comp)
        self.values = {"end_time": iso(entry.end_time)}
        if entry.sample is not None:
            self.values["sample"] = entry.sample.name

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str):
            return text

        def one(match: re.Match[str]) -> str:
            key = match[1]
            if key.startswith("name:"):
                return self.by_name.get(key[5:], f"instrument/{key[5:]}")
            return self.values.get(key) or self.by_class.get(key, f"instrument/{key}")

        return _PLACE.sub(one, text)


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _values(item: Any) -> tuple[np.ndarray, str] | None:
    """(values, units) of a dataset or of an NXlog's ``value``."""
    if isinstance(item, h5py.Group) and "value" in item:
        item = item["value"]
    if not isinstance(item, h5py.Dataset):
        return None
    units = item.attrs.get("units", "")
    return np.asarray(item[()]), units.decode() if isinstance(units, bytes) else str(units)


def _times(item: Any) -> np.ndarray | None:
    """POSIX times of an NXlog's points (its ``time`` from ``time@start``)."""
    if not isinstance(item, h5py.Group) or "time" not in item:
        return None
    from datetime import datetime

    start = item["time"].attrs.get("start", "")
    start = start.decode() if isinstance(start, bytes) else str(start)
    t0 = datetime.fromisoformat(start).timestamp() if start else 0.0
    return np.asarray(item["time"][()], dtype=np.float64) + t0


def _create(group: h5py.Group, path: str, data: Any, units: str = "") -> h5py.Dataset | None:
    parent_path, name = _split(path)
    parent = group.require_group(parent_path) if parent_path else group
    if name in parent:
        return None
    dset = parent.create_dataset(name, data=data)
    if units:
        dset.attrs["units"] = units
    return dset


def _points(group: h5py.Group, spec: dict[str, Any], at: _Paths, checks: Checks, what: str) -> None:
    """One row per reading of ``spec['at']`` taken during the recording (not the value it
    held when the recording began): each field's value held at that instant
    (the last reading at or before it; a field recorded once keeps that value). Each
    NXlog moves to ``<name>_log`` beside its per-point values."""
    anchor = group.get(at(spec["at"]))
    times = _times(anchor)
    if times is not None:  # readings during the recording (not the value held at its start)
        times = times[np.asarray(anchor["time"][()]) >= 0]
    if times is None or times.size == 0:
        checks.error(f"{what}: {spec['at']} was not recorded: no points")
        return
    for item in spec.get("fields", ()):
        source, target = (item, item) if isinstance(item, str) else (item["from"], item["to"])
        source, target = at(source), at(target)
        log_group = group.get(source)
        found, when = _values(log_group), _times(log_group)
        if found is None or when is None or when.size == 0:
            log.info("%s: %s not recorded: no per-point values", what, source)
            continue
        values, units = found
        index = np.clip(np.searchsorted(when, times + 1e-9, side="right") - 1, 0, None)
        per_point = values[index]
        if source == target:
            parent_path, name = _split(source)
            move(group[parent_path] if parent_path else group, name, f"{name}_log")
        _create(group, target, per_point, units)


def _here_or_before(group: h5py.Group, path: str) -> Any:
    """``group[path]``, else the same field in another entry of the file (a calibration
    captured in the snapshot before the exposure)."""
    found = group.get(path)
    if found is None:
        for other in group.file.values():
            if isinstance(other, h5py.Group) and other.name != group.name and path in other:
                return other[path]
    return found


def _calibration(group: h5py.Group, spec: dict[str, Any], at: _Paths, what: str) -> None:
    """``to`` = c0 + c1 * channel + c2 * channel**2 ... over an axis of ``channels`` (the
    last unless ``axis`` says)."""
    channels = group.get(at(spec["channels"]))
    coefficients = [_values(_here_or_before(group, at(c))) for c in spec["coefficients"]]
    if not isinstance(channels, h5py.Dataset) or any(c is None for c in coefficients):
        log.info("%s: no %s or its calibration: no energy axis", what, spec["channels"])
        return
    n = np.arange(channels.shape[int(spec.get("axis", -1))], dtype=np.float64)
    axis = sum(float(np.ravel(c[0])[0]) * n**i for i, c in enumerate(coefficients) if c)
    _create(group, at(spec["to"]), axis, next((c[1] for c in coefficients if c), ""))


def _plot(group: h5py.Group, spec: dict[str, Any], at: _Paths, what: str) -> None:
    """The entry's NXdata ``data`` (its ``@default``): the signal and its axes."""
    signal = group.get(at(spec["signal"]))
    if not isinstance(signal, h5py.Dataset):
        log.info("%s: no %s to plot", what, spec["signal"])
        return
    if "data" in group:
        del group["data"]
    nxdata = group.create_group("data")
    nxdata.attrs["NX_class"] = "NXdata"
    name = _split(signal.name)[1]
    link(nxdata, name, signal)
    axes = []
    for path in spec.get("axes", ()):
        axis = group.get(at(path)) if path != "." else None
        if isinstance(axis, h5py.Dataset):
            axes.append(_split(axis.name)[1])
            if axes[-1] not in nxdata:
                link(nxdata, axes[-1], axis)
        else:
            axes.append(".")
    nxdata.attrs["signal"] = name
    if axes:
        nxdata.attrs["axes"] = np.array(axes, dtype=h5py.string_dtype())
    group.attrs["default"] = "data"


def _move(item: h5py.HLObject, parent: h5py.Group, name: str) -> None:
    """Move ``item`` to ``parent/name``, its provenance collection with it."""
    where = item.file.get(mirror_path(item))
    new = f"{parent.name}/{name}"
    item.file.move(item.name, new)
    if isinstance(where, h5py.Group):
        target = mirror_path(item.file[new])
        if parent.name.count("/") > 1:  # below the entry: its collections made first
            mirror(parent)
        item.file.move(where.name, target)


def fill_definition(definition: str, group: h5py.Group, entry: Entry, checks: Checks) -> None:
    """Write ``definition`` and what its table derives into the NXentry ``group``."""
    group.create_dataset("definition", data=definition)
    at = _Paths(entry)
    what = f"{group.name} ({definition})"
    for step in definitions.get(definition).fill:
        ((op, spec),) = step.items()
        if op == "step":
            STEPS[spec](group, entry, checks)
        elif op == "one_value":
            for path in spec:
                parent_path, name = _split(at(path))
                parent = group.get(parent_path) if parent_path else group
                if not isinstance(parent, h5py.Group):
                    continue
                earlier = _here_or_before(group, at(path)) if name not in parent else None
                if isinstance(earlier, h5py.Dataset):  # not recorded: its snapshot value
                    copy = parent.create_dataset(name, data=earlier[()])
                    if "units" in earlier.attrs:
                        copy.attrs["units"] = earlier.attrs["units"]
                one_value(parent, name)
        elif op == "points":
            _points(group, spec, at, checks, what)
        elif op == "field":
            _create(group, at(spec["at"]), at(spec["value"]), str(spec.get("units", "")))
        elif op == "group":
            where = group.require_group(at(spec["at"]))
            where.attrs["NX_class"] = spec["class"]
        elif op == "move":
            source, (parent_path, name) = group.get(at(spec["from"])), _split(at(spec["to"]))
            parent = group.require_group(parent_path) if parent_path else group
            if source is not None and name not in parent:
                _move(source, parent, name)
        elif op == "link":
            source, (parent_path, name) = group.get(at(spec["from"])), _split(at(spec["to"]))
            parent = group.require_group(parent_path) if parent_path else group
            if source is None:
                log.info("%s: no %s to link as %s", what, spec["from"], spec["to"])
            elif name not in parent:
                link(parent, name, source)
        elif op == "sum":
            found = _values(group.get(at(spec["from"])))
            if found is not None:
                _create(group, at(spec["to"]), float(np.nansum(found[0])), found[1])
        elif op == "calibration":
            _calibration(group, spec, at, what)
        elif op == "log_ratio":
            top, bottom = (
                _values(group.get(at(spec["numerator"]))),
                _values(group.get(at(spec["denominator"]))),
            )
            if top is not None and bottom is not None and top[0].shape == bottom[0].shape:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.log(top[0].astype(np.float64) / bottom[0].astype(np.float64))
                _create(group, at(spec["to"]), ratio, "")
        elif op == "plot":
            _plot(group, spec, at, what)


#: The named builders a definition table's ``step`` may call: what a table cannot say
#: (per-frame tomography angles, the MX sweep and detector chain).
STEPS = {
    "frames_with_rotation": nxtomo,
    "tomo_geometry": lambda group, entry, checks: nxtomo_geometry(group, entry),
    "source_in_entry": source_in_entry,
    "mx_sweep": nxmx_sweep,
    "mx_detector": nxmx_detector,
}
