"""The experiment in progress on local disk, so that a crash or a restart loses nothing durable.

One directory per service (``--state-dir``) holds at most one experiment in progress::

    experiment/meta.json     who, what was captured, the state; replaced atomically each step
    experiment/pre.json      a snapshot: every reading (the model's lossless codec), fsynced
    experiment/post.json
    experiment/during.log    the recording: length-prefixed, CRC-checked batches, appended
    experiment/frames.log    the detector files seen so far, one JSON line each

Every file is made durable (fsync of the file, then of the directory) before the
step that wrote it completes. Recovery replays ``during.log`` up to its last complete
record: a torn last record (a kill in the middle of a write) is dropped, never misread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.model.codec import reading_from_dict, reading_to_dict
from assonant_ioc.model.components import SeriesColumns
from assonant_ioc.model.readings import UDF_ALARM, Reading, Severity, describe

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
META = "meta.json"
DURING_LOG = "during.log"
FRAMES_LOG = "frames.log"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``path`` atomically and durably: temporary file, fsync, rename, fsync of the dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


class Journal:
    """The on-disk record of the experiment in progress (one per state directory)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "experiment"

    # -- meta --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.dir / META).exists()

    def begin(self, meta: Mapping[str, Any]) -> None:
        """Start a new experiment's journal (an old one is discarded)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        fsync_dir(self.dir.parent)
        self.save_meta(meta)

    def save_meta(self, meta: Mapping[str, Any]) -> None:
        write_durable(self.dir / META, json.dumps(meta, indent=1).encode())

    def load_meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / META).read_text(encoding="utf-8"))
        return data

    def discard(self) -> None:
        """The experiment is written or aborted: forget it."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
            with contextlib.suppress(OSError):
                fsync_dir(self.state_dir)

    # -- snapshots ---------------------------------------------------------------------------
    def save_snapshot(self, moment: str, readings: Iterable[Reading]) -> None:
        rows = [reading_to_dict(r) for r in readings]
        write_durable(self.dir / f"{moment}.json", json.dumps(rows).encode())

    def load_snapshot(self, moment: str) -> dict[str, Reading]:
        rows = json.loads((self.dir / f"{moment}.json").read_text(encoding="utf-8"))
        return {r.source: r for r in (reading_from_dict(d) for d in rows)}

    # -- frames --------------------------------------------------------------------------------
    def add_frame_file(self, component: str, path: str) -> None:
        line = json.dumps({"component": component, "path": path}) + "\n"
        with open(self.dir / FRAMES_LOG, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def frame_files(self) -> dict[str, list[str]]:
        files: dict[str, list[str]] = {}
        try:
            text = (self.dir / FRAMES_LOG).read_text(encoding="utf-8")
        except FileNotFoundError:
            return files
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:  # a torn last line
                continue
            names = files.setdefault(item["component"], [])
            if item["path"] not in names:
                names.append(item["path"])
        return files

    # -- the recording -------------------------------------------------------------------------
    def during_path(self) -> Path:
        return self.dir / DURING_LOG

    def read_during(self) -> tuple[dict[str, list[Reading]], float | None]:
        """Every recorded reading per PV (oldest first) and the last durable point's time."""
        series, last = read_columns(self.during_path())
        return {
            pv: list(v.readings()) if isinstance(v, SeriesColumns) else v
            for pv, v in series.items()
        }, last

    def last_durable(self) -> float | None:
        """When the recording was last made durable (None: no batch yet)."""
        last = None
        for record in read_records(self.during_path()):
            last = record.get("at", last)
        return None if last is None else float(last)


_SEVERITIES = tuple(Severity)
_SCALARS = (float, int, str, bool)


def read_columns(path: Path) -> tuple[dict[str, list[Reading] | SeriesColumns], float | None]:
    """The recording in ``path`` per PV, oldest first: scalar PVs as columns (no object per
    reading), waveforms as readings; and the last durable point's time."""
    pvs: list[str] = []
    parts: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
    other: dict[int, Any] = {}
    units: dict[int, str] = {}
    dtypes: dict[int, str] = {}
    last: float | None = None
    rows = 0
    for batch in read_records(path):
        if "pvs" in batch:
            pvs = list(batch["pvs"])
            continue
        for name, _ in _COLUMNS:
            parts[name].append(batch[name])
        other.update({rows + j: x for j, x in batch["o"]})
        rows += int(batch["n"])
        units.update({int(k): u for k, u in batch.get("u", {}).items()})
        dtypes.update({int(k): d for k, d in batch.get("d", {}).items()})
        last = float(batch["at"])
    col = {
        name: np.concatenate(parts[name]) if parts[name] else np.zeros(0, dtype=kind)
        for name, kind in _COLUMNS
    }
    order = np.argsort(col["p"], kind="stable")  # per PV, in arrival order
    bounds = np.searchsorted(col["p"][order], np.arange(len(pvs) + 1))
    times, sev, status = col["t"][order], col["s"][order], col["a"][order]
    conn, kinds = col["c"][order], col["k"][order]
    vf, vi = col["vf"][order], col["vi"][order]
    out: dict[str, list[Reading] | SeriesColumns] = {}
    for i, pv in enumerate(pvs):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        dtype = dtypes.get(i, "float64")
        live = conn[lo:hi]
        k = kinds[lo:hi]
        values: Any
        if hi > lo and bool((k == 0).all()):  # the common case: floats, all connected
            values = vf[lo:hi].astype(dtype) if dtype != "float64" else vf[lo:hi]
        elif hi > lo and bool((k == 1).all()):
            values = vi[lo:hi].astype(dtype) if dtype not in ("int64", "str") else vi[lo:hi]
        else:
            rows_ = order[lo:hi]
            raw = [
                vf[lo + j] if kj == 0 else vi[lo + j] if kj == 1 else other.get(int(rows_[j]))
                for j, kj in enumerate(k)
            ]
            first = next((x for x in raw if x is not None), None)
            if isinstance(first, (list, dict)) or dtype == "bool":  # waveforms: as readings
                out[pv] = [
                    _reading(
                        pv,
                        x,
                        times[lo + j],
                        sev[lo + j],
                        status[lo + j],
                        bool(live[j]),
                        units.get(i, ""),
                        dtypes.get(i),
                    )
                    for j, x in enumerate(raw)
                ]
                continue
            if dtype == "str":
                values = ["" if x is None else str(x) for x in raw]
            elif bool(live.all()):
                values = np.asarray(raw, dtype=dtype)
            else:  # a disconnected point is NaN: the series is float64
                values = np.asarray([np.nan if x is None else x for x in raw], dtype=np.float64)
                dtype = "float64"
        out[pv] = SeriesColumns(
            pv, values, times[lo:hi], sev[lo:hi], status[lo:hi], live, dtype, units.get(i, "")
        )
    return out, last


def _reading(
    pv: str,
    value: Any,
    t: float,
    sev: int,
    status: int,
    connected: bool,
    units: str,
    dtype: str | None,
) -> Reading:
    """One journal row as a Reading; scalars (most rows) without re-inferring their type."""
    if not connected or value is None:
        return Reading(pv, None, "float64", (), units, float(t), Severity.INVALID, UDF_ALARM, False)
    if dtype is not None and type(value) in _SCALARS:
        severity = _SEVERITIES[sev] if 0 <= sev <= 3 else Severity.INVALID
        return Reading(pv, value, dtype, (), units, float(t), severity, int(status), True)
    return Reading.of(pv, value, t, units=units, severity=sev, status=status)


#: The columns of a batch record, in order: row's PV index, EPICS time, severity, status,
#: connected, value kind (0 float, 1 integer, 2 other: in the JSON header), float, integer.
_COLUMNS = (
    ("p", np.int32),
    ("t", np.float64),
    ("s", np.int16),
    ("a", np.int16),
    ("c", np.bool_),
    ("k", np.uint8),
    ("vf", np.float64),
    ("vi", np.int64),
)
_JSON, _BATCH = b"J", b"B"
_LEN = struct.Struct("<I")


def append_record(
    fh: Any, payload: Mapping[str, Any], columns: Mapping[str, Any] | None = None
) -> int:
    """Append one record (length, crc32, then a JSON payload, or a JSON header and the binary
    ``columns`` of a batch) to an unbuffered file; returns its size.

    On a failed write (a full disk) the file is cut back to where it was, so the log never
    holds a torn record in its middle.
    """
    head = json.dumps(payload, separators=(",", ":")).encode()
    if columns is None:
        data = _JSON + head
    else:
        arrays = [np.ascontiguousarray(columns[name], dtype=kind) for name, kind in _COLUMNS]
        data = b"".join([_BATCH, _LEN.pack(len(head)), head, *(a.tobytes() for a in arrays)])
    record = _HEADER.pack(len(data), zlib.crc32(data)) + data
    pos = fh.tell()
    try:
        view = memoryview(record)
        while view:
            view = view[fh.write(view) :]
    except BaseException:
        with contextlib.suppress(OSError):
            fh.truncate(pos)
            fh.seek(pos)
        raise
    return len(record)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete records of an append-only log; stops at the first torn or corrupt one.

    A batch record comes back as its JSON header with its columns as numpy arrays.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        while True:
            head = fh.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return
            size, crc = _HEADER.unpack(head)
            data = fh.read(size)
            if len(data) < size or zlib.crc32(data) != crc:
                log.warning("%s: torn record at the end, dropped", path)
                return
            yield _decode(data)


def _decode(data: bytes) -> dict[str, Any]:
    if data[:1] == _JSON:
        record: dict[str, Any] = json.loads(data[1:])
        return record
    (size,) = _LEN.unpack_from(data, 1)
    start = 1 + _LEN.size
    record = json.loads(data[start : start + size])
    offset, n = start + size, int(record["n"])
    for name, kind in _COLUMNS:
        record[name] = np.frombuffer(data, dtype=kind, count=n, offset=offset)
        offset += n * np.dtype(kind).itemsize
    return record


def encode_values(values: list[Any], connected: list[bool]) -> dict[str, Any]:
    """Split a batch's values by kind: floats and integers as binary columns, the rest
    (strings, waveforms, disconnected) in a JSON list of [row, value]."""
    n = len(values)
    kinds = [2] * n
    vf = [0.0] * n
    vi = [0] * n
    other = []
    for j, (x, conn) in enumerate(zip(values, connected, strict=True)):
        if conn and isinstance(x, float):
            kinds[j], vf[j] = 0, x
        elif conn and isinstance(x, int) and not isinstance(x, bool) and -(2**63) <= x < 2**63:
            kinds[j], vi[j] = 1, x
        else:
            other.append([j, _jsonable(x) if conn else None])
    return {"k": kinds, "vf": vf, "vi": vi, "o": other}


class Recorder:
    """The recording sink: per update, a few appends to column buffers (no objects built);
    a thread turns each batch into one journal record and makes it durable at least every
    ``flush_s`` seconds. Memory holds one batch, whatever the length of the recording.

    Stopping is in two steps, as before: :meth:`close` fixes the end time, and updates stamped
    (by their IOC) no later than it are still taken until :meth:`stop` (which flushes).
    """

    #: How long to wait, after the stop command, for updates stamped before it.
    GRACE_S = 0.25

    def __init__(
        self,
        path: Path,
        pvs: Iterable[str],
        start: float,
        units_of: Callable[[str], str] = lambda pv: "",
        flush_s: float = 1.0,
    ) -> None:
        self.path = path
        self.start = start
        self.end: float | None = None
        self.flush_s = flush_s
        self.pvs = list(dict.fromkeys(pvs))
        self._index = {pv: i for i, pv in enumerate(self.pvs)}
        self._units_of = units_of
        self._lock = threading.Lock()
        self._stopped = False
        self._cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
        self.count = 0
        self.durable_at = start
        self.flush_error: BaseException | None = None
        self._fh = open(path, "ab", buffering=0)
        append_record(self._fh, {"pvs": self.pvs, "start": start})
        self._sync()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-flush", daemon=True)
        self._thread.start()

    # -- the hot path (libca threads, under the monitor's lock) --------------------------------
    def wants(self, pv: str) -> bool:
        return pv in self._index

    def add(
        self, pv: str, value: Any, t: float, severity: int, status: int, connected: bool
    ) -> None:
        i = self._index.get(pv)
        if i is None:
            return
        end = self.end
        if end is not None and t > end:
            return
        with self._lock:
            if self._stopped:
                return
            p, v, ts, s, a, c = self._cols
            p.append(i)
            v.append(value)
            ts.append(t)
            s.append(severity)
            a.append(status)
            c.append(connected)

    # -- batches -------------------------------------------------------------------------------
    def _take(self) -> tuple[list[Any], ...]:
        with self._lock:
            cols, self._cols = self._cols, ([], [], [], [], [], [])
        return cols

    def flush(self) -> int:
        """Write the current batch as one record and make it durable; returns its readings.

        If the write fails the batch goes back in front of the buffer: nothing is dropped.
        """
        cols = self._take()
        try:
            return self._write_batch(cols)
        except BaseException:
            with self._lock:
                self._cols = tuple(old + new for old, new in zip(cols, self._cols, strict=True))
            raise

    def _write_batch(self, cols: tuple[list[Any], ...]) -> int:
        p, v, t, s, a, c = cols
        now = time.time()
        units = {i: self._units_of(self.pvs[i]) for i in set(p)}
        dtypes = {}
        for i, x, conn in zip(p, v, c, strict=True):
            if conn and i not in dtypes:
                dtypes[i] = describe(x)[0]
        values = encode_values(v, c)
        header = {
            "at": now,
            "n": len(p),
            "o": values.pop("o"),
            "u": {str(k): u for k, u in units.items() if u},
            "d": {str(k): d for k, d in dtypes.items()},
        }
        # an empty batch is a heartbeat: the recording is durable up to now
        append_record(self._fh, header, {"p": p, "t": t, "s": s, "a": a, "c": c, **values})
        self._sync()
        self.durable_at = now
        self.count += len(p)
        return len(p)

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())

    def _run(self) -> None:
        while not self._wake.wait(self.flush_s):
            try:
                self.flush()
            except Exception as err:  # reported by stop(); the monitor must go on
                self.flush_error = err
                log.exception("journal flush to %s failed", self.path)

    def close(self, end: float) -> None:
        """Fix the end time: later-stamped updates are no longer taken."""
        self.end = end

    def stop(self) -> int:
        """Take nothing more, flush what is left; returns the readings recorded in all."""
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._stopped = True
        try:
            self.flush()
        finally:
            self._fh.close()
        if self.flush_error is not None:
            raise self.flush_error
        return self.count

    def abandon(self) -> None:
        """Stop without flushing (the experiment is aborted)."""
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._stopped = True
        self._fh.close()
