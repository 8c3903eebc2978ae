"""Write an :class:`Experiment` as one NeXus/HDF5 file: one NXentry per acquisition moment.

The small helpers ``nx_group`` and ``nx_field`` (``nexus/h5.py``) own the NeXus rules
(``NX_class``, ``units``); no other code sets them by hand. The file is written under a
temporary name and renamed into place once closed (``nexus/publish.py``).

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
import gc
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

import assonant_ioc
from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.errors import WriteFailed
from assonant_ioc.model.components import Component, ComponentClass, DataField, TimeSeries
from assonant_ioc.model.readings import Reading
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.appdef import Checks, link, needs_virtual
from assonant_ioc.nexus.fill import fill_definition
from assonant_ioc.nexus.h5 import (
    COMPRESSION,
    SEVERITY_DTYPE,
    STR_DTYPE,
    nx_array,
    nx_attrs,
    nx_field,
    nx_group,
)
from assonant_ioc.nexus.linking import CHECKS_FOUND, link_frames
from assonant_ioc.nexus.nxmx import beam_centre_as_length
from assonant_ioc.nexus.plot import has_array, plot_array, plot_series
from assonant_ioc.nexus.provenance import Rows, mirror
from assonant_ioc.nexus.publish import Tracebacks, partial_path, publish, write_checks

if TYPE_CHECKING:
    from assonant_ioc.model.components import Axis, Entry, Experiment, SeriesColumns, Value

log = logging.getLogger(__name__)


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
    parent: h5py.Group, name: str, value: Value, t0: float, rows: Rows, row_name: str = ""
) -> h5py.HLObject:
    """A field as a dataset (its provenance a row of ``rows``), or a time series as an NXlog."""
    if isinstance(value, DataField):
        dset = nx_field(parent, name, _scalar_data(value.reading), value.units)
        rows.add(row_name or name, value.reading)
        return dset
    return _write_log(parent, name, value, t0)


def _write_log(parent: h5py.Group, name: str, series: TimeSeries, t0: float) -> h5py.Group:
    """An NXlog; ``time`` is seconds from ``t0`` (the recording start; the first point,
    the value held when recording began, may be earlier)."""
    log_group = nx_group(parent, name, "NXlog")
    cols = series.columns
    if cols is not None and cols.staged and cols.staged in parent.file:
        return _link_log(log_group, cols, series.units, t0)
    if cols is not None:  # a recording from the journal: its columns as they are
        values: Any = cols.values
        if cols.dtype == "str":
            values = np.array(values, dtype=STR_DTYPE)
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
    nx_field(log_group, "value", values, series.units)
    t = nx_field(log_group, "time", stamps - t0, "s")
    nx_attrs(t, start=iso(t0))
    where = mirror(log_group)
    where.create_dataset("source_pv", data=source)
    nx_array(where, "alarm_severity", np.asarray(severity, dtype=np.int8), SEVERITY_DTYPE)
    nx_array(where, "alarm_status", status)
    nx_array(where, "connected", connected)
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
        nx_attrs(value, units=units)
    t = h5py.h5o.open(gid, b"time")
    if not h5py.h5a.exists(t, b"units"):
        nx_attrs(t, units="s", start=iso(t0))
    where = mirror(log_group)
    where.create_dataset("source_pv", data=cols.source)
    wid = where.id
    for name in (b"alarm_severity", b"alarm_status", b"connected"):
        wid.links.create_hard(name, wid, staged + b"/" + name)
    return log_group


def _write_axes(group: h5py.Group, comp: Component, t0: float, rows: Rows) -> None:
    """Axes in an NXtransformations group, the component's ``depends_on`` naming the first.

    A detector module's axes (``fast_pixel_direction``, ``slow_pixel_direction``,
    ``module_offset``) are fields of the NXdetector_module itself, as NeXus defines them.
    """
    in_place = comp.component_class is ComponentClass.DETECTOR_MODULE
    trans = group if in_place else nx_group(group, "transformations", "NXtransformations")
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
    trans: h5py.Group, name: str, axis: Axis, t0: float, rows: Rows, row_name: str
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
            data = np.array(data, dtype=STR_DTYPE)
        dset = nx_field(trans, name, data, value.units)
    dset.attrs["transformation_type"] = axis.transformation_type.value
    dset.attrs["vector"] = np.array(axis.vector, dtype=np.float64)
    if axis.offset is not None:
        dset.attrs["offset"] = np.array(axis.offset, dtype=np.float64)
        dset.attrs["offset_units"] = value.units
    return dset


def _write_component(
    parent: h5py.Group, comp: Component, t0: float, master_dir: Path, virtual: bool = False
) -> list[str]:
    """Write ``comp`` and its subcomponents; returns the paths of linked detector data."""
    group = nx_group(parent, comp.name, comp.component_class.nx_class)
    rows = Rows()
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
        path = link_frames(group, comp.data, master_dir, rows, virtual)
        linked += [path] if path else []
    rows.write(group)
    for sub in comp.subcomponents:
        linked += _write_component(group, sub, t0, master_dir, virtual)
    return linked


def _write_entry(
    root: h5py.File, x: Experiment, entry: Entry, master_dir: Path, checks: Checks
) -> int:
    """Write one NXentry; returns what it has to plot: 3 detector frames, 2 a recorded
    series, 1 a snapshot's waveform, 0 nothing."""
    group = nx_group(root, entry.moment.entry_name, "NXentry")
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
    instrument = nx_group(group, "instrument", "NXinstrument")
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
        nxdata = nx_group(group, "data", "NXdata")
        if isinstance(group.get(linked[0], getlink=True), h5py.HardLink):
            link(nxdata, "data", group[linked[0]])
        else:  # an external link: its target is in the detector's file
            nxdata["data"] = h5py.SoftLink(linked[0])
        nx_attrs(nxdata, signal="data")
        nx_attrs(group, default="data")
    plot = (
        3
        if linked
        else 2
        if plot_series(group, entry)
        else int(has_array(entry) and plot_array(group))
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
    token = COMPRESSION.set(compression or CompressionSpec())
    tmp = partial_path(final)
    # a failed write (a full disk) makes h5py report every object it then fails to close, as
    # a traceback each on stderr (hundreds): counted here, said once in the error
    ignored = [0]
    hook, stderr = sys.unraisablehook, sys.stderr
    sys.unraisablehook = lambda _info: ignored.__setitem__(0, ignored[0] + 1)
    sys.stderr = Tracebacks(ignored)
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
            checks_token = CHECKS_FOUND.set(checks)
            plots = {
                e.moment.entry_name: _write_entry(f, x, e, final.parent.resolve(), checks)
                for e in x.entries
            }
            write_checks(f, x, checks)
            CHECKS_FOUND.reset(checks_token)
            if STAGING_GROUP in f:  # its datasets are linked where they belong
                del f[STAGING_GROUP]
            if plots:  # the viewers open on the frames, else on a recorded series
                best = max(plots.values())
                nx_attrs(f, default=next(n for n, p in plots.items() if p == best))
            for entry_name, entry_notes in (notes or {}).items():
                if entry_name in f:
                    for name, text in entry_notes.items():
                        note = nx_group(f[entry_name], name, "NXnote")
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
        COMPRESSION.reset(token)
    return tmp


#: The staging file's group of a recording's columns (``lifecycle.staging.GROUP``).
STAGING_GROUP = "staging"
