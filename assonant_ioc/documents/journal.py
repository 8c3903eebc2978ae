"""Each run's documents on local disk as they arrive, so a kill -9 loses nothing durable.

``<state dir>/runs/<run uid>/documents.log``: one CRC-checked record per document (the
journal's record format: a torn last record is dropped, never misread), made durable
(fsync) at least every ``flush_s`` seconds and at the run's start and stop.
``writing.json`` says a file is being written (its final name and event id), so a stop in
the middle is finished, not done twice; ``written.log`` lists the runs already written, so a
redelivered run changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from assonant_ioc.documents.run import Run
from assonant_ioc.lifecycle.journal import fsync_dir, write_durable
from assonant_ioc.lifecycle.records import append_record, read_records

DOCUMENTS = "documents.log"
WRITING = "writing.json"
WRITTEN = "written.log"


def plain(value: Any) -> Any:
    """A document as JSON takes it (numpy arrays and scalars, tuples, bytes)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class RunJournal:
    def __init__(self, state_dir: Path, flush_s: float = 1.0) -> None:
        self.dir = state_dir / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self._files: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._synced = time.monotonic()
        self._written: set[str] | None = None

    def run_dir(self, uid: str) -> Path:
        return self.dir / uid

    def append(self, uid: str, name: str, doc: Mapping[str, Any], where: str = "") -> None:
        fh = self._files.get(uid)
        if fh is None:
            folder = self.run_dir(uid)
            new = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            if new:
                fsync_dir(self.dir)
            fh = self._files[uid] = open(folder / DOCUMENTS, "ab", buffering=0)
        record: dict[str, Any] = {"n": name, "d": doc}
        if where:
            record["w"] = where
        try:  # most documents are plain JSON already: converted only when they are not
            append_record(fh, record)
        except TypeError:
            record["d"] = plain(doc)
            append_record(fh, record)
        self._dirty.add(uid)
        if name in ("start", "stop") or time.monotonic() - self._synced >= self.flush_s:
            self.sync()

    def sync(self) -> None:
        """Make every document appended so far durable."""
        for uid in list(self._dirty):
            fh = self._files.get(uid)
            if fh is not None:
                os.fsync(fh.fileno())
        self._dirty.clear()
        self._synced = time.monotonic()

    def documents(self, uid: str) -> Iterator[tuple[str, dict[str, Any], str]]:
        """(name, document, where it came from) of a run, as journaled."""
        for record in read_records(self.run_dir(uid) / DOCUMENTS):
            yield str(record["n"]), dict(record["d"]), str(record.get("w", ""))

    def in_progress(self) -> list[str]:
        """The runs journaled and not yet written, oldest first."""
        found = [p for p in self.dir.iterdir() if (p / DOCUMENTS).exists()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def load(self, uid: str) -> Run:
        from assonant_ioc.documents.run import datum_page_datums, event_page_events

        run = Run(uid)
        for name, doc, _ in self.documents(uid):
            if name == "event_page":
                for event in event_page_events(doc):
                    run.add("event", event)
            elif name == "datum_page":
                for datum in datum_page_datums(doc):
                    run.add("datum", datum)
            else:
                run.add(name, doc)
        return run

    # -- writing ---------------------------------------------------------------------------
    def begin_write(self, uid: str, intent: Mapping[str, Any]) -> None:
        write_durable(self.run_dir(uid) / WRITING, json.dumps(dict(intent)).encode())

    def writing(self, uid: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.run_dir(uid) / WRITING).read_text())
        except (OSError, ValueError):
            return None
        return data

    def cancel_write(self, uid: str) -> None:
        with contextlib.suppress(OSError):
            (self.run_dir(uid) / WRITING).unlink()

    def written(self) -> set[str]:
        if self._written is None:
            self._written = set()
            with contextlib.suppress(FileNotFoundError):
                for line in (self.dir / WRITTEN).read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self._written.add(str(json.loads(line)["uid"]))
        return self._written

    def done(self, uid: str, path: str) -> None:
        """The run's file is at its final name and its event in the outbox: forget it."""
        with open(self.dir / WRITTEN, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"uid": uid, "path": path, "at": time.time()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.written().add(uid)
        fh2 = self._files.pop(uid, None)
        if fh2 is not None:
            fh2.close()
        self._dirty.discard(uid)
        shutil.rmtree(self.run_dir(uid), ignore_errors=True)
        with contextlib.suppress(OSError):
            fsync_dir(self.dir)

    def retire(self, uid: str, into: Path) -> None:
        """The run moved out of the journal into ``into`` (the dead-letter directory), and
        listed as written: never loaded or written again."""
        fh = self._files.pop(uid, None)
        if fh is not None:
            fh.close()
        self._dirty.discard(uid)
        if self.run_dir(uid).exists():
            os.replace(self.run_dir(uid), into)
        else:
            into.mkdir(parents=True, exist_ok=True)
        with open(self.dir / WRITTEN, "a", encoding="utf-8") as out:
            out.write(json.dumps({"uid": uid, "failed": str(into), "at": time.time()}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.written().add(uid)
        with contextlib.suppress(OSError):
            fsync_dir(self.dir)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sync()
        for fh in self._files.values():
            fh.close()
        self._files.clear()
