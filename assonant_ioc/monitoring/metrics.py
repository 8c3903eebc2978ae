"""Prometheus metrics made the same way by every service: counters from a service's counts,
each with its help text, under the service's prefix (``assonant_<service>_<name>_total``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assonant_ioc.monitoring.http import Metric


def counters(service: str, counts: Any, texts: Mapping[str, str] | None = None) -> list[Metric]:
    """``assonant_<service>_<name>_total``: for each name of ``texts`` (its help text), the
    attribute of that name of ``counts``; without ``texts``, ``counts`` maps each name to
    (its count, its help text)."""
    pairs = (
        {name: (getattr(counts, name), text) for name, text in texts.items()}
        if texts is not None
        else counts
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
