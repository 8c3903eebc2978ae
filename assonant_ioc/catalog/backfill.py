"""Register the NeXus files already on disk, reading their metadata from the files themselves.

A file already in the catalog (by its path) stays one record: a second backfill, or a
backfill of files the consumer registered, adds nothing. HDF5 files that are not
experiment files (a detector's frames) are skipped; a file that cannot be opened is
registered as ``unreadable``, so it is found and not forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from assonant_ioc.catalog import nexus_meta
from assonant_ioc.catalog.record import FileStatus, Record, check_file, from_file_meta
from assonant_ioc.catalog.store import Catalog, Outcome

log = logging.getLogger(__name__)

SUFFIXES = (".nx", ".nxs", ".nx5", ".h5", ".hdf5", ".hdf")


def candidates(root: Path) -> list[Path]:
    """The HDF5 files under ``root``, in a stable order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def _record(path: Path) -> Record | None:
    """The file's record (``unreadable`` if it cannot be opened), or None for a non-experiment."""
    now = time.time()
    try:
        found = nexus_meta.read(path)
    except nexus_meta.NotAnExperimentFile:
        return None
    except OSError as err:
        record = from_file_meta(path, {}, now)
        record.metadata.update(status=FileStatus.UNREADABLE.value, problem=str(err))
        try:
            record.metadata["file_size"] = path.stat().st_size
        except OSError:
            pass
        return record
    return check_file(from_file_meta(path, found, now))


async def _register(catalog: Catalog, record: Record, attempts: int = 10) -> Outcome:
    """Register, waiting out a catalog busy with another writer (SQLite's lock)."""
    for attempt in range(attempts):
        try:
            return await catalog.register(record)
        except Exception as err:
            if attempt == attempts - 1:
                raise
            log.warning("%s: catalog busy (%r); trying again", record.path, err)
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


class Progress:
    """A bar on a terminal, a line every tenth otherwise (a log file, CI)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out, self._tenth = total, out, -1
        self.tty = out.isatty()

    def show(self, done: int, counts: Counter[str]) -> None:
        width = 30
        filled = width * done // max(self.total, 1)
        text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} " + " ".join(
            f"{k}={v}" for k, v in sorted(counts.items())
        )
        if self.tty:
            self.out.write("\r" + text + ("\n" if done == self.total else ""))
        elif (tenth := 10 * done // max(self.total, 1)) != self._tenth:
            self._tenth = tenth
            self.out.write(text + "\n")
        self.out.flush()


async def backfill(
    catalog: Catalog,
    root: Path,
    out: TextIO | None = None,
    on_file: Callable[[Path, str], None] | None = None,
) -> Counter[str]:
    """Register every experiment file under ``root``; returns the count of each outcome."""
    paths = candidates(root.resolve())
    progress = Progress(len(paths), out or sys.stderr)
    counts: Counter[str] = Counter()
    progress.show(0, counts)
    for done, path in enumerate(paths, 1):
        record = await asyncio.to_thread(_record, path)
        if record is None:
            outcome = "skipped"
        else:
            outcome = (await _register(catalog, record)).value
            if record.status is not FileStatus.OK and outcome != "duplicate":
                counts[record.status.value] += 1
                log.error("%s: %s (%s)", path, record.status.value, record.metadata["problem"])
        counts[outcome] += 1
        if on_file is not None:
            on_file(path, outcome)
        progress.show(done, counts)
    return counts
