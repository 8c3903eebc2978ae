"""Prometheus metrics made the same way by every service: counters from a service's counts,
each with its help text, under the service's prefix (``assonant_<service>_<name>_total``)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from assonant_ioc.monitoring.http import Metric


def counted(text: str) -> Any:
    """A dataclass field that counts from 0, a Prometheus counter with ``text`` its help."""
    return dataclasses.field(default=0, metadata={"counter": text})


def counters(service: str, counts: Any) -> list[Metric]:
    """``assonant_<service>_<name>_total``: each field of the dataclass ``counts`` made by
    :func:`counted`, with its help text; or, ``counts`` a mapping, each name's (count, help
    text)."""
    pairs: Mapping[str, tuple[Any, str]] = (
        counts
        if isinstance(counts, Mapping)
        else {
            f.name: (getattr(counts, f.name), f.metadata["counter"])
            for f in dataclasses.fields(counts)
            if "counter" in f.metadata
        }
    )
    return [
        (f"assonant_{service}_{name}_total", "counter", text, [({}, float(n))])
        for name, (n, text) in pairs.items()
    ]


def gauge(service: str, name: str, text: str, value: float) -> Metric:
    """``assonant_<service>_<name>`` (``assonant_<name>`` for the IOC's own, service ""),
    one value."""
    prefix = f"assonant_{service}_" if service else "assonant_"
    return (f"{prefix}{name}", "gauge", text, [({}, float(value))])


@dataclasses.dataclass
class ConsumerStats:
    """What every consumer of the topics counts (its ``/status`` serves these as JSON, its
    own counts after them): what it reads, events not valid against the schema, events
    refused (a path outside the roots, not a regular file, a sha256 not the file's: counted
    by reason in its watch), whether the broker answers."""

    topics: list[str] = dataclasses.field(default_factory=list)
    group: str = ""
    invalid_events: int = counted("events refused (not valid against the schema)")
    refused: int = 0
    broker_connected: bool = False
    started_at: float = dataclasses.field(default_factory=time.time)

    def as_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()
