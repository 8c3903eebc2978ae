"""A forwarder's stream as a source (the ESS forwarder's schemas, ``ess-streaming-data-types``):
the ``f144`` values, ``al00`` alarms and ``ep01`` connection states its topics carry, per
source name, handed to the monitor as a CA update is (value, time, severity, status,
connected): a facility that forwards its PVs to Kafka needs no CA access from the service.

A channel names its source ``kafka://SOURCE`` (the forwarder's source name, its PV's name
as a rule) and the config says the topics (``forwarder: {topics: [...]}``, the broker the
``kafka:`` one). A value keeps the alarm of the last ``al00`` of its source (its message as
CA's alarm condition when it names one: ``HIHI``...); an ``al00`` is a point of its own
(the last value, with the new alarm, at the alarm's time); an ``ep01`` that is not
CONNECTED is a disconnected point, as a CA disconnect is (the gap); a source never heard
from is absent, as a CA PV never connected is. At start the recent end of each partition
(its last ``BACKLOG`` messages) is read, so a snapshot has each source's last value.
A message of another schema, or one that cannot be read, is counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from assonant_ioc.config.protocols import bare
from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.monitor.pva import CONDITION_CODES

log = logging.getLogger(__name__)

BACKLOG = 1000


class ForwarderStream:
    """A thread consuming the forwarder's topics (no group: every partition, assigned)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        pvs: Iterable[str],
        update: Callable[[str, Any, float, int, int, str | None], None],
        lost: Callable[[str, float], None],
    ) -> None:
        self.bootstrap, self.topics = bootstrap, list(topics)
        self.sources = {bare(pv): pv for pv in pvs}
        self._update, self._lost = update, lost
        self._alarm: dict[str, tuple[int, int]] = {}  # source -> (severity, status)
        self._last: dict[str, Any] = {}  # source -> last value
        self.unreadable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _main(self) -> None:
        asyncio.run(self._consume())

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        from assonant_ioc.events.security import security

        while not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                client_id="assonant-forwarder-source",
                metadata_max_age_ms=5000,
                fetch_max_wait_ms=100,
                **security().kwargs(),
            )
            try:
                await consumer.start()
                parts: list[Any] = []
                while not parts and not self._stop.is_set():
                    cluster = await consumer._client.fetch_all_metadata()
                    for topic in self.topics:
                        ids = cluster.partitions_for_topic(topic) or set()
                        parts += [TopicPartition(topic, p) for p in sorted(ids)]
                    if not parts:
                        await asyncio.sleep(0.5)
                consumer.assign(parts)
                ends = await consumer.end_offsets(parts)
                starts = await consumer.beginning_offsets(parts)
                for tp in parts:
                    consumer.seek(tp, max(starts[tp], ends[tp] - BACKLOG))
                while not self._stop.is_set():
                    batch = await consumer.getmany(timeout_ms=300)
                    for records in batch.values():
                        for record in records:
                            self.take(record.value or b"")
            except (KafkaError, OSError) as err:
                log.warning("forwarder topics at %s: %r; retrying", self.bootstrap, err)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    def take(self, payload: bytes) -> None:
        """One message of the forwarder's topics (in the stream's thread)."""
        kind = payload[4:8].decode("ascii", errors="replace") if len(payload) >= 8 else ""
        try:
            if kind == "f144":
                from streaming_data_types.logdata_f144 import deserialise_f144

                msg = deserialise_f144(payload)
                pv = self.sources.get(msg.source_name)
                if pv is not None:
                    value = msg.value.item() if getattr(msg.value, "ndim", 1) == 0 else msg.value
                    self._last[msg.source_name] = value
                    severity, status = self._alarm.get(msg.source_name, (0, 0))
                    self._update(pv, value, msg.timestamp_unix_ns * 1e-9, severity, status, None)
            elif kind == "al00":
                from streaming_data_types.alarm_al00 import deserialise_al00

                alarm = deserialise_al00(payload)
                pv = self.sources.get(alarm.source)
                if pv is not None:
                    severity = int(alarm.severity.value)
                    status = CONDITION_CODES.get(alarm.message, 0 if not severity else 1)
                    self._alarm[alarm.source] = (severity, status)
                    if alarm.source in self._last:
                        t = alarm.timestamp_ns * 1e-9
                        self._update(pv, self._last[alarm.source], t, severity, status, None)
            elif kind == "ep01":
                from streaming_data_types.epics_connection_ep01 import (
                    ConnectionInfo,
                    deserialise_ep01,
                )

                state = deserialise_ep01(payload)
                pv = self.sources.get(state.source_name)
                if pv is not None and state.status is not ConnectionInfo.CONNECTED:
                    self._lost(pv, state.timestamp * 1e-9)
            else:
                self.unreadable += 1
        except Exception:
            self.unreadable += 1
            log.warning("forwarder message (%s) unreadable", kind or "?", exc_info=True)


def forwarder_of(config: BeamlineConfig) -> tuple[str, tuple[str, ...]] | None:
    """(broker, topics) of the config's forwarder source, None when it has none."""
    if not config.forwarder_topics:
        return None
    if not config.kafka.bootstrap:
        log.error("forwarder topics configured but no Kafka broker: kafka:// channels unread")
        return None
    return config.kafka.bootstrap, config.forwarder_topics
