"""The experiment in progress on local disk, so that a crash or a restart loses nothing durable.

One directory per service (``--state-dir``) holds at most one experiment in progress::

    experiment/meta.json     who, what was captured, the state; replaced atomically each step
    experiment/pre.log       a snapshot: the monitor's raw updates as binary columns, fsynced,
                             with the experiment's meta as of that step (one durable write)
    experiment/post.log
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
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from assonant_ioc.lifecycle.records import (
    append_record,
    encode_values,
    framed,
    json_record,
    jsonable,
    read_columns,
    read_records,
    read_snapshot,
    read_snapshot_meta,
    snapshot_columns,
    write_record,
)
from assonant_ioc.model.components import SeriesColumns
from assonant_ioc.model.readings import RawSnapshot, Reading, describe

log = logging.getLogger(__name__)

META = "meta.json"
SNAPSHOTS = ("pre.log", "post.log")
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


class Journal:
    """The on-disk record of the experiment in progress (one per state directory)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "experiment"
        #: the last snapshot header: (its PVs, units and last values; its JSON)
        self._header: tuple[Any, bytes] | None = None
        #: each saved meta's number: the newest of meta.json and the snapshots' is the meta
        self._seq = 0

    # -- meta --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return any((self.dir / name).exists() for name in (META, *SNAPSHOTS))

    def begin(self, meta: Mapping[str, Any] | None) -> None:
        """Start a new experiment's journal (an old one is discarded); its meta is written
        now, or with the first snapshot when ``meta`` is None."""
        if self.dir.exists():  # kept by the last discard, empty: nothing to make durable
            if self._empty():
                fsync_dir(self.dir)
        else:
            self.dir.mkdir(parents=True)
            fsync_dir(self.dir.parent)
        self._seq = 0
        if meta is not None:
            self.save_meta(meta)

    def _numbered(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return {**meta, "seq": self._seq}

    def save_meta(self, meta: Mapping[str, Any]) -> None:
        write_durable(self.dir / META, json.dumps(self._numbered(meta), indent=1).encode())

    def load_meta(self) -> dict[str, Any]:
        """The newest meta saved: meta.json's, or a later snapshot's that carried it."""
        found: list[dict[str, Any]] = []
        if (self.dir / META).exists():
            found.append(json.loads((self.dir / META).read_text(encoding="utf-8")))
        for name in SNAPSHOTS:
            if (self.dir / name).exists():
                meta = read_snapshot_meta(self.dir / name)
                if meta is not None:
                    found.append(meta)
        if not found:
            raise FileNotFoundError(f"no experiment meta in {self.dir}")
        newest = max(found, key=lambda m: int(m.get("seq", 0)))
        self._seq = max(self._seq, int(newest.get("seq", 0)))
        return newest

    def discard(self) -> None:
        """The experiment is written or aborted: forget it."""
        if self.dir.exists() and self._empty():
            with contextlib.suppress(OSError):
                fsync_dir(self.dir)

    def _empty(self) -> bool:
        """Remove what the directory holds (kept itself: the next experiment's begin then
        makes nothing durable); True if there was anything."""
        removed = False
        for entry in os.scandir(self.dir):
            removed = True
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        return removed

    # -- snapshots ---------------------------------------------------------------------------
    def save_snapshot(
        self, moment: str, snap: RawSnapshot, meta: Mapping[str, Any] | None = None
    ) -> None:
        """A snapshot as it was taken (raw updates, binary columns), durable before return;
        with ``meta``, the experiment's meta goes in the same record (one durable write)."""
        pvs, columns = snapshot_columns(snap)
        header = self._snapshot_header(pvs, snap)
        path = self.dir / f"{moment}.log"
        tmp = path.with_name(f".{path.name}.tmp")
        batch = {"at": time.time(), "n": len(pvs), "o": columns.pop("o")}
        if meta is not None:
            batch["meta"] = self._numbered(meta)
        with open(tmp, "wb", buffering=0) as fh:
            write_record(fh, header + framed(batch, columns))  # one write
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(self.dir)

    def _snapshot_header(self, pvs: list[str], snap: RawSnapshot) -> bytes:
        """A snapshot's first record, framed: its PVs, their units and last values, as JSON.
        The same for every snapshot of a beamline until a PV or a unit changes (the
        monitor's layout says when): encoded once (10,000 PVs' JSON took half a snapshot's
        time)."""
        key: Any = (
            ("layout", snap.columns.layout)
            if snap.columns is not None
            else (pvs, dict(snap.units), dict(snap.last))
        )
        if self._header is not None and self._header[0] == key:
            return self._header[1]
        units, last = snap.units, snap.last
        header = {
            "pvs": pvs,
            "u": {str(i): units[pv] for i, pv in enumerate(pvs) if units.get(pv)},
            "last": {str(i): jsonable(last[pv]) for i, pv in enumerate(pvs) if pv in last},
        }
        record = json_record(json.dumps(header, separators=(",", ":")).encode())
        self._header = (key, record)
        return record

    def load_snapshot(self, moment: str) -> dict[str, Reading]:
        return read_snapshot(self.dir / f"{moment}.log").readings()

    # -- frames --------------------------------------------------------------------------------
    def add_frame_file(self, component: str, path: str) -> None:
        self._frames_line({"component": component, "path": path})

    def add_frame_count(self, component: str, path: str, frames: int) -> None:
        """The frames the detector says a file holds, when its plugin closed it."""
        self._frames_line({"component": component, "path": path, "frames": frames})

    def _frames_line(self, item: Mapping[str, Any]) -> None:
        with open(self.dir / FRAMES_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(item) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _frames_items(self) -> list[dict[str, Any]]:
        try:
            text = (self.dir / FRAMES_LOG).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        items = []
        for line in text.splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:  # a torn last line
                continue
        return items

    def frame_files(self) -> dict[str, list[str]]:
        files: dict[str, list[str]] = {}
        for item in self._frames_items():
            names = files.setdefault(item["component"], [])
            if item["path"] not in names:
                names.append(item["path"])
        return files

    def frame_counts(self) -> dict[str, int]:
        """Path -> the frames the detector said the file holds (files whose close was seen)."""
        return {i["path"]: int(i["frames"]) for i in self._frames_items() if "frames" in i}

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
        max_pending: int = 2_000_000,
        on_durability: Callable[[int, str], None] = lambda waiting, problem: None,
    ) -> None:
        self.path = path
        #: readings held in memory while they cannot be written; beyond, updates are dropped
        #: and the gap is recorded (its times and count) once the journal takes writes again
        self.max_pending = max_pending
        self._on_durability = on_durability
        self.dropped = 0  # readings dropped in all
        self._gap: list[float] | None = None  # [first, last] time dropped since the last flush
        self._gap_count = 0
        self.gaps: list[dict[str, float]] = []  # gaps made durable
        self.failing = ""  # why the last flush failed (empty: it did not)
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
        self._units_sent: dict[int, str] = {}
        self._dtypes_sent: dict[int, str] = {}
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
            if len(p) >= self.max_pending:  # the journal cannot take it and memory is full
                self._gap_count += 1
                if self._gap is None:
                    self._gap = [t, t]
                else:
                    self._gap[0], self._gap[1] = min(self._gap[0], t), max(self._gap[1], t)
                return
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

    @property
    def waiting(self) -> int:
        """Readings held in memory, not yet durable."""
        return len(self._cols[0])

    def flush(self) -> int:
        """Write the current batch as one record and make it durable; returns its readings.

        If the write fails the batch goes back in front of the buffer: nothing is dropped
        (up to ``max_pending`` readings; beyond, the gap is recorded with the next batch).
        A failure and the recovery from it are told to ``on_durability`` at once.
        """
        with self._lock:
            cols, self._cols = self._cols, ([], [], [], [], [], [])
            gap, count = self._gap, self._gap_count
            self._gap, self._gap_count = None, 0
        try:
            n = self._write_batch(cols, gap, count)
        except BaseException as err:
            with self._lock:
                self._cols = tuple(old + new for old, new in zip(cols, self._cols, strict=True))
                if gap is not None:  # still to be recorded
                    self._gap_count += count
                    self._gap = (
                        gap
                        if self._gap is None
                        else [min(gap[0], self._gap[0]), max(gap[1], self._gap[1])]
                    )
            self.failing = f"{type(err).__name__}: {err}"
            self._on_durability(self.waiting, self.failing)
            raise
        if self.failing:
            self.failing = ""
            self._on_durability(0, "")
        return n

    def _write_batch(
        self, cols: tuple[list[Any], ...], gap: list[float] | None = None, dropped: int = 0
    ) -> int:
        p, v, t, s, a, c = cols
        now = time.time()
        # units and dtypes go in a record only when first seen or changed (and are marked
        # sent only once the record is written)
        units = {}
        for i in set(p):
            u = self._units_of(self.pvs[i])
            if self._units_sent.get(i) != u:
                units[i] = u
        dtypes = {}
        seen: set[int] = set()
        for i, x, conn in zip(p, v, c, strict=True):
            if conn and i not in seen:
                seen.add(i)
                d = describe(x)[0]
                if self._dtypes_sent.get(i) != d:
                    dtypes[i] = d
        values = encode_values(v, c)
        header: dict[str, Any] = {
            "at": now,
            "n": len(p),
            "o": values.pop("o"),
            "u": {str(k): u for k, u in units.items() if u},
            "d": {str(k): d for k, d in dtypes.items()},
        }
        if gap is not None:
            header["gap"] = {"from": gap[0], "to": gap[1], "dropped": dropped}
        # an empty batch is a heartbeat: the recording is durable up to now
        append_record(self._fh, header, {"p": p, "t": t, "s": s, "a": a, "c": c, **values})
        self._sync()
        self._units_sent.update(units)
        self._dtypes_sent.update(dtypes)
        if gap is not None:
            self.gaps.append(header["gap"])
            self.dropped += dropped
        self.durable_at = now
        self.count += len(p)
        return len(p)

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())

    def _run(self) -> None:
        while not self._wake.wait(self.flush_s):
            self._try_flush()

    def _try_flush(self) -> bool:
        failing = self.failing
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001 - told at once (on_durability); the monitor goes on
            self.flush_error = err
            if not failing:  # one log line per failure, not one a second
                log.error("journal flush to %s failed: %s", self.path, err)
            return False
        if failing:
            log.warning("journal flush to %s works again", self.path)
        self.flush_error = None
        return True

    def close(self, end: float) -> None:
        """Fix the end time: later-stamped updates are no longer taken."""
        self.end = end

    def stop(self) -> int:
        """Take nothing more, flush what is left; returns the readings recorded in all.

        If the journal cannot take the last batch, it stays in memory and is retried every
        ``flush_s`` seconds (:meth:`settle` makes it durable now or says why not) and
        :class:`NotDurable` says so; nothing captured is thrown away.
        """
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._stopped = True
        return self._flush_or_retry()

    def _flush_or_retry(self) -> int:
        """Flush what is left and close the log; when the journal cannot take it, a thread
        retries every ``flush_s`` seconds and :class:`NotDurable` says so."""
        if not self._try_flush():
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._retry, name="journal-retry", daemon=True)
            self._thread.start()
            raise NotDurable(self.waiting, self.failing)
        self._fh.close()
        return self.count

    def _retry(self) -> None:
        """After the stop: retry the last batch until it is durable (or abandoned)."""
        while not self._wake.wait(self.flush_s):
            if self._try_flush():
                self._fh.close()
                return

    def settle(self) -> int:
        """Make the stopped recording durable now, or raise :class:`NotDurable`."""
        if self._fh.closed:
            return self.count
        self._wake.set()
        self._thread.join()
        if self._fh.closed:  # the retry made it meanwhile
            return self.count
        return self._flush_or_retry()

    def abandon(self) -> None:
        """Stop without flushing (the experiment is aborted)."""
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._stopped = True
        if not self._fh.closed:
            self._fh.close()


class NotDurable(OSError):
    """What was captured could not be written to the state directory yet: it is kept in
    memory and retried."""

    def __init__(self, waiting: int, why: str) -> None:
        super().__init__(
            f"{waiting} reading(s) kept in memory, not yet durable (state directory: {why}); "
            "retried every second: make room"
        )
        self.waiting = waiting
