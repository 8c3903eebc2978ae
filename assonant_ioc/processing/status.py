"""What the processor says about itself: its counts as JSON (``/status``), Prometheus'
``/metrics``, ``/health`` (503 while the broker is unreachable or a job holds the loop past
its bound)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from assonant_ioc.monitoring import http
from assonant_ioc.monitoring.http import Metric
from assonant_ioc.monitoring.metrics import ConsumerStats, counted, counters, gauge
from assonant_ioc.monitoring.watch import Watch


@dataclass
class Stats(ConsumerStats):
    done: int = counted("derived files written and announced")
    reused: int = counted("results found whole on disk (a job run again)")
    duplicate: int = counted("events whose result was already announced")
    failed: int = counted("jobs that failed (recorded with their reason)")
    not_processed: int = counted("files whose definition has no pipeline")
    running: int = 0
    last_error: str = ""


def metrics(stats: Stats, watch: Watch) -> list[Metric]:
    return [
        *counters("process", stats),
        gauge("process", "running", "jobs running", stats.running),
        *watch.metrics("process"),
    ]


def health(stats: Stats, watch: Watch) -> str:
    return watch.stalled() or ("" if stats.broker_connected else "Kafka broker unreachable")


async def serve_status(
    stats: Stats, host: str, port: int, watch: Watch | None = None
) -> asyncio.Server:
    watch = watch or Watch()
    return await http.serve_status(
        host, port, stats.as_json, lambda: metrics(stats, watch), lambda: health(stats, watch)
    )
