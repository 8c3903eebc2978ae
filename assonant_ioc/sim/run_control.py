"""Run control's messages as its tests and bench see them: every message of the status topic
from its start, decoded by its schema id with ESS's library, and commands sent to the
command topic."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from streaming_data_types.action_response_answ import deserialise_answ
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.status_x5f2 import deserialise_x5f2

from assonant_ioc.events.kafka import _assign_from_start as assign_from_start
from assonant_ioc.sim import procs

READ = {"answ": deserialise_answ, "wrdn": deserialise_wrdn, "x5f2": deserialise_x5f2}


class StatusTopic:
    """Every message on the status topic from its start, decoded by its schema id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.got: list[tuple[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)
        self._thread.start()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await assign_from_start(consumer, self.topic, time.monotonic() + 60)
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        kind = r.value[4:8].decode()
                        self.got.append((kind, READ[kind](r.value)))
        finally:
            await consumer.stop()

    def of(self, kind: str, job: str | None = None) -> list[Any]:
        return [m for k, m in list(self.got) if k == kind and (job is None or m.job_id == job)]

    def wait(self, kind: str, job: str | None = None, what: str = "") -> Any:
        procs.wait_until(lambda: bool(self.of(kind, job)), 60, what or f"{kind} of {job}")
        return self.of(kind, job)[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def send(bootstrap: str, topic: str, payload: bytes, key: str = "") -> None:
    """One message on ``topic`` (with ``key``: in its partition, in order with the others
    of that key, as the forwarder sends a source's messages)."""

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=key.encode() or None)
        finally:
            await producer.stop()

    asyncio.run(go())
