"""The broker loop every consumer of the service shares (the catalog, the processor, the Bluesky
documents): a consumer started when the broker answers (waiting it out, retried every
``retry_s``, until stopped), batches fetched until stopped (a failed fetch said and retried),
the consumer stopped at the end. What is done with each batch is the consumer's own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from assonant_ioc.events.security import security

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    """What a consumer reads: the topics, as a group, from a broker (its bootstrap), and how
    long it waits before trying an unreachable broker again."""

    bootstrap: str
    topics: tuple[str, ...]
    group: str
    retry_s: float = 1.0

    def __str__(self) -> str:
        return f"{', '.join(self.topics)} as group {self.group} from {self.bootstrap}"


def consumer_for(
    sub: Subscription, client_id: str, assigned: bool = True, **more: Any
) -> AIOKafkaConsumer:
    """A consumer as every service makes one (``more``: its own settings on top): offsets
    committed by the service once its work is done, a new group (or a broker that lost its
    offsets) from the earliest, TLS and SASL from the environment (``events.security``), a
    topic made after the start found within 5 s, and an idle fetch answered within 100 ms
    (a broker that does not answer a fetch as soon as data arrives, Tansu, answers it after
    this wait: it bounds the event-to-consumer latency). ``assigned``: the topics given to the
    consumer here; else the caller subscribes it (with a rebalance listener, say)."""
    return AIOKafkaConsumer(
        *(sub.topics if assigned else ()),
        bootstrap_servers=sub.bootstrap,
        group_id=sub.group,
        client_id=client_id,
        **security().kwargs(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5000,
        fetch_max_wait_ms=100,
        **more,
    )


#: how long a consumer's stop may take (leaving its group, closing its fetches)
STOP_S = 10.0


async def stop_consumer(consumer: Any) -> None:
    """Stop ``consumer`` within ``STOP_S``, whatever state its broker is in: a broker gone
    leaves aiokafka's fetcher awaiting its own cancelled requests (a CancelledError out of
    ``stop()``) or its coordinator retrying; said in the log, never the service's end. A
    cancellation of the caller itself still goes through."""
    task = asyncio.current_task()
    try:
        await asyncio.wait_for(consumer.stop(), STOP_S)
    except asyncio.CancelledError:
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise  # the caller is being cancelled, not only aiokafka's own requests
        log.warning("the consumer's stop was cut short (its broker gone); stopped")
    except Exception as err:  # noqa: BLE001 - a stop that fails: said, the service ends
        log.warning("the consumer did not stop cleanly in %g s (%r); stopped", STOP_S, err)


class BrokerLoop:
    """``make`` builds a new consumer (a failed start leaves one unusable); ``started``
    runs on each consumer that started (a subscription, say); ``broker_up`` is told each
    change the loop sees (True when a start worked, False when it failed)."""

    def __init__(
        self,
        make: Callable[[], Any],
        sub: Subscription,
        started: Callable[[Any], None] | None = None,
        broker_up: Callable[[bool], None] | None = None,
    ) -> None:
        self.make = make
        self.bootstrap = sub.bootstrap
        self.retry_s = sub.retry_s
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
                await stop_consumer(consumer)
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
        timers run) until ``stop`` is set; a failed fetch is said and retried. A fetch that
        does not come back (a group consumer whose broker is gone waits for its partitions
        again, past getmany's timeout) ends with the stop, never holds it."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    fetch = asyncio.ensure_future(
                        consumer.getmany(timeout_ms=500, max_records=max_records)
                    )
                    await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    if not fetch.done():
                        fetch.cancel()
                        with contextlib.suppress(asyncio.CancelledError, KafkaError):
                            await fetch
                        return
                    batch = fetch.result()
                except KafkaError as err:  # aiokafka retries connections itself; this is more
                    log.error("fetch from %s failed (%r); retrying", self.bootstrap, err)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.retry_s)
                    continue
                yield batch
        finally:
            stopped.cancel()
