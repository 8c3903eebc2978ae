"""The durable outbox: every event is on disk before its EndOfExperiment completes, and leaves
the disk only when the broker has acknowledged it. Events go out in the order they were made.

``outbox/<sequence>-<event_id>.json`` holds ``{"key", "event", "ready"}``; an event is
``ready`` once validation has filled it in (an event whose validation a stop interrupted is
validated again at the next start).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assonant_ioc.lifecycle.journal import fsync_dir, write_durable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    path: Path
    key: str
    event: dict[str, Any]
    ready: bool

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


class Outbox:
    """The events on disk, and an index of them in memory (read from the disk once, kept in
    step by every change): taking the next event, or finding one, reads no file, so draining
    n events after an outage costs O(n), not O(n^2). One Outbox per directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "outbox"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index: dict[Path, Pending] = {}  # in order: sequence numbers only grow
        self._by_id: dict[str, Path] = {}
        self._sequence = 0
        for path in sorted(self.dir.glob("[0-9]*.json")):
            self._sequence = max(self._sequence, int(path.name.split("-", 1)[0]))
            try:
                item = json.loads(path.read_text(encoding="utf-8"))
                found = Pending(path, str(item["key"]), dict(item["event"]), bool(item["ready"]))
            except (OSError, ValueError, KeyError) as err:
                log.error("outbox entry %s unreadable, left in place: %s", path, err)
                continue
            self._index[path] = found
            self._by_id[found.event_id] = path

    def put(self, key: str, event: dict[str, Any], ready: bool) -> Path:
        """Keep ``event`` durably (fsync) until :meth:`remove`; returns its place."""
        with self._lock:
            self._sequence += 1
            path = self.dir / f"{self._sequence:012d}-{event['event_id']}.json"
        self.update(path, key, event, ready)
        return path

    def update(self, path: Path, key: str, event: dict[str, Any], ready: bool) -> None:
        write_durable(path, json.dumps({"key": key, "event": event, "ready": ready}).encode())
        with self._lock:
            self._index[path] = Pending(path, key, dict(event), ready)
            self._by_id[str(event["event_id"])] = path

    def pending(self) -> list[Pending]:
        """The events not yet acknowledged, oldest first (an unreadable one is logged at
        start and left on disk)."""
        with self._lock:
            return list(self._index.values())

    def first(self) -> Pending | None:
        """The oldest event not yet acknowledged."""
        with self._lock:
            return next(iter(self._index.values()), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def find(self, event_id: str) -> Pending | None:
        with self._lock:
            path = self._by_id.get(event_id)
            return self._index.get(path) if path is not None else None

    def remove(self, pending: Pending) -> None:
        """The broker has acknowledged it."""
        pending.path.unlink(missing_ok=True)
        fsync_dir(self.dir)
        with self._lock:
            self._index.pop(pending.path, None)
            if self._by_id.get(pending.event_id) == pending.path:
                del self._by_id[pending.event_id]
