"""Remote: the documents a RunEngine publishes with bluesky-kafka, consumed beside the
beamline (``assonant-ioc bluesky``), each run written as its stop arrives.

bluesky-kafka's Publisher sends each ``(name, doc)`` as ``msgpack`` (with msgpack-numpy's
arrays) under the Publisher's key. A consumer group (aiokafka); each document is journaled
as it arrives, and a partition's offset is committed only past documents whose run's file
is durable (written, its event in the outbox), as the catalog consumer does: a kill -9
redelivers them, the journal and the list of written runs keep them once. A malformed
document is named (topic, partition, offset, field) and counted, and the run goes on; a
run with no stop for ``--run-timeout`` seconds is closed (``ended_by: timeout``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from assonant_ioc.arguments import Parser, repeated
from assonant_ioc.documents.build import build_run
from assonant_ioc.documents.run import MalformedDocument
from assonant_ioc.documents.writer import RunWriter, retried
from assonant_ioc.events.consuming import BrokerLoop, Subscription, consumer_for, stop_consumer
from assonant_ioc.lifecycle import build as worker
from assonant_ioc.lifecycle.delivery import Delivery, Sender
from assonant_ioc.lifecycle.pool import WorkerProcess
from assonant_ioc.model.state import State
from assonant_ioc.monitoring import http
from assonant_ioc.monitoring.http import Metric
from assonant_ioc.monitoring.metrics import counters, gauge
from assonant_ioc.monitoring.watch import Watch

log = logging.getLogger(__name__)


def decode(value: bytes | None) -> tuple[str, Any]:
    """A bluesky-kafka message: ``msgpack([name, doc])`` with msgpack-numpy's arrays."""
    import msgpack
    import msgpack_numpy

    try:
        item = msgpack.unpackb(value or b"", object_hook=msgpack_numpy.decode, strict_map_key=False)
    except Exception as err:  # noqa: BLE001 - any undecodable message is named, not fatal
        raise MalformedDocument("message", "(value)", f"is not msgpack ({err})") from None
    if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
        raise MalformedDocument("message", "(value)", "is not a [name, document] pair")
    return item[0], item[1]


class _Log:
    """The lifecycle's reporter, for a service with no PVs: its log."""

    async def say(self, message: str) -> None:
        log.info("%s", message)

    async def error(self, message: str) -> None:
        log.error("%s", message)

    async def state_changed(self, state: State) -> None:
        pass

    async def file_written(self, path: Path) -> None:
        pass

    async def validated(self, text: str) -> None:
        log.info("validated %s", text)

    async def durability(self, waiting: int, problem: str) -> None:
        pass


class DocumentConsumer:
    def __init__(
        self,
        writer: RunWriter,
        sub: Subscription,
        sender: Sender | None = None,
        stall_s: float = 900.0,
    ) -> None:
        self.writer = writer
        self.sub = sub
        self.taken = 0
        self.files = 0
        #: what the loop is on (a stall past its bound is said on /health), what it refused
        self.watch = Watch(stall_s)
        self.watch.refused = writer.refused  # the writer counts them: one dict says them
        self._worker = WorkerProcess(worker.init_worker)
        #: per partition, the offsets read and not yet committed, with the run of each
        self._pending: dict[Any, collections.deque[tuple[int, str | None]]] = {}
        self.delivery = Delivery(
            writer.outbox, _Log(), sender, writer.config.validate, self._in_worker
        )

    async def _in_worker(self, fn: Any, *args: Any) -> Any:
        return await self._worker.run(fn, *args)

    def _new_consumer(self) -> Any:
        return consumer_for(
            self.sub,
            "assonant-bluesky",
            session_timeout_ms=6000,  # a group's first join takes 3 s, not 23 (Tansu)
            heartbeat_interval_ms=2000,
            max_partition_fetch_bytes=16 << 20,
        )

    def line(self) -> str:
        w = self.writer
        return (
            f"documents taken={self.taken} repeated={w.repeated} malformed={w.malformed} "
            f"refused={sum(w.refused.values())} runs open={len(w.runs)} files={self.files} "
            f"failed={w.dead}"
        )

    async def write(self, uid: str, timed_out: bool = False) -> None:
        """Write one run's file (the build in the worker process); a failure is logged and
        the run kept (its offsets not committed): retried with its next document or stop."""
        try:
            job = await asyncio.to_thread(self.writer.job, uid, timed_out)
            written = await asyncio.to_thread(self.writer.resume, job)
            if written is None:
                tmp, event = await self._in_worker(build_run, job)
                ready = not self.writer.config.validate
                written = await asyncio.to_thread(self.writer.finish, job, tmp, event, ready)
        except Exception as err:
            if retried(err):
                log.exception("run %s: file not written (kept in %s)", uid, self.writer.journal.dir)
                return
            # the same failure at every try: closed as failed, its offsets committed past
            await asyncio.to_thread(self.writer.dead_letter, uid, f"{type(err).__name__}: {err}")
            self.delivery.wake()
            return
        self.files += 1
        log.info(
            "run %s: wrote %s%s; %s",
            uid,
            written.path,
            " (closed at its run timeout)" if timed_out else "",
            self.line(),
        )
        if written.pending.ready:
            self.delivery.wake()
        else:
            asyncio.get_running_loop().create_task(
                self.delivery.validate_and_release(written.pending)
            )

    def _take(self, tp: Any, offset: int, value: bytes | None) -> list[str]:
        where = f"{tp.topic}[{tp.partition}]@{offset}"
        run: str | None = None
        done: list[str] = []
        try:
            name, doc = decode(value)
            done = self.writer.add(name, doc, where)
            run = self.writer.last_run
            self.taken += 1
        except MalformedDocument as err:
            if err.name == "message":
                self.writer.malformed += 1
            log.error(
                "%s: document not taken (%d malformed so far): %s",
                where,
                self.writer.malformed,
                err,
            )
        self._pending.setdefault(tp, collections.deque()).append((offset, run))
        return done

    async def _commit(self, consumer: Any) -> None:
        """Each partition's offset past the documents whose runs are written."""
        offsets = {}
        for tp, queue in self._pending.items():
            last = None
            while queue and (queue[0][1] is None or queue[0][1] not in self.writer.runs):
                last = queue.popleft()[0]
            if last is not None:
                offsets[tp] = last + 1
        if offsets:
            try:
                await consumer.commit(offsets)
            except Exception as err:  # noqa: BLE001 - redelivered later: kept once
                log.warning("commit of %s failed: %r", offsets, err)

    async def run(self, stop: asyncio.Event) -> None:
        for uid in self.writer.recover():
            self.watch.begin(f"recovering run {uid}")
            await self.write(uid)
            self.watch.end()
        if self.writer.runs:
            log.info("%d run(s) recovered from the journal, open", len(self.writer.runs))
        if self.delivery.sender is not None:
            asyncio.get_running_loop().create_task(self.delivery.run())
        for pending in self.writer.outbox.pending():
            if not pending.ready:
                asyncio.get_running_loop().create_task(self.delivery.validate_and_release(pending))
        loop = BrokerLoop(self._new_consumer, self.sub)
        consumer = await loop.start(stop)
        if consumer is None:
            return
        log.info("consuming Bluesky documents: %s", self.sub)
        try:
            async for batch in loop.batches(consumer, stop, max_records=500):
                done: list[str] = []
                for tp, records in batch.items():
                    for rec in records:
                        done += self._take(tp, rec.offset, rec.value)
                await asyncio.to_thread(self.writer.journal.sync)
                for uid in dict.fromkeys(done):
                    self.watch.begin(f"writing run {uid}")
                    await self.write(uid)
                for uid in self.writer.expired(time.time()):
                    self.watch.begin(f"writing run {uid} (timed out)")
                    await self.write(uid, timed_out=True)
                self.watch.end()
                await self._commit(consumer)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.writer.journal.sync)
            await stop_consumer(consumer)

    def metrics(self) -> list[Metric]:
        w = self.writer
        counts = {
            "documents": (self.taken, "documents taken"),
            "malformed": (w.malformed, "documents not taken (malformed or refused)"),
            "repeated": (w.repeated, "documents taken before (a redelivery)"),
            "files": (self.files, "files written"),
            "failed_runs": (w.dead, "runs closed as failed (dead-letter directory)"),
        }
        out = counters("bluesky", counts)
        out.append(gauge("bluesky", "runs_open", "runs open", len(w.runs)))
        return out + self.watch.metrics("bluesky")

    async def serve_status(self, host: str, port: int) -> asyncio.Server:
        """``/metrics`` and ``/health`` (503 while the loop is stuck on one run or message)."""
        return await http.serve(host, port, self.metrics, self.watch.stalled)

    async def close(self) -> None:
        self.writer.close()
        if self.delivery.sender is not None:
            with contextlib.suppress(Exception):
                await self.delivery.sender.close()
        self._worker.end()


def main(argv: list[str] | None = None) -> int:
    import signal

    from assonant_ioc.config.loader import load_config
    from assonant_ioc.documents.callback import default_state_dir
    from assonant_ioc.documents.writer import RUN_TIMEOUT_S
    from assonant_ioc.errors import ConfigError
    from assonant_ioc.lifecycle.delivery import sender_for

    parser = Parser(
        prog="assonant-ioc bluesky",
        description="Write a NeXus file per Bluesky run from the documents a RunEngine "
        "publishes with bluesky-kafka (and send its file_written event).",
    )
    parser.add_argument("--config", required=True, help="beamline config (a file or a name)")
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: the config's kafka bootstrap)"
    )
    parser.add_argument(
        "--topic",
        action="append",
        required=True,
        help="the documents' topic (bluesky-kafka Publisher's topic); repeat for more",
    )
    parser.add_argument("--group", help="consumer group (default: assonant-bluesky-BEAMLINE)")
    parser.add_argument("--state-dir", help="where runs in progress and the outbox are kept")
    parser.add_argument("--data-dir", help="where files are written (default: the config's)")
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=RUN_TIMEOUT_S,
        help=f"close a run with no stop after this many seconds without documents "
        f"(default {RUN_TIMEOUT_S:g})",
    )
    parser.add_argument("--no-events", action="store_true", help="write files, send no events")
    repeated(
        parser,
        "--detector-dir",
        "a directory the detectors' files may be in (beside the config's detector_dirs); "
        "a Resource or StreamResource naming a file anywhere else is refused; repeat",
    )
    parser.add_argument("--status-port", type=int, default=0, help="/metrics and /health")
    parser.add_argument("--status-host", default="127.0.0.1")
    args = parser.parse_args(argv)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        parser.exit(2, f"{err}\n")
    bootstrap = args.bootstrap or config.kafka.bootstrap
    if not bootstrap:
        parser.exit(2, "assonant-ioc bluesky: no --bootstrap and none in the config\n")
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(config)
    state_dir.mkdir(parents=True, exist_ok=True)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else ""
    if args.detector_dir:
        from dataclasses import replace

        dirs = (*config.detector_dirs, *(str(Path(d).resolve()) for d in args.detector_dir))
        config = replace(config, detector_dirs=dirs)
    writer = RunWriter(config, state_dir, data_dir, run_timeout=args.run_timeout)
    log.info("detector files taken from %s only", ", ".join(map(str, writer.roots)))
    sender = None
    if config.kafka.enabled and not args.no_events:
        sender = sender_for(config, bootstrap)
    group = args.group or f"assonant-bluesky-{config.beamline}"
    consumer = DocumentConsumer(writer, Subscription(bootstrap, tuple(args.topic), group), sender)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        status = None
        if args.status_port:
            status = await consumer.serve_status(args.status_host, args.status_port)
        try:
            await consumer.run(stop)
        finally:
            if status is not None:
                status.close()
            await consumer.close()
            log.info("stopped: %s", consumer.line())

    asyncio.run(serve())
    return 0
