"""What the processor says about itself: its counts as JSON (``/status``), Prometheus'
``/metrics``, ``/health`` (503 while the broker is unreachable or a job holds the loop past
its bound)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

from assonant_ioc.monitoring import http
from assonant_ioc.monitoring.http import Metric
from assonant_ioc.monitoring.metrics import counted, counters, gauge
from assonant_ioc.monitoring.watch import Watch


@dataclass
class Stats:
    topics: list[str] = field(default_factory=list)
    group: str = ""
    done: int = counted("derived files written and announced")
    reused: int = counted("results found whole on disk (a job run again)")
    duplicate: int = counted("events whose result was already announced")
    failed: int = counted("jobs that failed (recorded with their reason)")
    not_processed: int = counted("files whose definition has no pipeline")
    invalid_events: int = counted("events refused (not valid against the schema)")
    #: events refused: a path outside the roots, not a regular file, a sha256 not the file's
    refused: int = 0
    running: int = 0
    broker_connected: bool = False
    last_error: str = ""
    started_at: float = field(default_factory=time.time)

    def as_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


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
