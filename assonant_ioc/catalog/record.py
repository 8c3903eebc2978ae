"""One catalog record per file: its key and its searchable metadata (pure: no tiled, no Kafka).

A record is keyed by the file's path, so a file registered twice (a redelivered event,
an event after a backfill, a second backfill) is one record. Its metadata holds every
field a search takes: beamline, experiment id, sample, definition, moments, times
(ISO 8601 in UTC, and POSIX seconds for range queries), who ended it, validation, the
file's path, size and sha256, the event id, and ``status``: what the catalog found
when it looked at the file (``ok``, ``missing``, ``checksum_mismatch``, ``unreadable``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from assonant_ioc.model.times import iso
from assonant_ioc.trust import Refused, digest_regular, within


class FileStatus(str, Enum):
    OK = "ok"
    MISSING = "missing"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UNREADABLE = "unreadable"


class Origin(str, Enum):
    EVENT = "event"
    BACKFILL = "backfill"


class BadEvent(ValueError):
    """A message on the topic that is not a ``file_written`` event this catalog can register."""


#: the fields of a ``file_written`` event that a record must have
_REQUIRED = ("event_id", "beamline", "experiment_id", "file_path", "file_size", "sha256")


@dataclass
class Record:
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return record_key(self.path)

    @property
    def real_path(self) -> Path:
        """The path with every symbolic link resolved (the same file has one record)."""
        return Path(os.path.realpath(self.path))

    @property
    def status(self) -> FileStatus:
        return FileStatus(self.metadata.get("status", FileStatus.OK.value))


def access_tags(meta: dict[str, Any]) -> list[str]:
    """The record's access tags: its beamline's (the staff's) and, when it has one, its
    proposal's; never a public tag (releasing a proposal adds it, later)."""
    tags = [f"beamline:{meta.get('beamline') or 'unknown'}"]
    if meta.get("proposal"):
        tags.append(f"proposal:{meta['proposal']}")
    return tags


def record_key(path: Path) -> str:
    """A stable key for the file at ``path``: its name (URL-safe) and a hash of its full
    path, symbolic links resolved (an event's path and a backfill's name one record)."""
    real = os.path.realpath(path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:80] or "file"
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{stem}-{digest}"


def utc(text: str) -> tuple[str, float]:
    """An ISO 8601 time as (ISO 8601 in UTC with microseconds, POSIX seconds)."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    when = when.astimezone(timezone.utc)
    return when.isoformat(timespec="microseconds"), when.timestamp()


def _times(meta: dict[str, Any], start: str, end: str) -> None:
    for name, text in (("start", start), ("end", end)):
        if text:
            meta[f"{name}_time"], meta[f"{name}_epoch"] = utc(text)
        else:
            meta[f"{name}_time"], meta[f"{name}_epoch"] = "", None


@functools.cache
def _schema_validator() -> Any:
    """The event's JSON Schema, as shipped with the package (the IOC's events follow it)."""
    import json

    import jsonschema

    from assonant_ioc.events.message import EVENT_SCHEMA_PATH

    schema = json.loads(EVENT_SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check_event(event: Any) -> None:
    """Raise :class:`BadEvent` unless ``event`` is a ``file_written`` event of the schema
    version this catalog reads, valid against the shipped JSON Schema (the first three
    problems named, each with where in the event)."""
    from assonant_ioc.events.message import EVENT_SCHEMA_VERSION

    if not isinstance(event, dict) or event.get("event_type") != "file_written":
        raise BadEvent("not a file_written event")
    version = event.get("schema_version")
    if version != EVENT_SCHEMA_VERSION:
        raise BadEvent(
            f"schema_version {version!r}: this catalog reads version {EVENT_SCHEMA_VERSION} "
            "(a newer producer? upgrade the catalog)"
        )
    bad = _unstorable(event)
    if bad:  # a catalog write of it would fail at every retry: the consumer would wedge
        raise BadEvent(f"{bad}: not storable text (a NUL or a lone surrogate)")
    problems = sorted(
        _schema_validator().iter_errors(event), key=lambda e: list(map(str, e.absolute_path))
    )
    if problems:
        said = [
            f"{'/'.join(map(str, p.absolute_path)) or '(event)'}: {p.message}"[:200]
            for p in problems[:3]
        ]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadEvent("not valid against the event schema: " + "; ".join(said) + more)


def _unstorable(value: Any, where: str = "") -> str:
    """Where in ``value`` a text (a key or a value) holds what no catalog stores: a NUL
    (PostgreSQL's text) or a lone surrogate (not UTF-8); "" when nothing does."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(event)"
        return where or "(event)" if "\0" in value else ""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, f"{where}/(key)") or _unstorable(item, f"{where}/{key}")
            if found:
                return found.lstrip("/")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{where}/{i}")
            if found:
                return found.lstrip("/")
    return ""


def from_event(event: Any, registered_at: float) -> Record:
    """The record a ``file_written`` event describes (before the file is looked at)."""
    check_event(event)
    missing = [name for name in _REQUIRED if not event.get(name) and event.get(name) != 0]
    if missing:
        raise BadEvent(f"file_written event without {', '.join(missing)}")
    path = Path(str(event["file_path"]))
    if not path.is_absolute():
        raise BadEvent(f"file_path {str(path)!r} is not absolute")
    meta: dict[str, Any] = {
        "beamline": str(event["beamline"]),
        "experiment_id": str(event["experiment_id"]),
        "sample": str(event.get("sample_name", "")),
        "proposal": str(event.get("proposal", "")),
        "definition": str(event.get("definition", "")),
        "moments": [str(m) for m in event.get("moments", [])],
        "ended_by": str(event.get("ended_by", "")),
        "validation": event.get("validation"),
        "file_path": str(path),
        "file_size": int(event["file_size"]),
        "sha256": str(event["sha256"]),
        "event_id": str(event["event_id"]),
        "written_at": str(event.get("written_at", "")),
        "readings_captured": int(event.get("readings_captured", 0)),
        "readings_disconnected": int(event.get("readings_disconnected", 0)),
        "origin": Origin.EVENT.value,
        # where the readings came from: the IOC's command PVs (epics) or a Bluesky run
        "acquired_from": str(event.get("origin", "epics")),
        "run_uid": str(event.get("run_uid", "")),
        "registered_at": iso(registered_at),
    }
    try:
        _times(meta, str(event.get("start_time", "")), str(event.get("end_time", "")))
    except ValueError as err:
        raise BadEvent(f"bad time in event: {err}") from err
    return Record(path, meta)


def from_file_meta(path: Path, found: dict[str, Any], registered_at: float) -> Record:
    """The record of a file already on disk, from what ``nexus_meta.read`` found in it."""
    meta: dict[str, Any] = {
        "beamline": found.get("beamline", ""),
        "experiment_id": found.get("experiment_id", ""),
        "sample": found.get("sample", ""),
        "proposal": found.get("proposal", ""),
        "definition": found.get("definition", ""),
        "moments": list(found.get("moments", [])),
        "ended_by": found.get("ended_by", ""),
        "validation": None,  # what the IOC's validators found is in its event only
        "file_path": str(path),
        "event_id": "",
        "written_at": found.get("file_time", ""),
        "origin": Origin.BACKFILL.value,
        "registered_at": iso(registered_at),
    }
    try:
        _times(meta, found.get("start_time", ""), found.get("end_time", ""))
    except ValueError:
        _times(meta, "", "")
    return Record(path, meta)


def check_file(record: Record, roots: Sequence[Path] | None = None) -> Record:
    """Look at the file: set ``status`` (and ``problem``) from what is on disk.

    ``roots`` (an event's path, from outside): the path must lie under one of them and be a
    regular file (:mod:`assonant_ioc.trust`), else :class:`~assonant_ioc.trust.Refused`;
    a file missing there is a ``missing`` record. Without ``roots`` (a backfill of a
    directory the operator named) a file that cannot be read is an ``unreadable`` record.
    An event's size and sha256 are checked against the file (a mismatch says so, never
    what the file holds); a backfilled record takes them from the file."""
    meta = record.metadata
    try:
        real = record.real_path if roots is None else within(str(record.path), roots, "file_path")
        found = digest_regular(real, "file_path")
    except Refused as err:
        if err.reason == "missing":
            meta["status"], meta["problem"] = FileStatus.MISSING.value, "no such file"
            return record
        if roots is not None:
            raise
        meta["status"], meta["problem"] = FileStatus.UNREADABLE.value, str(err)
        return record
    size, digest = found.size, found.sha256
    if "sha256" not in meta:  # backfill: the file is its own reference
        meta["file_size"], meta["sha256"] = size, digest
    if digest != meta["sha256"] or size != meta["file_size"]:
        meta["status"] = FileStatus.CHECKSUM_MISMATCH.value
        meta["problem"] = "the file's size or sha256 is not the event's"
        return record
    meta.setdefault("status", FileStatus.OK.value)
    meta.setdefault("problem", "")
    return record
