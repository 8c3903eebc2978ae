"""Write an :class:`Experiment` as one NeXus/HDF5 file: one NXentry per acquisition moment.

The small helpers ``_group`` and ``_field`` own the NeXus rules (``NX_class``,
``units``); no other code sets them by hand. The file is written under a temporary name
and renamed into place once closed.

Provenance (the PV each value came from, its EPICS timestamp, alarm severity and status,
whether it was connected) is kept where the NeXus definitions allow any content: the
NXcollection ``provenance`` of each entry mirrors the entry's tree, one NXcollection per
component and per NXlog at the same relative path (``nexus/provenance.py`` reads it back).
Nothing is added inside the components or the NXlogs, which readers such as scippnexus
take field by field.

- a component's collection: a table with one row per field that holds one reading
  (``field``, ``source_pv``, ``epics_timestamp``, ``alarm_severity``, ``alarm_status``,
  ``connected``), and the component's ``assonant_class``;
- an NXlog's collection: ``source_pv`` and one ``alarm_severity``, ``alarm_status`` and
  ``connected`` per point.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import io
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import assonant_ioc
from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.errors import WriteFailed
from assonant_ioc.model.components import (
    Axis,
    Component,
    ComponentClass,
    DataField,
    Entry,
    Experiment,
    LinkedData,
    SeriesColumns,
    TimeSeries,
    Value,
)
from assonant_ioc.model.readings import Reading, Severity
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.appdef import Checks, beam_centre_as_length, link, needs_virtual
from assonant_ioc.nexus.fill import fill_definition
from assonant_ioc.nexus.provenance import PROVENANCE, mirror
from assonant_ioc.trust import Refused, digest_regular, open_regular

log = logging.getLogger(__name__)


_SCALAR_SPACE = h5py.h5s.create(h5py.h5s.SCALAR)
_STR_DTYPE = h5py.string_dtype()
_ATTR_TYPES = {
    str: h5py.h5t.py_create(_STR_DTYPE, logical=True),
    bool: h5py.h5t.py_create(np.dtype(bool)),
    int: h5py.h5t.py_create(np.dtype(np.int64)),
    float: h5py.h5t.py_create(np.dtype(np.float64)),
}


def _attrs(obj: Any, **values: str | bool | int | float) -> None:
    """Scalar attributes through h5py's low-level API (of an object or its id).

    ``obj.attrs[k] = v`` infers a type, writes under a temporary name and renames;
    with six attributes on each of 20,000 fields that was 70% of a file's write time.
    """
    oid = obj.id if isinstance(obj, h5py.HLObject) else obj
    for name, value in values.items():
        kind = type(value)
        tid = _ATTR_TYPES[kind]
        attr = h5py.h5a.create(oid, name.encode(), tid, _SCALAR_SPACE)
        attr.write(np.array(value, dtype=_STR_DTYPE if kind is str else None))


_NO_COMPRESSION = CompressionSpec()
_COMPRESSION: contextvars.ContextVar[CompressionSpec | None] = contextvars.ContextVar(
    "compression", default=None
)
_CHECKS: contextvars.ContextVar[Checks | None] = contextvars.ContextVar("checks", default=None)


def _filter_options(spec: CompressionSpec) -> dict[str, Any]:
    """h5py ``create_dataset`` options of a compression filter (hdf5plugin's for lz4/zstd)."""
    if spec.filter == "gzip":
        return {"compression": "gzip", "compression_opts": spec.level or 4, "shuffle": True}
    if spec.filter == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if spec.filter in ("bitshuffle-lz4", "zstd"):
        import hdf5plugin

        plugin = (
            hdf5plugin.Bitshuffle(cname="lz4")
            if spec.filter == "bitshuffle-lz4"
            else hdf5plugin.Zstd(clevel=spec.level or 3)
        )
        return dict(plugin)
    return {}


def _array(parent: h5py.Group, name: str, data: Any, dtype: Any = None) -> h5py.Dataset:
    """A dataset, chunked and compressed as configured when it is long enough."""
    spec = _COMPRESSION.get() or _NO_COMPRESSION
    arr = np.asarray(data)
    if arr.ndim == 0 and dtype is None and arr.dtype.kind in "iuf":  # most fields: one number
        return _scalar(parent, name, arr)
    if spec.filter == "none" or arr.size < max(spec.min_points, 1) or arr.dtype.kind in "OSU":
        return parent.create_dataset(name, data=data, dtype=dtype)
    return parent.create_dataset(name, data=arr, dtype=dtype, chunks=True, **_filter_options(spec))


_NUMBER_TYPES: dict[np.dtype[Any], Any] = {}
_SCALAR_DCPL = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
_SCALAR_DCPL.set_obj_track_times(False)  # as h5py's create_dataset: no times in the header


def _scalar(parent: h5py.Group, name: str, arr: np.ndarray) -> h5py.Dataset:
    """One number as a dataset through h5py's low-level API (the same dataset h5py's
    ``create_dataset`` makes, in a fifth of its time: 10,000 fields a snapshot)."""
    tid = _NUMBER_TYPES.get(arr.dtype)
    if tid is None:
        tid = _NUMBER_TYPES[arr.dtype] = h5py.h5t.py_create(arr.dtype)
    dsid = h5py.h5d.create(parent.id, name.encode(), tid, _SCALAR_SPACE, dcpl=_SCALAR_DCPL)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
    return h5py.Dataset(dsid)


#: EPICS alarm severities, stored one way everywhere (snapshot tables and NXlog points): an
#: HDF5 enumeration of int8 codes whose names every HDF5 reader shows (h5dump, h5py's
#: ``h5py.check_enum_dtype``)
SEVERITY_DTYPE = h5py.enum_dtype({s.name: int(s) for s in Severity}, basetype="i1")


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    _attrs(group, NX_class=nx_class)
    return group


def _field(parent: h5py.Group, name: str, data: Any, units: str = "") -> h5py.Dataset:
    dset = _array(parent, name, data)
    if units:
        _attrs(dset, units=units)
    return dset


class _Rows:
    """A component's provenance table: one row per field holding one reading."""

    def __init__(self) -> None:
        self.fields: list[str] = []
        self.readings: list[Reading] = []
        self.extra: dict[str, Any] = {}

    def add(self, field: str, r: Reading) -> None:
        self.fields.append(field)
        self.readings.append(r)

    def write(self, group: h5py.Group) -> None:
        if not self.fields and not self.extra:
            return
        table = mirror(group)
        rs = self.readings
        if rs:
            table.create_dataset("field", data=np.array(self.fields, dtype=_STR_DTYPE))
            table.create_dataset("source_pv", data=np.array([r.source for r in rs], _STR_DTYPE))
            stamps = np.array([iso(r.timestamp) for r in rs], dtype=_STR_DTYPE)
            table.create_dataset("epics_timestamp", data=stamps)
            severities = np.array([int(r.severity) for r in rs], dtype=np.int8)
            table.create_dataset("alarm_severity", data=severities, dtype=SEVERITY_DTYPE)
            table.create_dataset("alarm_status", data=np.array([r.status for r in rs], np.int16))
            table.create_dataset("connected", data=np.array([r.connected for r in rs], bool))
        for name, value in self.extra.items():
            table.create_dataset(name, data=value)


def _scalar_data(r: Reading) -> Any:
    if r.value is None:  # never invent a value: NaN (or "") flagged connected=False, INVALID
        return "" if r.dtype == "str" else np.full(r.shape, np.nan)
    if r.dtype == "str":
        return r.value if r.shape == () else np.array(r.value, dtype=h5py.string_dtype())
    return np.asarray(r.value, dtype=r.dtype).reshape(r.shape)


def _series_data(readings: tuple[Reading, ...]) -> Any:
    """Stack the values of a series; a disconnected point is NaN (numbers) or '' (strings)."""
    known = [r for r in readings if r.value is not None]
    if not known:
        return np.full(len(readings), np.nan)
    first = known[0]
    if first.dtype == "str":
        return np.array(
            ["" if r.value is None else str(r.value) for r in readings], dtype=h5py.string_dtype()
        )
    missing = len(known) != len(readings)
    dtype = np.float64 if missing else np.dtype(first.dtype)
    if first.shape == () and all(r.shape == () for r in known):  # the common case, fast
        values = (np.nan if r.value is None else r.value for r in readings)
        return np.fromiter(values, dtype=dtype, count=len(readings))
    fill = np.full(first.shape, np.nan)
    return np.stack(
        [
            np.asarray(r.value, dtype=dtype).reshape(first.shape)
            if r.value is not None and r.shape == first.shape
            else fill
            for r in readings
        ]
    ).astype(dtype)


def _write_value(
    parent: h5py.Group, name: str, value: Value, t0: float, rows: _Rows, row_name: str = ""
) -> h5py.HLObject:
    """A field as a dataset (its provenance a row of ``rows``), or a time series as an NXlog."""
    if isinstance(value, DataField):
        dset = _field(parent, name, _scalar_data(value.reading), value.units)
        rows.add(row_name or name, value.reading)
        return dset
    return _write_log(parent, name, value, t0)


def _write_log(parent: h5py.Group, name: str, series: TimeSeries, t0: float) -> h5py.Group:
    """An NXlog; ``time`` is seconds from ``t0`` (the recording start; the first point,
    the value held when recording began, may be earlier)."""
    log_group = _group(parent, name, "NXlog")
    cols = series.columns
    if cols is not None and cols.staged and cols.staged in parent.file:
        return _link_log(log_group, cols, series.units, t0)
    if cols is not None:  # a recording from the journal: its columns as they are
        values: Any = cols.values
        if cols.dtype == "str":
            values = np.array(values, dtype=_STR_DTYPE)
        stamps = np.asarray(cols.times, dtype=np.float64)
        severity = np.asarray(cols.severity, dtype=np.int8)
        status = np.asarray(cols.status, dtype=np.int16)
        connected = np.asarray(cols.connected, dtype=bool)
        source = cols.source if len(cols) else ""
    else:
        readings = series.readings
        values = _series_data(readings)
        stamps = np.array([r.timestamp for r in readings], dtype=np.float64)
        severity = np.array([int(r.severity) for r in readings], dtype=np.int8)
        status = np.array([r.status for r in readings], dtype=np.int16)
        connected = np.array([r.connected for r in readings], dtype=bool)
        source = readings[0].source if readings else ""
    _field(log_group, "value", values, series.units)
    t = _field(log_group, "time", stamps - t0, "s")
    _attrs(t, start=iso(t0))
    where = mirror(log_group)
    where.create_dataset("source_pv", data=source)
    _array(where, "alarm_severity", np.asarray(severity, dtype=np.int8), SEVERITY_DTYPE)
    _array(where, "alarm_status", status)
    _array(where, "connected", connected)
    return log_group


def _link_log(log_group: h5py.Group, cols: SeriesColumns, units: str, t0: float) -> h5py.Group:
    """An NXlog of columns staged while recording (``lifecycle.staging``): the staged
    datasets linked in, not written again (their times are from ``t0`` already: the staging
    checks that its start is the entry's). Low-level calls: a thousand PVs' links cost what
    a thousand datasets' creation would."""
    gid, staged = log_group.id, cols.staged.encode()
    for name in (b"value", b"time"):
        gid.links.create_hard(name, gid, staged + b"/" + name)
    value = h5py.h5o.open(gid, b"value")
    if units and not h5py.h5a.exists(value, b"units"):
        _attrs(value, units=units)
    t = h5py.h5o.open(gid, b"time")
    if not h5py.h5a.exists(t, b"units"):
        _attrs(t, units="s", start=iso(t0))
    where = mirror(log_group)
    where.create_dataset("source_pv", data=cols.source)
    wid = where.id
    for name in (b"alarm_severity", b"alarm_status", b"connected"):
        wid.links.create_hard(name, wid, staged + b"/" + name)
    return log_group


def _write_axes(group: h5py.Group, comp: Component, t0: float, rows: _Rows) -> None:
    """Axes in an NXtransformations group, the component's ``depends_on`` naming the first.

    A detector module's axes (``fast_pixel_direction``, ``slow_pixel_direction``,
    ``module_offset``) are fields of the NXdetector_module itself, as NeXus defines them.
    """
    in_place = comp.component_class is ComponentClass.DETECTOR_MODULE
    trans = group if in_place else _group(group, "transformations", "NXtransformations")
    base = trans.name

    def path(axis_name: str) -> str:
        return "." if axis_name == "." else f"{base}/{axis_name}"

    prefix = "" if in_place else "transformations/"
    for name, axis in comp.axes.items():
        dset = _write_axis(trans, name, axis, t0, rows, prefix + name)
        dset.attrs["depends_on"] = path(axis.depends_on)
        if isinstance(axis.value, TimeSeries) and not in_place:
            _write_log(group, name, axis.value, t0)
    head = comp.first_axis
    if head is not None and "depends_on" not in group and not in_place:
        group.create_dataset("depends_on", data=path(head))


def _write_axis(
    trans: h5py.Group, name: str, axis: Axis, t0: float, rows: _Rows, row_name: str
) -> h5py.Dataset:
    """An axis: one value (a row of ``rows``), or the recorded positions (their NXlog of the
    same name in the component holds their provenance)."""
    value = axis.value
    if isinstance(value, DataField):
        dset = _write_value(trans, name, value, t0, rows, row_name)
        assert isinstance(dset, h5py.Dataset)
    else:
        cols = value.columns
        data = _series_data(value.readings) if cols is None else cols.values
        if cols is not None and cols.dtype == "str":
            data = np.array(data, dtype=_STR_DTYPE)
        dset = _field(trans, name, data, value.units)
    dset.attrs["transformation_type"] = axis.transformation_type.value
    dset.attrs["vector"] = np.array(axis.vector, dtype=np.float64)
    if axis.offset is not None:
        dset.attrs["offset"] = np.array(axis.offset, dtype=np.float64)
        dset.attrs["offset_units"] = value.units
    return dset


def _link_frames(
    group: h5py.Group, linked: LinkedData, master_dir: Path, rows: _Rows, virtual: bool = False
) -> str | None:
    """``group/data``: the detector's frames through an external link (one file) or a virtual
    dataset (several), with paths relative to the master file so the directory can move.

    Only the files' metadata is read: the master file takes the same time for 10 MB or 10 GB.
    Returns the link's path, or None when there is nothing to link.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    dtype = None
    unusable: list[str] = []
    for path in linked.files:
        if not Path(path).exists():
            continue
        try:
            os.close(open_regular(Path(path), "detector file"))  # no device, FIFO or directory
            with h5py.File(path, "r") as src:
                dset = src[linked.dataset]
                shape, dtype = tuple(dset.shape), dtype or dset.dtype
        except (OSError, KeyError, TypeError, Refused) as err:  # not HDF5, not a file, no frames
            log.warning("%s: detector file %s unusable: %s", group.name, path, err)
            unusable.append(path)
            continue
        first = next(iter(shapes.values()), shape)
        if len(shape) < 2 or shape[1:] != first[1:]:
            log.warning("%s: %s has frames %s, not %s", group.name, path, shape[1:], first[1:])
            unusable.append(path)
            continue
        shapes[path] = shape
    missing = [f for f in linked.files if f not in shapes and f not in unusable]
    for name, files in (("missing_files", missing), ("unusable_files", unusable)):
        if files:  # named, never fatal: the other frames and the metadata are still written
            rows.extra[name] = np.array(files, dtype=_STR_DTYPE)
    if missing:
        log.warning("%s: detector file(s) not found: %s", group.name, ", ".join(missing))
    _sources(group, linked, shapes, rows)
    if not linked.files:
        return None
    if linked.files[0] in unusable and not shapes:
        return None  # never a link to what is not a detector's file
    if (len(linked.files) == 1 and not virtual) or not shapes:
        rel = os.path.relpath(linked.files[0], master_dir)
        group["data"] = h5py.ExternalLink(rel, linked.dataset)
        return f"{group.name}/data"
    _virtual_frames(group, "data", shapes, linked.dataset, master_dir, dtype)
    return f"{group.name}/data"


def _sources(
    group: h5py.Group, linked: LinkedData, shapes: Mapping[str, tuple[int, ...]], rows: _Rows
) -> None:
    """What each detector file was when it was linked (``source_files``: path, size, mtime,
    sha256, frames expected and linked), so a reader can tell when one has changed or gone;
    a file missing, unusable or holding fewer frames than the detector said is an error of
    the writer's checks, named with its counts."""
    checks = _CHECKS.get()
    table: dict[str, list[Any]] = {k: [] for k in SOURCE_COLUMNS}
    for path in linked.files:
        expected = linked.expected_of(path)
        frames = shapes[path][0] if path in shapes else 0
        size, mtime, digest = -1, "", ""
        with contextlib.suppress(OSError, Refused):
            stat = os.stat(path)
            size, mtime = stat.st_size, iso(stat.st_mtime)
            digest = digest_regular(Path(path), "detector file").sha256  # bounded, regular
        for key, value in zip(
            SOURCE_COLUMNS, (path, size, mtime, digest, expected, frames), strict=True
        ):
            table[key].append(value)
        if checks is None:
            continue
        said = f"{expected} expected" if expected >= 0 else "none said by the detector"
        if path not in shapes:
            why = "missing" if size < 0 else "unusable"
            checks.error(f"{group.name}: detector file {path} {why}: 0 frames linked ({said})")
        elif expected >= 0 and frames < expected:
            checks.error(
                f"{group.name}: detector file {path} holds {frames} of the {expected} frames "
                f"the detector captured: {frames} linked"
            )
        elif expected >= 0 and frames > expected:
            checks.warning(
                f"{group.name}: detector file {path} holds {frames} frames, the detector said "
                f"{expected}: {frames} linked"
            )
    for key in SOURCE_COLUMNS:
        kind = _STR_DTYPE if key in ("path", "mtime", "sha256") else np.int64
        rows.extra[f"source_{key}"] = np.array(table[key], dtype=kind)


#: The columns of a detector's ``source_*`` provenance table, one row per linked file.
SOURCE_COLUMNS = ("path", "size", "mtime", "sha256", "frames_expected", "frames_linked")


def _virtual_frames(
    group: h5py.Group,
    name: str,
    shapes: Mapping[str, tuple[int, ...]],
    dataset: str,
    master_dir: Path,
    dtype: Any,
) -> None:
    """A virtual dataset over the files' frames, one mapping per frame.

    One mapping per file would do for HDF5, but nexusformat (NeXpy) reads a virtual dataset
    as one frame per mapping. Through the low-level API a mapping costs about 9 us and
    120 bytes of the master file (10,000 frames: about 0.1 s and 1.2 MB).
    """
    frame = next(iter(shapes.values()))[1:]
    total = sum(s[0] for s in shapes.values())
    vspace = h5py.h5s.create_simple((total, *frame))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.zeros((), dtype=dtype))
    block = (1, *frame)
    origin = (0,) * len(frame)
    start = 0
    for path, shape in shapes.items():
        sspace = h5py.h5s.create_simple(shape)
        file_name = os.path.relpath(path, master_dir).encode()
        for i in range(shape[0]):
            vspace.select_hyperslab((start + i, *origin), block)
            sspace.select_hyperslab((i, *origin), block)
            dcpl.set_virtual(vspace, file_name, dataset.encode(), sspace)
        start += shape[0]
    vspace.select_all()
    tid = h5py.h5t.py_create(np.dtype(dtype))
    h5py.h5d.create(group.id, name.encode(), tid, vspace, dcpl=dcpl).close()


#: a virtual dataset over files' datasets, one mapping per first-axis item
virtual_dataset = _virtual_frames


def _write_component(
    parent: h5py.Group, comp: Component, t0: float, master_dir: Path, virtual: bool = False
) -> list[str]:
    """Write ``comp`` and its subcomponents; returns the paths of linked detector data."""
    group = _group(parent, comp.name, comp.component_class.nx_class)
    rows = _Rows()
    rows.extra["assonant_class"] = comp.component_class.value
    kind = comp.component_class.insertion_device_type
    if kind and "type" not in comp.fields:
        group.create_dataset("type", data=kind)
    for name, value in comp.fields.items():
        _write_value(group, name, value, t0, rows)
    if comp.axes:
        _write_axes(group, comp, t0, rows)
    linked = []
    if comp.data is not None:
        path = _link_frames(group, comp.data, master_dir, rows, virtual)
        linked += [path] if path else []
    rows.write(group)
    for sub in comp.subcomponents:
        linked += _write_component(group, sub, t0, master_dir, virtual)
    return linked


def _recorded_series(entry: Entry) -> list[str]:
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


def _plot_series(group: h5py.Group, entry: Entry) -> bool:
    """An NXdata of the first recorded numeric series against time (``@default`` on the
    entry), so that viewers open on something without detector frames too."""
    for path in _recorded_series(entry):
        log_group = group.get(path)
        if not isinstance(log_group, h5py.Group) or "value" not in log_group:
            continue
        value, time = log_group["value"], log_group["time"]
        if value.ndim != 1 or value.dtype.kind not in "iuf" or len(value) == 0:
            continue
        name = path.rsplit("/", 1)[-1]
        signal = name if name != "time" else "value"
        nxdata = _group(group, "data", "NXdata")
        link(nxdata, signal, value)
        link(nxdata, "time", time)
        _attrs(nxdata, signal=signal, axes="time")
        _attrs(group, default="data")
        return True
    return False


#: Array fields that describe a geometry, not something to plot.
_NOT_PLOTTED = {"data_origin", "data_size", "data_stride", "vector", "offset"}


def _has_array(entry: Entry) -> bool:
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


def _plot_array(group: h5py.Group) -> bool:
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
    nxdata = _group(group, "data", "NXdata")
    link(nxdata, signal, found[0])
    _attrs(nxdata, signal=signal)
    _attrs(group, default="data")
    return True


def _write_entry(
    root: h5py.File, x: Experiment, entry: Entry, master_dir: Path, checks: Checks
) -> int:
    """Write one NXentry; returns what it has to plot: 3 detector frames, 2 a recorded
    series, 1 a snapshot's waveform, 0 nothing."""
    group = _group(root, entry.moment.entry_name, "NXentry")
    # the proposal's place is experiment_identifier; with one, the experiment's own id is
    # the entry's entry_identifier (without, experiment_identifier holds it, as it did)
    group.create_dataset("experiment_identifier", data=x.proposal or x.experiment_id)
    if x.proposal:
        group.create_dataset("entry_identifier", data=x.experiment_id)
    group.create_dataset("title", data=f"{x.beamline} {x.experiment_id} {entry.moment.entry_name}")
    if x.comment:
        group.create_dataset("experiment_description", data=x.comment)
    group.create_dataset("start_time", data=iso(entry.start_time))
    group.create_dataset("end_time", data=iso(entry.end_time))
    instrument = _group(group, "instrument", "NXinstrument")
    instrument.create_dataset("name", data=x.beamline)
    definition = x.definition if entry is x.exposure else ""
    virtual = needs_virtual(definition)
    linked: list[str] = []
    for comp in entry.instrument:
        linked += _write_component(instrument, comp, entry.start_time, master_dir, virtual)
    if entry.sample is not None:
        sample = entry.sample
        if sample.component_class is not ComponentClass.SAMPLE:
            sample = Component(
                sample.name, ComponentClass.SAMPLE, sample.fields, sample.axes, sample.subcomponents
            )
        linked += _write_component(group, sample, entry.start_time, master_dir)
        if "name" not in group[sample.name]:
            group[sample.name].create_dataset("name", data=x.sample_name or sample.name)
    if linked:
        # viewers (NeXpy, silx, h5web) open on the frames: NXdata, @signal, @default
        nxdata = _group(group, "data", "NXdata")
        if isinstance(group.get(linked[0], getlink=True), h5py.HardLink):
            link(nxdata, "data", group[linked[0]])
        else:  # an external link: its target is in the detector's file
            nxdata["data"] = h5py.SoftLink(linked[0])
        _attrs(nxdata, signal="data")
        _attrs(group, default="data")
    plot = (
        3
        if linked
        else 2
        if _plot_series(group, entry)
        else int(_has_array(entry) and _plot_array(group))
    )
    if definition:
        fill_definition(definition, group, entry, checks)
    beam_centre_as_length(group)
    return plot


def write_experiment(
    x: Experiment,
    final_path: str | os.PathLike[str],
    compression: CompressionSpec | None = None,
    notes: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write ``x`` to ``final_path``, never overwriting; returns the path (blocking).

    ``compression`` chunks and compresses datasets (time series, arrays) that are long enough;
    ``notes`` (entry name -> note name -> text) become NXnote groups in those entries.
    """
    final = Path(final_path)
    tmp = write_partial(x, final, compression, notes)
    publish(tmp, final)
    return final


def partial_path(final: Path) -> Path:
    """The hidden name a file is written under until it is complete."""
    return final.with_name(f".{final.name}.partial")


def write_partial(
    x: Experiment,
    final: Path,
    compression: CompressionSpec | None = None,
    notes: Mapping[str, Mapping[str, str]] | None = None,
    sync: bool = True,
    staged: bool = False,
) -> Path:
    """Write ``x`` under the hidden name of ``final`` and sync it (unless ``sync`` is false:
    the caller adds to it and then syncs it); returns that name. ``staged``: that file is
    there already, holding the recording's columns (``lifecycle.staging``), and is written
    into; the staging group is gone when it is done.

    Any failure (a full disk, a bad value) removes the partial file and raises WriteFailed.
    """
    token = _COMPRESSION.set(compression or CompressionSpec())
    tmp = partial_path(final)
    # a failed write (a full disk) makes h5py report every object it then fails to close, as
    # a traceback each on stderr (hundreds): counted here, said once in the error
    ignored = [0]
    hook, stderr = sys.unraisablehook, sys.stderr
    sys.unraisablehook = lambda _info: ignored.__setitem__(0, ignored[0] + 1)
    sys.stderr = _Tracebacks(ignored)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise FileExistsError(f"{final} exists; refusing to overwrite it")
        with h5py.File(tmp, "r+" if staged else "w") as f:
            f.attrs["NX_class"] = "NXroot"
            f.attrs["file_name"] = final.name
            f.attrs["file_time"] = iso(x.end_time)
            f.attrs["creator"] = f"assonant-ioc {assonant_ioc.__version__}"
            f.attrs["HDF5_Version"] = h5py.version.hdf5_version
            f.attrs["h5py_version"] = h5py.version.version
            checks = Checks()
            checks_token = _CHECKS.set(checks)
            plots = {
                e.moment.entry_name: _write_entry(f, x, e, final.parent.resolve(), checks)
                for e in x.entries
            }
            _write_checks(f, x, checks)
            _CHECKS.reset(checks_token)
            if STAGING_GROUP in f:  # its datasets are linked where they belong
                del f[STAGING_GROUP]
            if plots:  # the viewers open on the frames, else on a recorded series
                best = max(plots.values())
                _attrs(f, default=next(n for n, p in plots.items() if p == best))
            for entry_name, entry_notes in (notes or {}).items():
                if entry_name in f:
                    for name, text in entry_notes.items():
                        note = _group(f[entry_name], name, "NXnote")
                        note.create_dataset("type", data="text/plain")
                        note.create_dataset("description", data=text)
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
    except Exception as err:
        gc.collect()  # the failed file's objects, closed (and their errors counted) now
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        also = f" ({ignored[0]} HDF5 close errors after it)" if ignored[0] else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise WriteFailed(f"cannot write {final}: {type(err).__name__}: {first}{also}") from err
    finally:
        sys.unraisablehook, sys.stderr = hook, stderr
        _COMPRESSION.reset(token)
    return tmp


#: The staging file's group of a recording's columns (``lifecycle.staging.GROUP``).
STAGING_GROUP = "staging"

#: Where the writer's own findings are kept: the exposure entry's provenance collection.
CHECKS = "checks"


def _write_checks(f: h5py.File, x: Experiment, checks: Checks) -> None:
    """The writer's findings (``error: ...``/``warning: ...``) in the exposure entry's
    provenance collection, for ``checks_of`` (the event, the validators, ``inspect``)."""
    found = [f"error: {e}" for e in checks.errors] + [f"warning: {w}" for w in checks.warnings]
    if not found or x.exposure is None:
        return
    entry = f[x.exposure.moment.entry_name]
    collection = entry.get(PROVENANCE) or _group(entry, PROVENANCE, "NXcollection")
    collection.create_dataset(CHECKS, data=np.array(found, dtype=_STR_DTYPE))


def checks_of(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) the writer found in the file at ``path``."""
    errors: list[str] = []
    warnings: list[str] = []
    with h5py.File(path, "r", locking=False) as f:
        for entry in f.values():
            found = entry.get(f"provenance/{CHECKS}") if isinstance(entry, h5py.Group) else None
            if not isinstance(found, h5py.Dataset):
                continue
            for item in found.asstr()[()].tolist():
                kind, _, text = item.partition(": ")
                (errors if kind == "error" else warnings).append(text)
    return errors, warnings


class _Tracebacks(io.StringIO):
    """stderr while a file is written: what h5py prints of objects it cannot close after a
    failed write is counted (one per traceback), not printed."""

    def __init__(self, count: list[int]) -> None:
        super().__init__()
        self.count = count

    def write(self, text: str) -> int:
        self.count[0] += text.count("Traceback (most recent call last)")
        return len(text)


def publish(tmp: Path, final: Path) -> None:
    """Give the complete file ``tmp`` its final name (atomic; never overwrites), durably."""
    try:
        os.link(tmp, final)  # fails rather than overwrite a file that appeared
        tmp.unlink()
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise WriteFailed(f"cannot name {final}: {err}") from err
    log.info("wrote %s", final)
