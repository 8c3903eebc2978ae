"""The durable outbox: every event is on disk before its EndOfExperiment completes, and leaves
the disk only when the broker has acknowledged it. Events go out in the order they were made.

``outbox/<sequence>-<event_id>.json`` holds ``{"key", "event", "ready"}``; an event is
``ready`` once validation has filled it in (an event whose validation a stop interrupted is
validated again at the next start).
"""

from __future__ import annotations

import json
import logging
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
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "outbox"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _next_sequence(self) -> int:
        seqs = [
            int(p.name.split("-", 1)[0]) for p in self.dir.glob("*.json") if p.name[0].isdigit()
        ]
        return max(seqs, default=0) + 1

    def put(self, key: str, event: dict[str, Any], ready: bool) -> Path:
        """Keep ``event`` durably (fsync) until :meth:`remove`; returns its place."""
        path = self.dir / f"{self._next_sequence():012d}-{event['event_id']}.json"
        self.update(path, key, event, ready)
        return path

    def update(self, path: Path, key: str, event: dict[str, Any], ready: bool) -> None:
        write_durable(path, json.dumps({"key": key, "event": event, "ready": ready}).encode())

    def pending(self) -> list[Pending]:
        """The events not yet acknowledged, oldest first (an unreadable one is logged, kept)."""
        out = []
        for path in sorted(self.dir.glob("[0-9]*.json")):
            try:
                item = json.loads(path.read_text(encoding="utf-8"))
                out.append(
                    Pending(path, str(item["key"]), dict(item["event"]), bool(item["ready"]))
                )
            except (OSError, ValueError, KeyError) as err:
                log.error("outbox entry %s unreadable, left in place: %s", path, err)
        return out

    def find(self, event_id: str) -> Pending | None:
        return next((p for p in self.pending() if p.event_id == event_id), None)

    def remove(self, pending: Pending) -> None:
        """The broker has acknowledged it."""
        pending.path.unlink(missing_ok=True)
        fsync_dir(self.dir)
