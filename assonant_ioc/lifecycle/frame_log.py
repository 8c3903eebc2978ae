"""A camera's frames received over PVAccess while recording, kept in the journal beside the
readings (``experiment/ndarray-<component>.log``).

Each frame is one append-only record (length, crc32, its header as JSON: ``uniqueId``,
``dataTimeStamp``, severity, dtype, shape, NDAttributes; then its pixels as they came),
written as it arrives and made durable (fsync) at least every ``flush_s`` seconds. After a
kill the log is read up to its last complete record: a frame torn by the kill is dropped,
never misread. The detector's file is made of the log (``frame_file``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.lifecycle.records import (
    append_record,
    blob_record,
    read_records_from,
    write_record,
)
from assonant_ioc.model.source import Frame

log = logging.getLogger(__name__)


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


def read_frames(
    path: Path, offset: int = 0, growing: bool = False
) -> Iterator[tuple[dict[str, Any], np.ndarray, int]]:
    """Each complete frame of a log from byte ``offset`` on: its header, its pixels and the
    offset after it (oldest first; ``growing``: the log is still being written)."""
    for record, after in read_records_from(path, offset, growing):
        blob = record.pop("blob", None)
        if blob is None:  # the log's own header
            continue
        pixels = np.frombuffer(blob, dtype=np.dtype(record["dtype"])).reshape(record["shape"])
        yield record, pixels, after
