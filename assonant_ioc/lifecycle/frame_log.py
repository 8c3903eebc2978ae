"""A camera's frames received over PVAccess while recording, kept in the journal beside the
readings (``experiment/ndarray-<component>.log``), and the detector file made of them.

Each frame is one append-only record (length, crc32, its header as JSON: ``uniqueId``,
``dataTimeStamp``, severity, dtype, shape, NDAttributes; then its pixels as they came),
written as it arrives and made durable (fsync) at least every ``flush_s`` seconds. After a
kill the log is read up to its last complete record: a frame torn by the kill is dropped,
never misread.

At EndOfExperiment the log becomes the detector's file as areaDetector's HDF5 plugin writes
one (``/entry/data/data``, chunked one frame a chunk with the config's compression; the
per-frame attributes at ``/entry/instrument/NDAttributes``: ``NDArrayUniqueId``,
``NDArrayEpicsTSSec``/``nSec`` and every NDAttribute by its name), so the master file
links it as any detector file, and every reader of areaDetector files reads it. A missed
frame (a gap in ``uniqueId``) is counted: the file says how many frames the camera sent
(``frames_sent``: the span of ``uniqueId``) and which ids never arrived
(``missed_unique_ids``), and the writer's checks name them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.lifecycle.records import append_record, blob_record, read_records, write_record
from assonant_ioc.model.source import Frame
from assonant_ioc.model.times import EPICS_EPOCH

log = logging.getLogger(__name__)

#: where the frames are in the file made of the log (areaDetector's HDF5 plugin's layout)
DATASET = "/entry/data/data"
ND_ATTRIBUTES = "/entry/instrument/NDAttributes"


class FrameLog:
    """The frame sink of a recording: frames stamped from ``start`` on (to the end fixed by
    :meth:`close`) appended to ``path``; a thread makes them durable every ``flush_s``."""

    def __init__(self, path: Path, pv: str, start: float, flush_s: float = 1.0) -> None:
        self.path, self.pv, self.start, self.flush_s = path, pv, start, flush_s
        self.end: float | None = None
        self.count = 0  # frames written
        self.durable = 0  # frames made durable
        self.dropped = 0  # frames the state directory would not take
        self.failing = ""
        self._lock = threading.Lock()
        self._fh = open(path, "ab", buffering=0)
        append_record(self._fh, {"pv": pv, "start": start})
        os.fsync(self._fh.fileno())
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-log-sync", daemon=True)
        self._thread.start()

    def add_frame(self, frame: Frame) -> None:
        """In p4p's thread: the frame appended (a frame from before the start or after the
        end is not the recording's)."""
        if frame.t < self.start or (self.end is not None and frame.t > self.end):
            return
        pixels = np.ascontiguousarray(frame.pixels)
        header = {
            "id": frame.unique_id,
            "t": frame.t,
            "sev": frame.severity,
            "dtype": pixels.dtype.str,
            "shape": list(pixels.shape),
            "attrs": frame.attributes,
        }
        with self._lock:
            if self._fh.closed:
                return
            try:
                write_record(self._fh, blob_record(header, pixels))
            except OSError as err:  # counted, and the uniqueId gap names it in the file
                self.dropped += 1
                if not self.failing:
                    log.error(
                        "frame log %s: %s (frames dropped until it takes writes)", self.path, err
                    )
                self.failing = f"{type(err).__name__}: {err}"
                return
            self.count += 1
            self.failing = ""

    def _sync(self) -> None:
        with self._lock:
            if self._fh.closed:
                return
            written = self.count
            fd = self._fh.fileno()
        try:
            os.fsync(fd)
        except OSError as err:
            log.error("frame log %s: fsync failed: %s", self.path, err)
            return
        self.durable = written

    def _run(self) -> None:
        while not self._wake.wait(self.flush_s):
            self._sync()

    def close(self, end: float) -> None:
        """Fix the end: frames stamped later are not the recording's."""
        self.end = end

    def stop(self) -> int:
        """Take nothing more; the frames durable; returns how many."""
        self._wake.set()
        self._thread.join()
        self._sync()
        with self._lock:
            self._fh.close()
        return self.count

    abandon = stop


def log_path(journal_dir: Path, component: str) -> Path:
    return journal_dir / f"ndarray-{component}.log"


def open_frame_logs(
    journal_dir: Path, arrays: dict[str, str], start: float, flush_s: float
) -> list[FrameLog]:
    """A frame log per camera (component -> its NTNDArray PV) for a recording from ``start``."""
    return [
        FrameLog(log_path(journal_dir, component), pv, start, flush_s)
        for component, pv in arrays.items()
    ]


def read_frames(path: Path) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Each complete frame of a log: its header and its pixels (oldest first)."""
    for record in read_records(path):
        blob = record.pop("blob", None)
        if blob is None:  # the log's own header
            continue
        pixels = np.frombuffer(blob, dtype=np.dtype(record["dtype"])).reshape(record["shape"])
        yield record, pixels


def missed_ids(ids: np.ndarray) -> np.ndarray:
    """The ``uniqueId``\\ s between the first and the last that never arrived."""
    if len(ids) < 2:
        return np.zeros(0, dtype=np.int64)
    span = np.arange(int(ids.min()), int(ids.max()) + 1, dtype=np.int64)
    return np.setdiff1d(span, ids.astype(np.int64))


def write_frames_file(
    log_path: Path, out: Path, compression: dict[str, Any], dataset: str = DATASET
) -> tuple[int, int]:
    """The detector file of a frame log, written at ``out`` (durable; a partial file never
    has that name); returns (frames written, frames the camera sent: the uniqueId span)."""
    import h5py

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    ids: list[int] = []
    stamps: list[float] = []
    attrs: dict[str, list[Any]] = {}
    parent, _, name = dataset.rpartition("/")
    with h5py.File(tmp, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        group = f.require_group(parent or "/")
        if parent == "/entry/data":
            group.attrs["NX_class"] = "NXdata"
            group.attrs["signal"] = name
        data: Any = None
        for header, pixels in read_frames(log_path):
            if data is None:
                data = group.create_dataset(
                    name,
                    shape=(0, *pixels.shape),
                    maxshape=(None, *pixels.shape),
                    dtype=pixels.dtype,
                    chunks=(1, *pixels.shape),
                    **compression,
                )
            if pixels.shape != data.shape[1:]:
                shape = (pixels.shape, data.shape[1:])
                log.warning("%s: frame %s is %s, not %s: left out", log_path, header["id"], *shape)
                continue
            data.resize(len(ids) + 1, axis=0)
            data[len(ids)] = pixels
            for name, value in header["attrs"].items():
                attrs.setdefault(name, [None] * len(ids)).append(value)
            ids.append(int(header["id"]))
            stamps.append(float(header["t"]))
            for values in attrs.values():  # an attribute a frame lacked
                if len(values) < len(ids):
                    values.append(None)
        if data is None:
            data = group.create_dataset(name, shape=(0, 0, 0), dtype=np.uint16)
        id_array = np.array(ids, dtype=np.int64)
        missed = missed_ids(id_array)
        sent = int(id_array.max() - id_array.min() + 1) if ids else 0
        data.attrs["frames_sent"] = sent
        data.attrs["missed_unique_ids"] = missed
        nd = entry.create_group("instrument/NDAttributes")
        nd.attrs["NX_class"] = "NXcollection"
        nd.create_dataset("NDArrayUniqueId", data=id_array.astype(np.int32))
        t = np.array(stamps, dtype=np.float64)
        secs = np.floor(t)
        nd.create_dataset("NDArrayEpicsTSSec", data=(secs - EPICS_EPOCH).astype(np.uint32))
        nd.create_dataset("NDArrayEpicsTSnSec", data=np.round((t - secs) * 1e9).astype(np.uint32))
        nd.create_dataset("NDArrayTimeStamp", data=t - EPICS_EPOCH)
        for name, values in attrs.items():
            if name in nd:
                continue
            nd.create_dataset(name, data=_series(values))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(ids), sent


def _series(values: list[Any]) -> np.ndarray:
    """An attribute's per-frame values as one array: numbers (NaN where a frame lacked it),
    else text."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(v is None or isinstance(v, (int, float)) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    import h5py

    return np.array(["" if v is None else str(v) for v in values], dtype=h5py.string_dtype())
