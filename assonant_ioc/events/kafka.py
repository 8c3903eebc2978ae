"""Send events to Kafka with aiokafka (the only module that imports it).

Delivery is confirmed (``acks="all"``). An event that cannot be delivered is
kept in a backlog and sent again once the broker answers: nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from assonant_ioc.errors import SendFailed

log = logging.getLogger(__name__)


class EventSender:
    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self.backlog: deque[tuple[str, dict[str, Any]]] = deque()
        self.connected = False
        self.sent = 0
        self.last_error = ""
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=False,
                request_timeout_ms=int(self.timeout * 1000),
                client_id="assonant-ioc",
            )
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except (KafkaError, OSError, asyncio.TimeoutError) as err:
                await producer.stop()
                raise SendFailed(f"Kafka broker {self.bootstrap} unreachable: {err!r}") from err
            self._producer = producer
        return self._producer

    async def connect(self) -> bool:
        """Try to reach the broker; returns whether it answered."""
        try:
            async with self._lock:
                await self._ensure_producer()
            self.connected = True
        except SendFailed as err:
            self.connected = False
            self.last_error = str(err)
        return self.connected

    async def send(self, key: str, event: dict[str, Any]) -> None:
        """Queue ``event``, deliver the backlog; raise SendFailed if the event is still queued."""
        self.backlog.append((key, event))
        await self.flush()
        if any(e is event for _, e in self.backlog):
            raise SendFailed(self.last_error or "event not delivered")

    async def flush(self) -> int:
        """Deliver the backlog in order; returns how many events are still waiting."""
        async with self._lock:
            while self.backlog:
                key, event = self.backlog[0]
                try:
                    producer = await self._ensure_producer()
                    await asyncio.wait_for(
                        producer.send_and_wait(
                            self.topic, json.dumps(event).encode(), key=key.encode()
                        ),
                        self.timeout,
                    )
                except (KafkaError, OSError, asyncio.TimeoutError, SendFailed) as err:
                    self.connected = False
                    self.last_error = f"Kafka send to {self.topic} failed: {err!r}"
                    log.warning(
                        "%s; %d event(s) kept for retry", self.last_error, len(self.backlog)
                    )
                    await self._drop_producer()
                    break
                self.backlog.popleft()
                self.sent += 1
                self.connected = True
        return len(self.backlog)

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


async def consume_event(
    bootstrap: str, topic: str, key: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Read ``topic`` from its start until the event with ``key`` arrives (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        parts: list[TopicPartition] = []
        while not parts and time.monotonic() < deadline:
            # fresh metadata each time: the topic may appear after we start
            cluster = await consumer._client.fetch_all_metadata()
            ids = cluster.partitions_for_topic(topic) or set()
            parts = [TopicPartition(topic, p) for p in sorted(ids)]
            if not parts:
                await asyncio.sleep(0.2)
        if not parts:
            raise TimeoutError(f"topic {topic!r} did not appear on {bootstrap}")
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.key == key.encode() and rec.value is not None:
                        event: dict[str, Any] = json.loads(rec.value)
                        return event
        raise TimeoutError(f"no event with key {key!r} on {topic!r} within {timeout} s")
    finally:
        await consumer.stop()
