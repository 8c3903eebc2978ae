"""Prometheus metrics made the same way by every service: counters from a service's counts,
each with its help text, under the service's prefix (``assonant_<service>_<name>_total``)."""

from __future__ import annotations

import dataclasses
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
