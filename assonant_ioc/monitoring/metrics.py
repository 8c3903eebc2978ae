"""Prometheus metrics made the same way by every service: counters from a service's counts,
each with its help text, under the service's prefix (``assonant_<service>_<name>_total``)."""

from __future__ import annotations

from collections.abc import Mapping

from assonant_ioc.monitoring.http import Metric


def counters(service: str, counts: Mapping[str, tuple[float, str]]) -> list[Metric]:
    """``assonant_<service>_<name>_total`` for each (count, help text) by name."""
    return [
        (f"assonant_{service}_{name}_total", "counter", text, [({}, float(n))])
        for name, (n, text) in counts.items()
    ]


def gauge(service: str, name: str, text: str, value: float) -> Metric:
    """``assonant_<service>_<name>``, one value."""
    return (f"assonant_{service}_{name}", "gauge", text, [({}, float(value))])
