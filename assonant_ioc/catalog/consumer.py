"""The catalog consumer: ``file_written`` events in, one catalog record per file out.

A Kafka consumer group (aiokafka) over one or more beamlines' topics. A batch's
offsets are committed only after each of its files is registered, so a stop (even
SIGKILL) between the two redelivers the events, and the catalog, keyed by file and
event id, changes nothing the second time. A broker outage only pauses it; a catalog
that cannot be written is retried, never skipped. Its counts and lag are logged and
served as JSON (``--status-port``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from assonant_ioc.catalog.record import BadEvent, FileStatus, check_file, from_event
from assonant_ioc.catalog.store import Catalog, Outcome
from assonant_ioc.events.consuming import BrokerLoop, Subscription, consumer_for, stop_consumer
from assonant_ioc.monitoring import http
from assonant_ioc.monitoring.http import Metric
from assonant_ioc.monitoring.metrics import ConsumerStats, counted, counters, gauge
from assonant_ioc.monitoring.watch import Watch
from assonant_ioc.trust import Refused

log = logging.getLogger(__name__)


@dataclass
class Stats(ConsumerStats):
    """What the consumer has done (its status endpoint serves these as JSON)."""

    catalog: str = ""
    registered: int = counted("files registered")
    duplicate: int = counted("events of files already registered")
    updated: int = counted("records updated")
    missing: int = counted("files missing when registered")
    checksum_mismatch: int = counted("events refused: the file's sha256 is not the event's")
    unreadable: int = counted("files that could not be read")
    catalog_errors: int = counted("catalog writes that failed (retried)")
    lag: int | None = None
    #: partitions assigned to this consumer (0 until it has joined its group)
    assigned: int = 0
    last_event_id: str = ""
    last_registered_at: float | None = None
    #: the last catalog write failed (cleared by the next that works)
    catalog_failing: bool = False

    def line(self) -> str:
        lag = "?" if self.lag is None else str(self.lag)
        return (
            f"registered={self.registered} duplicate={self.duplicate} updated={self.updated} "
            f"missing={self.missing} checksum_mismatch={self.checksum_mismatch} "
            f"unreadable={self.unreadable} invalid_events={self.invalid_events} "
            f"refused={self.refused} lag={lag} "
            f"broker={'connected' if self.broker_connected else 'unreachable'}"
        )


class CatalogConsumer:
    def __init__(
        self,
        sub: Subscription,
        catalog: Catalog,
        roots: tuple[Path, ...],
        stall_s: float = 900.0,
    ) -> None:
        self.sub = sub
        self.catalog = catalog
        #: the directories whose files may be registered (resolved): ``--read``
        self.roots = roots
        self.stats = Stats(catalog=catalog.shown, topics=list(sub.topics), group=sub.group)
        self.watch = Watch(stall_s)
        self._consumer: AIOKafkaConsumer | None = None

    def _new_consumer(self) -> AIOKafkaConsumer:
        return consumer_for(self.sub, "assonant-catalog")

    def _broker_up(self, up: bool) -> None:
        self.stats.broker_connected = up
        if up:
            log.info("consuming %s", self.sub)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set."""
        loop = BrokerLoop(self._new_consumer, self.sub, None, self._broker_up)
        consumer = await loop.start(stop)
        if consumer is None:
            return
        self._consumer = consumer
        try:
            async for batch in loop.batches(consumer, stop, max_records=200):
                for tp, records in batch.items():
                    for rec in records:
                        self.watch.begin(f"{tp.topic}[{tp.partition}]@{rec.offset}")
                        try:
                            if not await self._handle(rec.value, tp, rec.offset, stop):
                                return  # stopped before this one was registered: not committed
                        finally:
                            self.watch.end()
                    await self._commit(consumer, tp, records[-1].offset + 1)
        finally:
            self._consumer = None
            await stop_consumer(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (KafkaError, OSError) as err:  # redelivered later: a duplicate, nothing lost
            log.warning("commit of %s:%s at %s failed: %r", tp.topic, tp.partition, offset, err)

    async def _handle(
        self, value: bytes | None, tp: TopicPartition, offset: int, stop: asyncio.Event
    ) -> bool:
        """Register one event (retrying the catalog until it answers); False when stopped."""
        where = f"{tp.topic}[{tp.partition}]@{offset}"
        try:
            event = json.loads(value or b"")
            if isinstance(event, dict) and event.get("event_type") == "file_failed":
                log.warning(
                    "%s: run %s failed, no file: %s",
                    where,
                    event.get("run_uid"),
                    event.get("reason"),
                )
                return True  # a run closed as failed: nothing to register
            record = from_event(event, time.time())
        except (ValueError, BadEvent) as err:
            self.stats.invalid_events += 1
            log.error("%s: not registered, not a valid file_written event: %s", where, err)
            return True
        try:
            record = await asyncio.to_thread(check_file, record, self.roots)
        except Refused as err:
            return self._refuse(where, err.reason, str(err))
        if record.status is FileStatus.CHECKSUM_MISMATCH:
            self.stats.checksum_mismatch += 1
            return self._refuse(where, "checksum", f"{record.path}: {record.metadata['problem']}")
        while True:
            try:
                outcome = await self.catalog.register(record)
                self.stats.catalog_failing = False
                break
            except Exception as err:  # noqa: BLE001 - any catalog failure is retried
                self.stats.catalog_errors += 1
                self.stats.catalog_failing = True
                log.error("%s: catalog %s failed (%r); retrying", where, self.catalog.shown, err)
                try:
                    await asyncio.wait_for(stop.wait(), self.sub.retry_s)
                    return False
                except asyncio.TimeoutError:
                    pass
        self._count(outcome, record.status)
        self.stats.last_event_id = record.metadata["event_id"]
        level = logging.INFO if record.status is FileStatus.OK else logging.ERROR
        log.log(
            level,
            "%s %s: %s (%s) event %s%s",
            outcome.value,
            record.key,
            record.path,
            record.status.value,
            record.metadata["event_id"],
            f": {record.metadata['problem']}" if record.metadata.get("problem") else "",
        )
        return True

    def _refuse(self, where: str, reason: str, why: str) -> bool:
        """An event not trusted: named in the log, counted, its offset committed past."""
        self.stats.refused += 1
        self.watch.refuse(reason)
        log.error("%s: refused (%s), not registered: %s", where, reason, why)
        return True

    def _count(self, outcome: Outcome, status: FileStatus) -> None:
        if outcome is Outcome.DUPLICATE:
            self.stats.duplicate += 1
            return
        if outcome is Outcome.REGISTERED:
            self.stats.registered += 1
        else:
            self.stats.updated += 1
        self.stats.last_registered_at = time.time()
        if status is FileStatus.MISSING:
            self.stats.missing += 1
        elif status is FileStatus.UNREADABLE:
            self.stats.unreadable += 1

    async def refresh(self) -> None:
        """Update the broker's reachability and the lag (events not yet registered)."""
        consumer = self._consumer
        if consumer is None:
            return
        try:
            await asyncio.wait_for(consumer.topics(), 5)
            self.stats.broker_connected = True
        except (KafkaError, OSError, asyncio.TimeoutError):
            self.stats.broker_connected = False
            return
        lag = 0
        try:
            parts = list(consumer.assignment())
            self.stats.assigned = len(parts)
            ends = await asyncio.wait_for(consumer.end_offsets(parts), 5) if parts else {}
            for tp in parts:
                lag += max(0, ends.get(tp, 0) - await consumer.position(tp))
        except (KafkaError, OSError, asyncio.TimeoutError, AssertionError):
            return  # a rebalance in progress: the next refresh tells
        self.stats.lag = lag


async def report(consumer: CatalogConsumer, every: float, stop: asyncio.Event) -> None:
    """Refresh the lag each second and log the counts every ``every`` seconds (and on change)."""
    last_line, last_log = "", 0.0
    while not stop.is_set():
        await consumer.refresh()
        line = consumer.stats.line()
        now = time.monotonic()
        if (line != last_line and now - last_log >= min(every, 5)) or now - last_log >= every:
            log.info("catalog status: %s", line)
            last_line, last_log = line, now
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


def metrics(stats: Stats, watch: Watch) -> list[Metric]:
    """The consumer's counts and lag, as Prometheus reads them."""
    lag = float("nan") if stats.lag is None else float(stats.lag)
    return [
        *counters("catalog", stats),
        gauge("catalog", "lag", "events not yet registered", lag),
        gauge("catalog", "partitions", "partitions assigned", stats.assigned),
        gauge("catalog", "broker_up", "the broker answers", 1.0 if stats.broker_connected else 0),
        *watch.metrics("catalog"),
    ]


def health(stats: Stats, watch: Watch) -> str:
    """Empty when healthy; else why not (the broker or the catalog unreachable, the loop
    stuck on one event)."""
    stuck = watch.stalled()
    if stuck:
        return stuck
    if not stats.broker_connected:
        return "Kafka broker unreachable"
    if stats.catalog_failing:
        return "catalog unreachable: its writes fail (retried)"
    return ""


async def serve_status(
    stats: Stats, host: str, port: int, watch: Watch | None = None
) -> asyncio.Server:
    """``/status`` (and ``/``): the counts as JSON; ``/metrics`` for Prometheus; ``/health``:
    503 while the broker or the catalog is unreachable, or the loop is stuck."""
    watch = watch or Watch()
    return await http.serve_status(
        host, port, stats.as_json, lambda: metrics(stats, watch), lambda: health(stats, watch)
    )
