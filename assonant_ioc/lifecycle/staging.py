"""The during entry's arrays, built while the recording runs: a cache of the journal.

Every few seconds of a recording, the worker process turns the journal's new batches into
per-PV extendable datasets in ``experiment/during.h5``: the values, times (seconds from the
recording's start, as the file has them), severities, statuses and connected flags, each
PV's in a group of its own, chunked for appending. At EndOfExperiment the build catches up
with the journal's last batches, gives the staging file the final name's hidden name and
writes the rest of the experiment into it: each NXlog links its PV's datasets, which are
not read or written again. What EndOfExperiment does no longer grows with the recording's
length (apart from the checksum).

The staging file is never the only copy of anything. It is trusted only by the worker
process that built it, in that process' lifetime: a new process (a restart, a worker
replaced after a crash, a recovery) deletes it and starts again from the journal, so a
staging file cut short by ``kill -9`` is never read. Anything irregular gives it up for the
experiment and the build reads the journal as before: a gap in the recording (a full state
directory), a PV recorded as a waveform, a PV list that changed, a PV that changed type.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.lifecycle.holds import held_sync
from assonant_ioc.lifecycle.journal import Journal
from assonant_ioc.lifecycle.records import Rows, read_records_from
from assonant_ioc.model.components import SeriesColumns
from assonant_ioc.nexus.writer import STAGING_GROUP as GROUP  # removed from the written file

log = logging.getLogger(__name__)

STAGING = "during.h5"
#: per PV: the datasets, in the order of an NXlog's (value, time) and its provenance's
_COLUMNS = ("value", "time", "alarm_severity", "alarm_status", "connected")
#: a staged reading's bytes in them (a float value)
_ROW_BYTES = 8 + 8 + 1 + 2 + 1


class Lazy:
    """A staged column's length (and, for ``connected``, how many are true) without its
    data: the writer links the dataset itself."""

    def __init__(self, n: int, true: int = 0) -> None:
        self.n, self.true = n, true

    def __len__(self) -> int:
        return self.n

    def sum(self) -> int:
        return self.true


@dataclass
class _Stage:
    path: Path
    inode: int
    file: Any  # h5py.File, open for the whole recording
    t0: float
    compression: CompressionSpec
    offset: int = 0
    pvs: list[str] = field(default_factory=list)
    units: dict[int, str] = field(default_factory=dict)
    dtypes: dict[int, str] = field(default_factory=dict)
    chunk: int = 0
    rows: int = 0
    given_up: str = ""
    #: per staged PV (its group's name): rows, connected rows, dtype, units
    index: dict[str, list[Any]] = field(default_factory=dict)
    #: per staged PV: its datasets' ids, in ``_COLUMNS`` order
    ids: dict[str, list[Any]] = field(default_factory=dict)


#: the staging of the recording in progress, in the worker process (at most one)
_STAGE: _Stage | None = None
#: HDF5 files of a staging whose write failed (a full disk): never closed in this process
#: (libhdf5 may crash flushing them), kept referenced so no garbage collection closes them;
#: the process is replaced before the next build
_ABANDONED: list[Any] = []


class StagingBroken(RuntimeError):
    """A staging write failed in this worker process (libhdf5's state is not to be trusted
    after it): build in a fresh process, from the journal."""


def _abandon(st: _Stage, why: str) -> None:
    """Give staging up after a failed write: its file unlinked, its handle left open."""
    if not st.given_up:
        st.given_up = why
        log.warning(
            "staging of the recording given up: %s (the file is built from the journal)", why
        )
    if st.file is not None:
        _ABANDONED.append(st.file)
        st.file = None
    with contextlib.suppress(OSError):
        st.path.unlink(missing_ok=True)


def stage(state_dir: str, t0: float, compression: CompressionSpec) -> dict[str, Any]:
    """One round, in the worker: append the journal's batches since the last round to the
    staged datasets. Returns what is staged (``rows``, ``seconds``) or why nothing is
    (``given_up``)."""
    began = time.perf_counter()
    failed = False
    try:
        st = _current(Journal(Path(state_dir)), t0, compression)
        if not st.given_up:
            _catch_up(st, Journal(Path(state_dir)).during_path())
    except Exception as err:  # a cache: the build reads the journal instead
        log.exception("staging the recording failed")
        failed = True
        if _STAGE is None:
            return {"rows": 0, "given_up": f"staging failed: {err!r}", "failed": True}
        st = _STAGE
        _abandon(st, f"staging failed: {err!r}")
    return {
        "rows": st.rows,
        "given_up": st.given_up,
        "failed": failed or bool(_ABANDONED),
        "seconds": time.perf_counter() - began,
    }


def take(journal: Journal, t0: float, compression: CompressionSpec, to: Path) -> Path | None:
    """At EndOfExperiment, in the worker: the last batches staged, the staging file closed
    and moved to ``to`` (the final name's hidden name). None: nothing usable is staged (not
    by this process, given up, or the recording was interrupted); the file is then gone."""
    global _STAGE
    if _ABANDONED:  # a write failed in this process: the build goes to a fresh one
        raise StagingBroken("a staging write failed in this worker process")
    st = _STAGE
    path = journal.dir / STAGING
    if st is None or not _same(st, path, t0):
        discard(journal)
        return None
    try:
        _catch_up(st, journal.during_path())
    except Exception as err:  # the build reads the journal instead, in a fresh process
        log.exception("staging the last batches failed")
        _abandon(st, f"staging failed: {err!r}")
        _STAGE = None
        raise StagingBroken(f"staging the last batches failed: {err!r}") from None
    if not st.given_up and _mostly_empty(st):
        _give_up(st, "a short recording: most of its chunks empty")
    _STAGE = None
    if st.file is not None:
        st.file.close()
    if st.given_up:
        log.info("not staged (%s): the file is built from the journal", st.given_up)
        path.unlink(missing_ok=True)
        return None
    to.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(path, to)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        shutil.copyfile(path, to)  # another file system: copied (a cost that grows)
        path.unlink()
    return to


def discard(journal: Journal) -> None:
    """Forget any staging of ``journal``'s recording (its file too)."""
    global _STAGE
    if _STAGE is not None and _STAGE.file is not None:
        with contextlib.suppress(Exception):
            _STAGE.file.close()
    _STAGE = None
    (journal.dir / STAGING).unlink(missing_ok=True)


def columns(f: Any, t0: float, read: Iterable[str] = ()) -> dict[str, SeriesColumns] | None:
    """The staged series of the open file ``f`` (the journal's ``read_columns`` shape): each
    a ``staged`` group whose columns are only lengths, except the PVs in ``read`` (axes:
    the definitions compute from their positions), read into memory with absolute times."""
    group = f.get(GROUP)
    if group is None or float(group.attrs["t0"]) != t0:
        return None
    pvs = [str(p) for p in group.attrs["pvs"]]
    index = json.loads(group.attrs["index"])  # per PV: rows, connected rows, dtype, units
    wanted = set(read)
    out: dict[str, SeriesColumns] = {}
    for i, pv in enumerate(pvs):
        name = str(i)
        if name not in index:
            empty = np.zeros(0)
            out[pv] = SeriesColumns(
                pv, empty, empty, empty.astype(np.int16), empty.astype(np.int16),
                empty.astype(bool), "float64", "",
            )  # fmt: skip
            continue
        n, live, dtype, units = index[name]
        if pv in wanted:
            g = group[name]
            values: Any = g["value"][()]
            if dtype == "str":
                values = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
            out[pv] = SeriesColumns(
                pv,
                values,
                g["time"][()] + t0,
                g["alarm_severity"][()].astype(np.int16),
                g["alarm_status"][()],
                g["connected"][()],
                dtype,
                units,
                f"/{GROUP}/{name}",
            )
        else:
            out[pv] = SeriesColumns(
                pv, Lazy(n), Lazy(n), Lazy(n), Lazy(n), Lazy(n, live), dtype, units,
                f"/{GROUP}/{name}",
            )  # fmt: skip
    return out


# -- the worker's side ---------------------------------------------------------------------


def _same(st: _Stage, path: Path, t0: float) -> bool:
    """``st`` is the staging of this recording (one given up stays so: its file is gone)."""
    if st.path != path or st.t0 != t0:
        return False
    try:
        return bool(st.given_up) or os.stat(path).st_ino == st.inode
    except OSError:
        return False


def _current(journal: Journal, t0: float, compression: CompressionSpec) -> _Stage:
    """This process' staging of the recording, begun anew unless it is this recording's."""
    global _STAGE
    import h5py

    path = journal.dir / STAGING
    if _STAGE is not None and _same(_STAGE, path, t0):
        return _STAGE
    discard(journal)  # not built by this process: never trusted
    # HDF5 1.10's chunk indexes (an extensible array per dataset): with the 1.8 format's
    # B-trees the worker's memory grew 7 MB every 2 minutes of 1,000 PVs, flat with these.
    # The file then needs HDF5 1.10 (2017) or later to be read.
    f = h5py.File(path, "w", libver="v110")
    _STAGE = _Stage(path, os.stat(path).st_ino, f, t0, compression)
    group = f.create_group(GROUP)
    group.attrs["t0"] = t0
    group.attrs["pvs"] = np.array([], dtype=h5py.string_dtype())
    group.attrs["index"] = "{}"
    return _STAGE


def _mostly_empty(st: _Stage) -> bool:
    """Whether the staged chunks are less than half full and the empty part is over 16 MB:
    a recording of many PVs much shorter than its chunks (a minute of each PV), which the
    journal builds quickly, and into a file without them."""
    rows = sum(int(row[0]) for row in st.index.values())
    allocated = sum(-(-int(row[0]) // st.chunk) * st.chunk for row in st.index.values())
    return rows * 2 < allocated and (allocated - rows) * _ROW_BYTES > 16 << 20


def _give_up(st: _Stage, why: str) -> None:
    """No more staging of this recording; its file is removed (it may be what filled the
    state directory: the journal needs the room)."""
    if not st.given_up:
        st.given_up = why
        log.info("staging of the recording given up: %s", why)
    if st.file is not None:
        with contextlib.suppress(Exception):
            st.file.close()
        st.file = None
        with contextlib.suppress(OSError):
            st.path.unlink(missing_ok=True)


def _catch_up(st: _Stage, log_path: Path) -> None:
    """Append the batches after ``st.offset`` (complete records only) to the datasets."""
    if st.given_up:
        return
    import h5py

    rows = Rows()
    rows.pvs = st.pvs
    end = st.offset
    for record, after in read_records_from(log_path, st.offset, growing=True):
        if "pvs" in record:
            if st.pvs and list(record["pvs"]) != st.pvs:
                _give_up(st, "the recorded PV list changed")
                return
            st.pvs = rows.pvs = list(record["pvs"])
            st.file[GROUP].attrs["pvs"] = np.array(st.pvs, dtype=h5py.string_dtype())
        elif "gap" in record:
            _give_up(st, "the recording has a gap (updates dropped)")
            return
        else:
            rows.add(record)
        end = after
    if rows.count:
        series = rows.per_pv(st.dtypes, st.units)
        st.dtypes.update(rows.dtypes)
        st.units.update(rows.units)
        if not st.chunk:  # a chunk: about a minute of a PV at the first round's rate
            times = np.concatenate(rows.parts["t"])
            span = max(float(times.max()) - st.t0, 1.0) if len(times) else 1.0
            per_minute = rows.count / max(len(st.pvs), 1) / span * 60
            st.chunk = int(min(max(64, 2 ** np.ceil(np.log2(max(per_minute, 1)))), 8192))
        group = st.file[GROUP]
        for i, pv in enumerate(st.pvs):
            cols = series[pv]
            if isinstance(cols, list):
                if cols:
                    _give_up(st, f"{pv} is recorded as a waveform")
                    return
                continue
            if len(cols):
                why = _append(st, group, str(i), cols)
                if why:
                    _give_up(st, why)
                    return
        st.rows += rows.count
        group.attrs["index"] = json.dumps(st.index)
        held_sync("staged")
    st.offset = end
    st.file.flush()


def _append(st: _Stage, group: Any, name: str, cols: SeriesColumns) -> str:
    """Append ``cols`` to the PV's datasets (created on its first rows). Returns why it
    cannot be staged, or ""."""
    import h5py

    from assonant_ioc.nexus.h5 import SEVERITY_DTYPE, filter_options

    m = len(cols)
    is_str = cols.dtype == "str"
    values: Any = (
        np.array(cols.values, dtype=h5py.string_dtype())
        if is_str
        else np.asarray(cols.values, dtype=cols.dtype)
    )
    if name not in st.index:
        g = group.create_group(name)
        st.index[name] = [0, 0, cols.dtype, cols.units]
        spec = st.compression
        squeeze = {} if spec.filter == "none" else filter_options(spec)
        kinds = (
            h5py.string_dtype() if is_str else values.dtype,
            np.float64,
            SEVERITY_DTYPE,
            np.int16,
            np.bool_,
        )
        ids = []
        for column, kind in zip(_COLUMNS, kinds, strict=True):
            options = {} if column == "value" and is_str else squeeze
            dset = g.create_dataset(
                column,
                shape=(0,),
                maxshape=(None,),
                dtype=kind,
                chunks=(st.chunk,),
                **_one_chunk(st.chunk, kind),
                **options,
            )
            ids.append(dset.id)  # this handle: reopened, a dataset gets the default cache
        st.ids[name] = ids
    row = st.index[name]
    n, had = int(row[0]), str(row[2])
    if had != cols.dtype:
        if is_str or had == "str":
            return f"{cols.source} changed type ({had} to {cols.dtype})"
        wider = np.promote_types(np.dtype(had), values.dtype)
        if wider != np.dtype(had):  # an integer PV disconnected: its series is float64
            st.ids[name][0] = _widen(st, group[name], wider)
            row[2] = str(wider)
        values = values.astype(row[2])
    row[3] = cols.units
    data = (
        values,
        np.asarray(cols.times, dtype=np.float64) - st.t0,
        np.asarray(cols.severity, dtype=np.int8),
        np.asarray(cols.status, dtype=np.int16),
        np.asarray(cols.connected, dtype=bool),
    )
    if is_str:  # strings (rare) through h5py's high level
        dset = group[name]["value"]
        dset.resize((n + m,))
        dset[n:] = values
    for dsid, part in zip(st.ids[name], data, strict=True):
        if not (is_str and dsid is st.ids[name][0]):
            _append_to(dsid, n, part)
    row[0] = n + m
    row[1] = int(row[1]) + int(data[4].sum())
    return ""


def _append_to(dsid: Any, n: int, part: np.ndarray) -> None:
    """``part`` after the first ``n`` elements of a 1-D extendable dataset (by its id:
    h5py's high level costs about 100 us a call, a thousand PVs' five columns every round)."""
    import h5py

    m = len(part)
    dsid.set_extent((n + m,))
    space = dsid.get_space()
    space.select_hyperslab((n,), (m,))
    dsid.write(h5py.h5s.create_simple((m,)), space, np.ascontiguousarray(part), dsid.get_type())


def _one_chunk(chunk: int, kind: Any) -> dict[str, int]:
    """A dataset's chunk cache of one chunk (the one being filled). HDF5 keeps up to 1 MB of
    each dataset's chunks by default: five thousand datasets open for hours would keep the
    whole recording in memory."""
    return {"rdcc_nbytes": chunk * np.dtype(kind).itemsize + 64, "rdcc_nslots": 7}


def _widen(st: _Stage, g: Any, dtype: np.dtype[Any]) -> Any:
    """Rewrite a PV's staged values as ``dtype`` (rare: an integer PV's first
    disconnection); returns the new dataset's id."""
    from assonant_ioc.nexus.h5 import filter_options

    data = g["value"][()].astype(dtype)
    spec = st.compression
    squeeze = {} if spec.filter == "none" else filter_options(spec)
    del g["value"]
    dset = g.create_dataset(
        "value",
        data=data,
        maxshape=(None,),
        chunks=(st.chunk,),
        **_one_chunk(st.chunk, dtype),
        **squeeze,
    )
    return dset.id
