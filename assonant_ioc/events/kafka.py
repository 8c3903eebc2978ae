"""Send events to Kafka with aiokafka (the only module of the IOC that imports it; the catalog
consumer, a separate service, has its own in catalog/consumer.py).

Delivery is confirmed (``acks="all"``) by an idempotent producer, so a retry after a
lost acknowledgement does not write the event twice. Keeping an undelivered event is the
outbox's job (``lifecycle.outbox``): this module only sends one event or says why not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from assonant_ioc.errors import SendFailed
from assonant_ioc.events.ess import wrdn_of_event
from assonant_ioc.events.security import BrokerSecurity, security

log = logging.getLogger(__name__)


class EventSender:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        timeout: float = 10.0,
        idempotent: bool = True,
        secure: BrokerSecurity | None = None,
        wrdn_topic: str = "",
        service_id: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        #: ESS's finished-writing message (``wrdn``) after each file's event, on this topic
        #: (the run-control status topic), so an ESS-style ingestor registers every file
        self.wrdn_topic, self.service_id = wrdn_topic, service_id
        #: TLS and SASL to the broker (the environment's when not given)
        self.secure = secure or security()
        self._secure_kwargs = self.secure.kwargs()  # a bad setting is said at the start
        self.topic = topic
        self.timeout = timeout
        self.connected = False
        self.sent = 0
        self.last_error = ""
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        #: the config's ``kafka: {idempotent: ...}`` (on by default). Some Kafka-protocol
        #: brokers (Tansu) grant no producer id (InitProducerId): with it on, their refusal
        #: is a send failure that names the setting, never a silent downgrade; with it off,
        #: a retry after a lost acknowledgement repeats an event (same event_id: consumers
        #: drop the repeat), said once at start
        self.idempotent = idempotent
        if not idempotent:
            log.warning(
                "Kafka producer for %s is not idempotent (config kafka: idempotent: false): "
                "a retry after a lost acknowledgement may repeat an event, with its event_id",
                bootstrap,
            )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except KafkaError as err:
                await producer.stop()
                if not self.idempotent or isinstance(err, KafkaConnectionError):
                    raise SendFailed(f"Kafka broker {self.bootstrap} unreachable: {err!r}") from err
                raise SendFailed(
                    f"Kafka broker {self.bootstrap} grants no producer id for an idempotent "
                    f"producer ({err!r}): if it cannot (some Kafka-protocol brokers), set "
                    "kafka: {idempotent: false} in the config"
                ) from err
            except (OSError, asyncio.TimeoutError) as err:
                await producer.stop()
                raise SendFailed(f"Kafka broker {self.bootstrap} unreachable: {err!r}") from err
            self._producer = producer
        return self._producer

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=self.idempotent,
            request_timeout_ms=int(self.timeout * 1000),
            client_id="assonant-ioc",
            **self._secure_kwargs,
        )

    async def probe(self) -> bool:
        """Whether the broker answers (its producer started, then a metadata request), for a
        sender with nothing to send: a broker gone between events is seen then
        (KafkaConnected, /health), not only at the next send."""
        async with self._lock:
            try:
                producer = await self._ensure_producer()
                await asyncio.wait_for(producer.client.fetch_all_metadata(), self.timeout)
            except SendFailed as err:  # the producer could not start: its reason as it is
                self.connected, self.last_error = False, str(err)
                return False
            except (KafkaError, OSError, asyncio.TimeoutError) as err:
                if self.connected:
                    log.warning("Kafka broker %s stopped answering: %r", self.bootstrap, err)
                self.connected = False
                self.last_error = f"Kafka broker {self.bootstrap} unreachable: {err!r}"
                await self._drop_producer()
                return False
            self.connected = True
            return True

    async def send(self, key: str, event: dict[str, Any]) -> None:
        """Deliver one event and wait for the broker's acknowledgement, or raise SendFailed."""
        async with self._lock:
            try:
                producer = await self._ensure_producer()
                await asyncio.wait_for(
                    producer.send_and_wait(
                        self.topic, json.dumps(event).encode(), key=key.encode()
                    ),
                    self.timeout,
                )
                finished = wrdn_of_event(self.service_id, event) if self.wrdn_topic else None
                if finished is not None:  # a failure sends both again (the event_id the same)
                    await asyncio.wait_for(
                        producer.send_and_wait(self.wrdn_topic, finished, key=key.encode()),
                        self.timeout,
                    )
            except (KafkaError, OSError, asyncio.TimeoutError, SendFailed) as err:
                self.connected = False
                self.last_error = f"Kafka send to {self.topic} failed: {err!r}"
                log.warning("%s", self.last_error)
                await self._drop_producer()
                raise SendFailed(self.last_error) from err
            self.sent += 1
            self.connected = True

    async def publish(self, topic: str, payload: bytes, key: str = "") -> None:
        """One message (run control's answers and status) on ``topic``, acknowledged, or
        SendFailed."""
        async with self._lock:
            try:
                producer = await self._ensure_producer()
                await asyncio.wait_for(
                    producer.send_and_wait(topic, payload, key=key.encode() or None),
                    self.timeout,
                )
            except (KafkaError, OSError, asyncio.TimeoutError, SendFailed) as err:
                self.connected = False
                self.last_error = f"Kafka send to {topic} failed: {err!r}"
                await self._drop_producer()
                raise SendFailed(self.last_error) from err

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except (KafkaError, OSError):
                log.debug("producer stop failed", exc_info=True)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_producer()


async def _assign_from_start(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list[Any]:
    """Assign every partition of ``topic`` (waiting for it to appear), from its start."""
    parts: list[TopicPartition] = []
    while not parts and time.monotonic() < deadline:
        # fresh metadata each time: the topic may appear after we start
        cluster = await consumer._client.fetch_all_metadata()
        ids = cluster.partitions_for_topic(topic) or set()
        parts = [TopicPartition(topic, p) for p in sorted(ids)]
        if not parts:
            await asyncio.sleep(0.2)
    if not parts:
        raise TimeoutError(f"topic {topic!r} did not appear")
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    return parts


async def consume_event(
    bootstrap: str, topic: str, key: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Read ``topic`` from its start until the event with ``key`` arrives (no consumer group)."""
    event, _ = await consume_record(bootstrap, topic, key, timeout)
    return event


async def consume_record(
    bootstrap: str, topic: str, key: str, timeout: float = 20.0
) -> tuple[dict[str, Any], float]:
    """The event with ``key`` and its record's timestamp (when it was sent, epoch seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **security().kwargs()
    )
    try:  # a start that fails (broker away, TLS refused) closes the consumer too
        await consumer.start()
        deadline = time.monotonic() + timeout
        await _assign_from_start(consumer, topic, deadline)
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.key == key.encode() and rec.value is not None:
                        event: dict[str, Any] = json.loads(rec.value)
                        return event, rec.timestamp / 1000.0
        raise TimeoutError(f"no event with key {key!r} on {topic!r} within {timeout} s")
    finally:
        await consumer.stop()


async def consume_all(
    bootstrap: str, topic: str, at_least: int, timeout: float = 40.0
) -> list[dict[str, Any]]:
    """Every event on ``topic``, from its start to its end once ``at_least`` have arrived, in
    the order they were sent (by record timestamp: keys spread over partitions)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **security().kwargs()
    )
    try:  # a start that fails (broker away, TLS refused) closes the consumer too
        await consumer.start()
        deadline = time.monotonic() + timeout
        parts = await _assign_from_start(consumer, topic, deadline)
        events: list[tuple[int, dict[str, Any]]] = []
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                events += [(r.timestamp, json.loads(r.value)) for r in records if r.value]
            if len(events) >= at_least:
                ends = await consumer.end_offsets(parts)
                positions = [await consumer.position(p) for p in parts]
                if all(pos >= ends[p] for pos, p in zip(positions, parts, strict=True)):
                    return [e for _, e in sorted(events, key=lambda te: te[0])]
        raise TimeoutError(f"{len(events)} of {at_least} events on {topic!r} within {timeout} s")
    finally:
        await consumer.stop()
