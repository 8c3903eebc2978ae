"""The processor: ``file_written`` events in, one derived file per raw file and pipeline out.

A Kafka consumer group (aiokafka): more processors in the same group share the topic's
partitions. For each event: the raw file's record is made sure of in the catalog (the same
record the catalog consumer makes), its result marked ``queued`` then ``running``; the job
runs (:mod:`runner`: a child process with a time limit, or Dask); the derived file is
registered, linked both ways (the raw record's ``results``, the derived record's
``derived_from``), and a ``file_derived`` event is sent. A batch's offsets are committed
only after all of that, so a processor killed mid-job leaves the event to be redelivered:
the job runs again (once), and a result already whole on disk is taken as it is, never
computed twice. A failure is recorded with its reason and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from assonant_ioc.catalog.record import (
    BadEvent,
    FileStatus,
    Record,
    check_file,
    from_event,
    record_key,
)
from assonant_ioc.catalog.store import Catalog
from assonant_ioc.events.consuming import BrokerLoop, Subscription, consumer_for, stop_consumer
from assonant_ioc.events.kafka import EventSender
from assonant_ioc.lifecycle.build import sha256_of
from assonant_ioc.model.times import iso
from assonant_ioc.monitoring.watch import Watch
from assonant_ioc.processing.derived import read_process
from assonant_ioc.processing.jobs import Job, job_for
from assonant_ioc.processing.runner import run_local
from assonant_ioc.processing.status import Stats
from assonant_ioc.trust import Refused

log = logging.getLogger(__name__)

Runner = Callable[[Job, float], Awaitable[dict[str, Any]]]


@dataclass
class Settings:
    processed_root: Path
    #: the directories whose files may be processed (resolved): ``--read``
    roots: tuple[Path, ...] = ()
    #: seconds a job may take before it is stopped and recorded as failed
    time_limit: float = 3600.0
    #: jobs run at once by this processor
    jobs: int = 1
    #: per pipeline (nabu, pyfai, larch): the parameters it is given (nabu: start_z, end_z)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def file_derived_event(job: Job, result: dict[str, Any], raw_key: str) -> dict[str, Any]:
    """The event that announces a derived file (``events/derived.schema.json``)."""
    return {
        "schema_version": 1,
        "event_type": "file_derived",
        "event_id": job.event_id,
        "beamline": job.beamline,
        "experiment_id": job.experiment_id,
        "sample_name": job.sample,
        "definition": job.definition,
        "pipeline": job.pipeline,
        "program": str(result["program"]),
        "version": str(result["version"]),
        "file_path": job.output,
        "file_size": int(result["size"]),
        "sha256": str(result["sha256"]),
        "raw_file_path": job.raw_path,
        "raw_sha256": job.raw_sha256,
        "raw_event_id": job.raw_event_id,
        "catalog_key": record_key(Path(job.output)),
        "raw_catalog_key": raw_key,
        "seconds": float(result["seconds"]),
        "results": dict(result.get("metadata") or {}),
        "derived_at": iso(time.time()),
    }


class _Flight:
    """The records of one partition being handled: their tasks, the offset to commit after
    them, and whether the partition was handed over to another processor meanwhile."""

    def __init__(self, next_offset: int) -> None:
        self.next_offset = next_offset
        self.tasks: list[asyncio.Future[bool]] = []
        self.handed_over = asyncio.Event()


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """When partitions move to another processor (one joined, or left): a job still running
    on them stops (its child killed; the new owner runs it again, or takes the result
    already whole on disk), one whose result is being announced finishes and is committed,
    before the rebalance goes on. So two processors never announce the same result."""

    def __init__(self, processor: Processor, consumer: AIOKafkaConsumer) -> None:
        self.processor = processor
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        flights = {tp: f for tp, f in self.processor._flights.items() if tp in set(revoked)}
        for flight in flights.values():
            flight.handed_over.set()
        for tp, flight in flights.items():
            handled = await asyncio.gather(*flight.tasks, return_exceptions=True)
            if all(h is True for h in handled):
                await self.processor._commit(self.consumer, tp, flight.next_offset)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class Processor:
    def __init__(
        self,
        sub: Subscription,
        catalog: Catalog,
        sender: EventSender,
        settings: Settings,
        runner: Runner = run_local,
    ) -> None:
        self.sub, self.catalog, self.sender = sub, catalog, sender
        self.settings, self.runner = settings, runner
        self.stats = Stats(topics=list(sub.topics), group=sub.group)
        #: a job may take its time limit: the loop is stuck only past it (and a margin)
        self.watch = Watch(settings.time_limit + 120.0)
        self._slots = asyncio.Semaphore(max(1, settings.jobs))
        #: the partitions whose records are being handled now
        self._flights: dict[TopicPartition, _Flight] = {}
        #: jobs being derived now, by their file_derived event id: a repeat waits for it
        self._inflight: dict[str, asyncio.Future[bool]] = {}

    def _new_consumer(self) -> AIOKafkaConsumer:
        return consumer_for(
            self.sub,
            "assonant-process",
            assigned=False,
            session_timeout_ms=6000,  # a processor that died: its partitions move in seconds
            heartbeat_interval_ms=1000,
            # a job may run long: the consumer is not taken for dead meanwhile
            max_poll_interval_ms=int(max(300.0, self.settings.time_limit * 2) * 1000),
        )

    def _broker_up(self, up: bool) -> None:
        self.stats.broker_connected = up
        if up:
            log.info("processing %s", self.sub)

    async def run(self, stop: asyncio.Event) -> None:
        loop = BrokerLoop(
            self._new_consumer,
            self.sub,
            lambda c: c.subscribe(list(self.sub.topics), listener=_Handover(self, c)),
            self._broker_up,
        )
        consumer = await loop.start(stop)
        if consumer is None:
            return
        try:
            async for batch in loop.batches(consumer, stop, max(1, self.settings.jobs)):
                for tp, records in batch.items():
                    flight = _Flight(records[-1].offset + 1)
                    flight.tasks = [
                        asyncio.ensure_future(
                            self._handle(
                                r.value, f"{tp.topic}[{tp.partition}]@{r.offset}", stop, flight
                            )
                        )
                        for r in records
                    ]
                    self._flights[tp] = flight
                    self.watch.begin(f"{tp.topic}[{tp.partition}]@{records[0].offset}")
                    try:
                        handled = await asyncio.gather(*flight.tasks)
                    finally:
                        self._flights.pop(tp, None)
                        self.watch.end()
                    if stop.is_set() and not all(handled):
                        return  # stopped before a job was done: not committed, redelivered
                    if flight.handed_over.is_set():
                        continue  # the partition went to another processor: its jobs too
                    if not all(handled):  # cannot happen without a stop or a handover
                        consumer.seek(tp, records[0].offset)
                        continue
                    await self._commit(consumer, tp, flight.next_offset)
        finally:
            await stop_consumer(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (KafkaError, OSError) as err:  # redelivered later: the result is reused
            log.warning("commit of %s:%s at %s failed: %r", tp.topic, tp.partition, offset, err)

    async def _retry(
        self, what: str, stop: asyncio.Event, action: Callable[[], Awaitable[Any]]
    ) -> bool:
        """``action()`` until it works (a catalog or broker that does not answer): True;
        False when stopped first."""
        while True:
            try:
                await action()
                return True
            except Exception as err:  # noqa: BLE001 - retried, never skipped
                self.stats.last_error = f"{what}: {err!r}"[:300]
                log.error("%s failed (%r); retrying", what, err)
                try:
                    await asyncio.wait_for(stop.wait(), self.sub.retry_s)
                    return False
                except asyncio.TimeoutError:
                    pass

    async def _status(self, raw_key: str, job: Job, status: str, **more: Any) -> None:
        old = (await self.catalog.get(raw_key)) or {}
        results = dict(old.get("results") or {})
        entry = {**results.get(job.pipeline, {}), "status": status, "updated_at": iso(time.time())}
        entry.update(more)
        results[job.pipeline] = entry
        await self.catalog.update(raw_key, {"results": results})

    async def _handle(
        self, value: bytes | None, where: str, stop: asyncio.Event, flight: _Flight
    ) -> bool:
        """One event, to its end; False when stopped before it was done."""
        try:
            event = json.loads(value or b"")
            if isinstance(event, dict) and event.get("event_type") == "file_failed":
                return True  # a run closed as failed: no file to process
            record = from_event(event, time.time())
        except (ValueError, BadEvent) as err:
            self.stats.invalid_events += 1
            log.error("%s: not processed, not a valid file_written event: %s", where, err)
            return True
        job = job_for(event, self.settings.processed_root, self.settings.parameters)
        if job is None:
            self.stats.not_processed += 1
            log.info(
                "%s: %s has no pipeline (%s)",
                where,
                record.path,
                event.get("definition") or "no definition",
            )
            return True
        raw_key = record.key
        try:  # the file is the event's, under the roots, before anything is run or written
            record = await asyncio.to_thread(check_file, record, self.settings.roots)
        except Refused as err:
            return self._refuse(where, err.reason, str(err))
        if record.status is not FileStatus.OK:
            reason = "checksum" if record.status is FileStatus.CHECKSUM_MISMATCH else "missing"
            return self._refuse(where, reason, f"{record.path}: {record.metadata['problem']}")
        if await self._retry("catalog", stop, lambda: self.catalog.register(record)) is False:
            return False
        old = ((await self.catalog.get(raw_key)) or {}).get("results", {}).get(job.pipeline, {})
        if old.get("event_id") == job.event_id and old.get("announced"):
            self.stats.duplicate += 1
            log.info("%s: %s already derived and announced (%s)", where, job.raw_path, job.event_id)
            return True
        running = self._inflight.get(job.event_id)
        if running is not None:  # a repeat while the first is still being derived
            self.stats.duplicate += 1
            log.info(
                "%s: %s is being derived now (%s): the repeat waits",
                where,
                job.raw_path,
                job.event_id,
            )
            return bool(await asyncio.shield(running))
        task = asyncio.ensure_future(self._derive(job, raw_key, where, stop, flight))
        self._inflight[job.event_id] = task
        try:
            return await task
        finally:
            self._inflight.pop(job.event_id, None)

    async def _derive(
        self, job: Job, raw_key: str, where: str, stop: asyncio.Event, flight: _Flight
    ) -> bool:
        """The job run (or its result found whole), then registered and announced."""
        async with self._slots:
            result = await self._run(job, raw_key, where, stop, flight)
        if result is None:
            return False
        if "error" in result:
            self.stats.failed += 1
            log.error("%s: %s failed: %s", where, job.raw_path, result["error"])
            done = await self._retry(
                "catalog",
                stop,
                lambda: self._status(raw_key, job, "failed", reason=result["error"]),
            )
            return done
        if flight.handed_over.is_set():  # another processor has the event now: it announces
            log.info("%s: handed over before its result was announced", where)
            return False
        return await self._publish(job, raw_key, result, stop)

    def _refuse(self, where: str, reason: str, why: str) -> bool:
        """An event not trusted: nothing run, nothing written to the catalog; named, counted,
        its offset committed past."""
        self.stats.refused += 1
        self.watch.refuse(reason)
        log.error("%s: refused (%s), not processed: %s", where, reason, why)
        return True

    async def _run(
        self, job: Job, raw_key: str, where: str, stop: asyncio.Event, flight: _Flight
    ) -> dict[str, Any] | None:
        """The job's result: the one already on disk when whole and of this raw file, else
        a run of the pipeline (None when stopped meanwhile)."""
        found = await asyncio.to_thread(read_process, job.output)
        if found is not None and found["input_sha256"] == job.raw_sha256:
            self.stats.reused += 1
            log.info("%s: %s already on disk: reused", where, job.output)
            size, sha = await asyncio.to_thread(sha256_of, Path(job.output))
            return {
                "output": job.output,
                "sha256": sha,
                "size": size,
                "seconds": found["duration_s"],
                "program": found["program"],
                "version": found["version"],
                "metadata": found["results"],
            }
        if (
            await self._retry("catalog", stop, lambda: self._status(raw_key, job, "running"))
            is False
        ):
            return None
        self.stats.running += 1
        log.info("%s: %s -> %s (%s)", where, job.raw_path, job.output, job.pipeline)
        task = asyncio.ensure_future(self.runner(job, self.settings.time_limit))
        stopping = asyncio.ensure_future(stop.wait())
        handed = asyncio.ensure_future(flight.handed_over.wait())
        try:
            await asyncio.wait({task, stopping, handed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stats.running -= 1
            stopping.cancel()
            handed.cancel()
        if not task.done():  # stopping, or the partition handed over: the job goes
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None
        return task.result()

    async def _publish(
        self, job: Job, raw_key: str, result: dict[str, Any], stop: asyncio.Event
    ) -> bool:
        derived = Record(
            Path(job.output),
            {
                "kind": "derived",
                "beamline": job.beamline,
                "proposal": job.proposal,
                "experiment_id": job.experiment_id,
                "sample": job.sample,
                "definition": {"nabu": "NXtomoproc", "pyfai": "NXcanSAS"}.get(job.pipeline, ""),
                "pipeline": job.pipeline,
                "program": result["program"],
                "version": result["version"],
                "results": result.get("metadata") or {},
                "derived_from": raw_key,
                "raw_file_path": job.raw_path,
                "raw_sha256": job.raw_sha256,
                "file_path": job.output,
                "file_size": int(result["size"]),
                "sha256": result["sha256"],
                "event_id": job.event_id,
                "origin": "event",
                "registered_at": iso(time.time()),
                "seconds": result["seconds"],
            },
        )
        if await self._retry("catalog", stop, lambda: self.catalog.register(derived)) is False:
            return False
        more = {
            "key": derived.key,
            "file_path": job.output,
            "program": result["program"],
            "results": result.get("metadata") or {},
            "event_id": job.event_id,
            "seconds": result["seconds"],
        }
        if (
            await self._retry("catalog", stop, lambda: self._status(raw_key, job, "done", **more))
            is False
        ):
            return False
        event = file_derived_event(job, result, raw_key)
        if await self._retry("Kafka", stop, lambda: self._send(job, event)) is False:
            return False
        # the event is out: a redelivered file_written event is then a duplicate
        await self._retry(
            "catalog", stop, lambda: self._status(raw_key, job, "done", announced=True)
        )
        self.stats.done += 1
        log.info(
            "derived %s (%s, %.1f s): %s",
            job.output,
            job.pipeline,
            result["seconds"],
            event["results"],
        )
        return True

    async def _send(self, job: Job, event: dict[str, Any]) -> bool:
        await self.sender.send(job.event_id, event)
        return True
