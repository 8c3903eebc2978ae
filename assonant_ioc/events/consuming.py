"""The broker loop every consumer of the service shares (the catalog, the processor, the Bluesky
documents): a consumer started when the broker answers (waiting it out, retried every
``retry_s``, until stopped), batches fetched until stopped (a failed fetch said and retried),
the consumer stopped at the end. What is done with each batch is the consumer's own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class BrokerLoop:
    """``make`` builds a new consumer (a failed start leaves one unusable); ``started``
    runs on each consumer that started (a subscription, say); ``broker_up`` is told each
    change the loop sees (True when a start worked, False when it failed)."""

    def __init__(
        self,
        make: Callable[[], Any],
        bootstrap: str,
        retry_s: float,
        started: Callable[[Any], None] | None = None,
        broker_up: Callable[[bool], None] | None = None,
    ) -> None:
        self.make = make
        self.bootstrap = bootstrap
        self.retry_s = retry_s
        self.started = started
        self.broker_up = broker_up or (lambda _up: None)

    async def start(self, stop: asyncio.Event) -> Any | None:
        """A started consumer, or None when stopped before the broker answered."""
        while not stop.is_set():
            consumer = self.make()
            try:
                await consumer.start()
                if self.started is not None:
                    self.started(consumer)
            except (KafkaError, OSError) as err:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                self.broker_up(False)
                log.warning("Kafka broker %s unreachable (%r); retrying", self.bootstrap, err)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)
                continue
            self.broker_up(True)
            return consumer
        return None

    async def batches(
        self, consumer: Any, stop: asyncio.Event, max_records: int
    ) -> AsyncIterator[dict[Any, list[Any]]]:
        """Each fetched batch (partition -> records; empty ones too, so the consumer's own
        timers run) until ``stop`` is set; a failed fetch is said and retried."""
        while not stop.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            except KafkaError as err:  # aiokafka retries connections itself; this is more
                log.error("fetch from %s failed (%r); retrying", self.bootstrap, err)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)
                continue
            yield batch
