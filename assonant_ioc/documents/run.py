"""One Bluesky run's documents: checked as they arrive, kept once (a redelivery changes
nothing), in any order (an event before its descriptor waits for it).

Pure: no I/O. A document that is not what event-model says it is raises
:class:`MalformedDocument` naming the field; the run goes on without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The streams whose first and last events are the pre- and post-exposure snapshots.
BASELINE = "baseline"


class MalformedDocument(ValueError):
    """A document without a field it needs (or with one of the wrong type)."""

    def __init__(self, name: str, field_name: str, why: str) -> None:
        super().__init__(f"{name} document: {field_name} {why}")
        self.name = name
        self.field = field_name


def _need(name: str, doc: Mapping[str, Any], key: str, kind: Any) -> Any:
    if key not in doc:
        raise MalformedDocument(name, key, "is missing")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        want = " or ".join(k.__name__ for k in kinds)
        raise MalformedDocument(name, key, f"is {type(value).__name__}, not {want}")
    return value


_NUMBER = (int, float)


def check(name: str, doc: Any) -> None:
    """Raise :class:`MalformedDocument` unless ``doc`` has what this service reads of it."""
    if not isinstance(doc, Mapping):
        raise MalformedDocument(name, "(document)", f"is {type(doc).__name__}, not a mapping")
    if name == "start":
        _need(name, doc, "uid", str)
        _need(name, doc, "time", _NUMBER)
    elif name == "descriptor":
        for key in ("uid", "run_start"):
            _need(name, doc, key, str)
        keys = _need(name, doc, "data_keys", Mapping)
        for key, info in keys.items():
            if not isinstance(info, Mapping) or "dtype" not in info or "shape" not in info:
                raise MalformedDocument(name, f"data_keys.{key}", "has no dtype or shape")
    elif name == "event":
        for key in ("uid", "descriptor"):
            _need(name, doc, key, str)
        _need(name, doc, "seq_num", int)
        _need(name, doc, "time", _NUMBER)
        data = _need(name, doc, "data", Mapping)
        stamps = _need(name, doc, "timestamps", Mapping)
        for key in data:
            if not isinstance(stamps.get(key), _NUMBER):
                raise MalformedDocument(name, f"timestamps.{key}", "is missing or not a number")
    elif name == "event_page":
        for key in ("uid", "seq_num", "time"):
            _need(name, doc, key, list)
        _need(name, doc, "descriptor", str)
        _need(name, doc, "data", Mapping)
        _need(name, doc, "timestamps", Mapping)
    elif name == "stop":
        for key in ("uid", "run_start"):
            _need(name, doc, key, str)
        _need(name, doc, "time", _NUMBER)
    elif name == "stream_resource":
        for key in ("uid", "data_key", "uri"):
            _need(name, doc, key, str)
        _need(name, doc, "parameters", Mapping)
    elif name == "stream_datum":
        for key in ("uid", "stream_resource", "descriptor"):
            _need(name, doc, key, str)
        for key in ("indices", "seq_nums"):
            span = _need(name, doc, key, Mapping)
            for end in ("start", "stop"):
                if not isinstance(span.get(end), int):
                    raise MalformedDocument(name, f"{key}.{end}", "is missing or not an integer")
    elif name == "resource":
        for key in ("uid", "spec", "resource_path"):
            _need(name, doc, key, str)
    elif name == "datum":
        for key in ("datum_id", "resource"):
            _need(name, doc, key, str)
        _need(name, doc, "datum_kwargs", Mapping)
    elif name == "datum_page":
        _need(name, doc, "resource", str)
        _need(name, doc, "datum_id", list)
        _need(name, doc, "datum_kwargs", Mapping)
    else:
        raise MalformedDocument(name, "(name)", "is not a Bluesky document name")


def event_page_events(page: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The events of an event page."""
    for i, uid in enumerate(page["uid"]):
        yield {
            "uid": uid,
            "descriptor": page["descriptor"],
            "seq_num": page["seq_num"][i],
            "time": page["time"][i],
            "data": {k: v[i] for k, v in page["data"].items()},
            "timestamps": {k: v[i] for k, v in page["timestamps"].items()},
            "filled": {k: v[i] for k, v in page.get("filled", {}).items()},
        }


def datum_page_datums(page: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for i, datum_id in enumerate(page["datum_id"]):
        yield {
            "datum_id": datum_id,
            "resource": page["resource"],
            "datum_kwargs": {k: v[i] for k, v in page["datum_kwargs"].items()},
        }


def uid_of(name: str, doc: Mapping[str, Any]) -> str:
    return str(doc["datum_id"] if name == "datum" else doc["uid"])


@dataclass
class Run:
    """Everything a run has sent so far, each document once."""

    uid: str
    start: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    descriptors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: descriptor uid -> seq_num -> event
    events: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    stream_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream_datums: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    datums: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: when the last document arrived (the service's clock), for the run timeout
    last_seen: float = 0.0
    documents: int = 0
    seen: set[str] = field(default_factory=set)

    def add(self, name: str, doc: dict[str, Any]) -> bool:
        """Keep ``doc``; False when it was already here (a repeat)."""
        uid = f"{name}:{uid_of(name, doc)}"
        if uid in self.seen:
            return False
        if name == "start":
            self.start = doc
        elif name == "stop":
            self.stop = doc
        else:
            table, key = self._table(name, doc)
            if key in table:  # another uid for the same place (seq_num): the first stays
                return False
            table[key] = doc
        self.seen.add(uid)
        self.documents += 1
        return True

    def _table(self, name: str, doc: dict[str, Any]) -> tuple[dict[Any, Any], Any]:
        if name == "descriptor":
            return self.descriptors, doc["uid"]
        if name == "event":
            return self.events.setdefault(doc["descriptor"], {}), int(doc["seq_num"])
        if name == "stream_resource":
            return self.stream_resources, doc["uid"]
        if name == "stream_datum":
            return self.stream_datums, doc["uid"]
        if name == "resource":
            return self.resources, doc["uid"]
        return self.datums, doc["datum_id"]

    def stream_of(self, descriptor: str) -> str:
        return str(self.descriptors.get(descriptor, {}).get("name", "primary"))
