"""The recording's log format: append-only records, each length-prefixed and CRC-checked.

A record is JSON (the header naming the recorded PVs), or a batch: a JSON header and
binary columns, one element per update (PV index, EPICS time, severity, status,
connected, and the value as a float or an integer; other values in the header).
Reading stops at the first torn or corrupt record, so a kill in the middle of a write
loses that batch only, and nothing is ever misread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.model.components import SeriesColumns
from assonant_ioc.model.readings import UDF_ALARM, Raw, RawSnapshot, Reading, Severity

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload


def jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


_SEVERITIES = tuple(Severity)
_SCALARS = (float, int, str, bool)


def read_columns(
    path: Path, gaps: list[dict[str, float]] | None = None
) -> tuple[dict[str, list[Reading] | SeriesColumns], float | None]:
    """The recording in ``path`` per PV, oldest first: scalar PVs as columns (no object per
    reading), waveforms as readings; and the last durable point's time. The gaps the
    recorder recorded (updates it had to drop: ``from``, ``to``, ``dropped``) are appended
    to ``gaps``."""
    rows = Rows()
    for batch in read_records(path):
        rows.add(batch, gaps)
    return rows.per_pv(), rows.last


class Rows:
    """Batches of a recording gathered as one set of columns (what ``read_columns`` and the
    staging of the during entry both split per PV)."""

    def __init__(self) -> None:
        self.pvs: list[str] = []
        self.parts: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
        self.other: dict[int, Any] = {}
        self.units: dict[int, str] = {}
        self.dtypes: dict[int, str] = {}
        self.last: float | None = None
        self.count = 0

    def add(self, batch: Mapping[str, Any], gaps: list[dict[str, float]] | None = None) -> None:
        """Take one record (the PV list, or a batch)."""
        if "pvs" in batch:
            self.pvs = list(batch["pvs"])
            return
        if gaps is not None and "gap" in batch:
            gaps.append(dict(batch["gap"]))
        for name, _ in _COLUMNS:
            self.parts[name].append(batch[name])
        self.other.update({self.count + j: x for j, x in batch["o"]})
        self.count += int(batch["n"])
        self.units.update({int(k): u for k, u in batch.get("u", {}).items()})
        self.dtypes.update({int(k): d for k, d in batch.get("d", {}).items()})
        self.last = float(batch["at"])

    def per_pv(
        self, dtypes: Mapping[int, str] | None = None, units: Mapping[int, str] | None = None
    ) -> dict[str, list[Reading] | SeriesColumns]:
        """The gathered rows per PV (every PV of the list, with rows or not). ``dtypes`` and
        ``units``: per PV index, what earlier batches said (these batches' own win)."""
        dtypes = {**(dtypes or {}), **self.dtypes}
        units = {**(units or {}), **self.units}
        return _per_pv(self.pvs, self.parts, self.other, units, dtypes)


def _per_pv(
    pvs: list[str],
    parts: dict[str, list[Any]],
    other: dict[int, Any],
    units: Mapping[int, str],
    dtypes: Mapping[int, str],
) -> dict[str, list[Reading] | SeriesColumns]:
    col = {
        name: np.concatenate(parts[name]) if parts[name] else np.zeros(0, dtype=kind)
        for name, kind in _COLUMNS
    }
    index = col["p"].astype(np.uint16) if len(pvs) <= 65536 else col["p"]
    order = np.argsort(index, kind="stable")  # per PV, in arrival order (a radix sort)
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
            # waveforms (or a PV that became one: a hostile value) as readings
            if dtype == "bool" or any(isinstance(x, (list, dict)) for x in raw):
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
    return out


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
#: record kinds: JSON; a batch's columns as they are (the format before packing, still
#: read); a batch's columns packed. Packed: an integer column with one value in the whole
#: batch (severity, status, connected, kind, the integers of a batch of floats) is that
#: value in the header; the PV indices, times and varying integers are byte-shuffled
#: (each row's first byte, then each second byte...: neighbours differ in their low bytes
#: only) and compressed with zlib at its fastest level; the float values, which barely
#: compress, are kept as they are. About 10 bytes a scalar reading instead of 34, read
#: back at a few tens of nanoseconds each.
_JSON, _BATCH, _PACKED, _BLOB = b"J", b"B", b"Z", b"R"
_LEN = struct.Struct("<I")
_AS_IS = "vf"  # the packed column left uncompressed
_ONE_VALUE = ("p", "s", "a", "c", "k", "vi")  # columns said once when constant


def _shuffled(a: np.ndarray) -> bytes:
    return a.view(np.uint8).reshape(len(a), a.dtype.itemsize).T.tobytes()


def _unshuffled(data: bytes, offset: int, n: int, kind: Any) -> np.ndarray:
    width = np.dtype(kind).itemsize
    planes = np.frombuffer(data, dtype=np.uint8, count=n * width, offset=offset)
    column: np.ndarray = np.ascontiguousarray(planes.reshape(width, n).T).view(kind).reshape(n)
    return column


def append_record(
    fh: Any,
    payload: Mapping[str, Any] | bytes,
    columns: Mapping[str, Any] | None = None,
    packed: bool = True,
) -> int:
    """Append one record (length, crc32, then a JSON payload, or a JSON header and the
    ``columns`` of a batch, packed unless ``packed`` is false) to an unbuffered file;
    returns its size.

    On a failed write (a full disk) the file is cut back to where it was, so the log never
    holds a torn record in its middle.
    """
    return write_record(fh, framed(payload, columns, packed))


def framed(
    payload: Mapping[str, Any] | bytes,
    columns: Mapping[str, Any] | None = None,
    packed: bool = True,
) -> bytes:
    """One record as ``append_record`` writes it (length, crc32, then its data)."""
    if isinstance(payload, bytes):  # a JSON record encoded already
        data = _JSON + payload
    elif columns is None:
        data = _JSON + _json(payload)
    else:
        arrays = [np.ascontiguousarray(columns[name], dtype=kind) for name, kind in _COLUMNS]
        if packed:
            data = _packed(dict(payload), arrays)
        else:
            head = _json(payload)
            data = b"".join([_BATCH, _LEN.pack(len(head)), head, *(a.tobytes() for a in arrays)])
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def json_record(payload: bytes) -> bytes:
    """A JSON record, framed (length, crc32) and ready for ``write_record``."""
    data = _JSON + payload
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def blob_record(payload: Mapping[str, Any], blob: Any) -> list[Any]:
    """A JSON header and raw bytes (a frame's pixels), framed: the parts to write in order
    (the blob is not copied). Read back as the header with the bytes as ``"blob"``."""
    head = _json(payload)
    view = memoryview(blob).cast("B")
    parts = [_BLOB, _LEN.pack(len(head)), head]
    crc = zlib.crc32(view, zlib.crc32(b"".join(parts)))
    return [_HEADER.pack(sum(map(len, parts)) + len(view), crc), *parts, view]


def write_record(fh: Any, record: bytes | list[Any]) -> int:
    """Append a framed record (or its parts, ``blob_record``'s); on a failed write the file
    is cut back to where it was."""
    pos = fh.tell()
    parts = record if isinstance(record, list) else [record]
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[fh.write(view) :]
    except BaseException:
        with contextlib.suppress(OSError):
            fh.truncate(pos)
            fh.seek(pos)
        raise
    return sum(len(part) for part in parts)


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _packed(payload: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    """A batch as a packed record (see ``_PACKED``)."""
    same: dict[str, Any] = {}
    shuffled, as_is = [], b""
    for (name, _), a in zip(_COLUMNS, arrays, strict=True):
        if name in _ONE_VALUE and len(a) and bool((a == a[0]).all()):
            same[name] = a[0].item()
        elif name == _AS_IS:
            as_is = a.tobytes()
        else:
            shuffled.append(_shuffled(a))
    payload["one"] = same
    head = _json(payload)
    squeezed = zlib.compress(b"".join(shuffled), 1)
    return b"".join(
        [_PACKED, _LEN.pack(len(head)), head, _LEN.pack(len(squeezed)), squeezed, as_is]
    )


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete records of an append-only log; stops at the first torn or corrupt one.

    A batch record comes back as its JSON header with its columns as numpy arrays.
    """
    for record, _ in read_records_from(path, 0):
        yield record


def read_records_from(
    path: Path, offset: int, growing: bool = False
) -> Iterator[tuple[dict[str, Any], int]]:
    """The complete records from byte ``offset`` on, each with the offset after it; stops
    at the first torn or corrupt one. ``growing``: the log is still being appended to, so
    an incomplete last record is one being written (said nowhere)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(offset)
        while True:
            head = fh.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return
            size, crc = _HEADER.unpack(head)
            data = fh.read(size)
            if len(data) < size or zlib.crc32(data) != crc:
                if not growing:
                    log.warning("%s: torn record at the end, dropped", path)
                return
            offset += _HEADER.size + size
            yield _decode(data), offset


def _decode(data: bytes) -> dict[str, Any]:
    if data[:1] == _JSON:
        record: dict[str, Any] = json.loads(data[1:])
        return record
    (size,) = _LEN.unpack_from(data, 1)
    start = 1 + _LEN.size
    record = json.loads(data[start : start + size])
    if data[:1] == _BLOB:
        record["blob"] = memoryview(data)[start + size :]
        return record
    offset, n = start + size, int(record["n"])
    if data[:1] == _PACKED:
        (squeezed,) = _LEN.unpack_from(data, offset)
        offset += _LEN.size
        planes, at = zlib.decompress(data[offset : offset + squeezed]), 0
        offset += squeezed
        same = record.pop("one")
        for name, kind in _COLUMNS:
            if name in same:
                record[name] = np.full(n, same[name], dtype=kind)
            elif name == _AS_IS:
                record[name] = np.frombuffer(data, dtype=kind, count=n, offset=offset)
            else:
                record[name] = _unshuffled(planes, at, n, kind)
                at += n * np.dtype(kind).itemsize
        return record
    for name, kind in _COLUMNS:
        record[name] = np.frombuffer(data, dtype=kind, count=n, offset=offset)
        offset += n * np.dtype(kind).itemsize
    return record


def encode_values(values: list[Any], connected: list[bool]) -> dict[str, Any]:
    """Split a batch's values by kind: floats and integers as binary columns, the rest
    (strings, waveforms, disconnected) in a JSON list of [row, value]."""
    n = len(values)
    if all(type(x) is float for x in values) and all(connected):  # the common batch: one pass
        return {"k": np.zeros(n, np.uint8), "vf": values, "vi": np.zeros(n, np.int64), "o": []}
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
            other.append([j, jsonable(x) if conn else None])
    return {"k": kinds, "vf": vf, "vi": vi, "o": other}


def snapshot_columns(snap: RawSnapshot) -> tuple[list[str], dict[str, Any]]:
    """A snapshot's PVs and their updates as a batch's columns (``o``: the values of no
    number kind, JSON-ready): the monitor's own columns when it kept them, else encoded
    from the raw updates."""
    if snap.columns is not None:
        other = [[j, None if v is None else jsonable(v)] for j, v in snap.columns.other]
        return snap.columns.pvs, {**snap.columns.columns, "o": other}
    rows = list(snap.raw.values())
    values, connected = [r[0] for r in rows], [r[4] for r in rows]
    columns = {
        "p": range(len(rows)),
        "t": [r[1] for r in rows],
        "s": [r[2] for r in rows],
        "a": [r[3] for r in rows],
        "c": connected,
        **encode_values(values, connected),
    }
    return list(snap.raw), columns


def read_snapshot_meta(path: Path) -> dict[str, Any] | None:
    """The experiment's meta a snapshot carries (``Journal.save_snapshot``), if any."""
    for i, record in enumerate(read_records(path)):
        if i == 1:
            meta = record.get("meta")
            return dict(meta) if isinstance(meta, dict) else None
    return None


def read_snapshot(path: Path) -> RawSnapshot:
    """A snapshot written by ``Journal.save_snapshot``, back as the monitor held it."""
    header, batch = list(read_records(path))
    pvs = header["pvs"]
    other = dict(batch["o"])
    raw: dict[str, Raw] = {}
    for j, pv in enumerate(pvs):
        kind = int(batch["k"][j])
        value = (
            float(batch["vf"][j])
            if kind == 0
            else int(batch["vi"][j])
            if kind == 1
            else other.get(j)
        )
        raw[pv] = (
            value,
            float(batch["t"][j]),
            int(batch["s"][j]),
            int(batch["a"][j]),
            bool(batch["c"][j]),
        )
    units = {pvs[int(i)]: u for i, u in header.get("u", {}).items()}
    last = {pvs[int(i)]: v for i, v in header.get("last", {}).items()}
    return RawSnapshot(raw, units, last)
