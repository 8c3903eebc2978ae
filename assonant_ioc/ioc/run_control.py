"""Run control over Kafka, as the ESS file writer takes it: a ``pl72`` on the command topic
starts a job, a ``6s4t`` stops it; each is answered by an ``answ`` on the status topic, an
``x5f2`` says the service's status every ``status_every_s``, and the ``wrdn`` after the file
is the event sender's (``events.kafka``: after every file, whatever started it).

A job runs the lifecycle as an operator's PV writes do, through the same PVs and putters
(so the same checks, refusals, State, Status and audit; the writer named ``run control job
ID``): at the start time ExperimentId is the job id, FileName the job's file name (a plain
name in DataDir, never a path), Snapshot:Pre and Record:During 1; at the stop time (the
``pl72``'s, or a ``6s4t``'s: now when it says none) Record:During 0, Snapshot:Post and
EndOfExperiment. The job's metadata and ``nexus_structure`` go into the file's notes and its
id into the event. A second start while a job or an experiment is in progress is refused in
its ``answ``, with the reason; a step that fails, or an Abort over CA, ends the job with a
``wrdn`` whose ``error_encountered`` is set and whose message says why. Commands sent before
the service started are not run (said in the log): a restart never replays old jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from assonant_ioc.config.spec import RunControlSettings
from assonant_ioc.errors import SendFailed
from assonant_ioc.events import ess
from assonant_ioc.events.consuming import BrokerLoop, Subscription, consumer_for, stop_consumer
from assonant_ioc.ioc.guard import WRITER
from assonant_ioc.model.state import State

if TYPE_CHECKING:
    from assonant_ioc.events.kafka import EventSender

log = logging.getLogger(__name__)


@dataclass
class Job:
    job_id: str
    file_name: str
    start_ms: int
    stop_ms: int  # 0: until a 6s4t says
    metadata: str
    nexus_structure: str
    stop_now: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    recording: bool = False

    @property
    def who(self) -> str:
        return f"run control job {self.job_id}"


class RunControl:
    """The command consumer, the status loop and the job in progress of one IOC."""

    def __init__(
        self, ioc: Any, sender: EventSender, settings: RunControlSettings, bootstrap: str
    ) -> None:
        self.ioc, self.sender, self.settings = ioc, sender, settings
        self.service_id = settings.service_id or ioc.config.beamline
        self.sub = Subscription(
            bootstrap, (settings.command_topic,), f"assonant-run-control-{self.service_id}"
        )
        self.job: Job | None = None
        self.started_ms = int(time.time() * 1000)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._commands()), asyncio.create_task(self._status())]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- what it says ------------------------------------------------------------------------
    async def _say(self, payload: bytes, key: str = "") -> None:
        try:
            await self.sender.publish(self.settings.status_topic, payload, key)
        except SendFailed as err:
            log.warning("run control: %s", err)

    def status(self) -> dict[str, Any]:
        job = self.job
        return {
            "state": self.ioc.lifecycle.state.label,
            "job_id": job.job_id if job else "",
            "file_being_written": str(self._planned(job)) if job and job.recording else "",
            "start_time": job.start_ms if job else 0,
            "stop_time": job.stop_ms if job else 0,
        }

    def _planned(self, job: Job) -> PurePosixPath:
        return PurePosixPath(str(self.ioc.data_dir.value or self.ioc.config.data_dir)) / (
            job.file_name
        )

    async def _status(self) -> None:
        while not self._stop.is_set():
            every = self.settings.status_every_s
            await self._say(ess.x5f2(self.service_id, every, self.status()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)

    # -- commands ----------------------------------------------------------------------------
    async def _commands(self) -> None:
        loop = BrokerLoop(lambda: consumer_for(self.sub, "assonant-run-control"), self.sub)
        consumer = await loop.start(self._stop)
        if consumer is None:
            return
        try:
            async for batch in loop.batches(consumer, self._stop, 100):
                for records in batch.values():
                    for record in records:
                        await self._command(record.value or b"", int(record.timestamp))
                if batch:
                    await consumer.commit()
        finally:
            await stop_consumer(consumer)

    async def _command(self, payload: bytes, sent_ms: int) -> None:
        try:
            kind, msg = ess.command(payload)
        except Exception as err:  # noqa: BLE001 - a hostile or foreign message: said, skipped
            log.warning("run control: refused a message on %s: %s", self.sub.topics[0], err)
            return
        if msg.service_id and msg.service_id != self.service_id:
            return  # another service's job
        if sent_ms < self.started_ms - 1000:
            log.info("run control: %s of job %s sent before this start: not run", kind, msg.job_id)
            return
        if kind == "pl72":
            await self._start(msg)
        else:
            await self._stop_job(msg)

    async def _start(self, msg: Any) -> None:
        why = self._refusal(msg)
        if why:
            log.warning("run control: job %s refused: %s", msg.job_id, why)
            await self._say(ess.answ(self.service_id, msg.job_id, "", True, False, why))
            return
        job = Job(
            msg.job_id,
            msg.filename,
            int(msg.start_time),
            int(msg.stop_time),
            msg.metadata,
            msg.nexus_structure,
        )
        self.job = job
        await self._say(
            ess.answ(self.service_id, job.job_id, "", True, True, f"job {job.job_id} accepted")
        )
        job.task = asyncio.create_task(self._run(job))

    def _refusal(self, msg: Any) -> str:
        if self.job is not None:
            return f"busy: job {self.job.job_id} is in progress"
        state = self.ioc.lifecycle.state
        if state is not State.IDLE:
            return f"busy: an experiment is in progress (State {state.label})"
        if not msg.job_id:
            return "a job needs a job_id"
        name = msg.filename
        if not name or PurePosixPath(name).name != name or name.startswith("."):
            return f"file name {name!r} must be a plain file name (it goes in DataDir)"
        if msg.stop_time and msg.stop_time <= time.time() * 1000:
            return f"its stop time ({msg.stop_time} ms) has passed"
        return ""

    async def _stop_job(self, msg: Any) -> None:
        job = self.job
        if job is None or job.job_id != msg.job_id:
            why = f"no job {msg.job_id} in progress here"
            await self._say(
                ess.answ(self.service_id, msg.job_id, msg.command_id, False, False, why)
            )
            return
        job.stop_ms = int(msg.stop_time) or int(time.time() * 1000)
        job.stop_now.set()  # the job's wait looks at its new stop time
        await self._say(
            ess.answ(
                self.service_id,
                job.job_id,
                msg.command_id,
                False,
                True,
                f"job {job.job_id} stops at {job.stop_ms} ms",
                job.stop_ms,
            )
        )

    # -- the job ---------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        token = WRITER.set(job.who)
        ioc = self.ioc
        try:
            await _until(job.start_ms, None)
            ioc.lifecycle.job = {
                "job_id": job.job_id,
                "file_name": job.file_name,
                "metadata": job.metadata,
                "nexus_structure": job.nexus_structure,
            }
            await ioc.experiment_id.write(job.job_id)
            await ioc.file_name.write(job.file_name)
            await ioc.snapshot_pre.write(1)
            await ioc.record_during.write(1)
            job.recording = True
            while True:  # until the stop time (a 6s4t may bring it nearer)
                job.stop_now.clear()
                if job.stop_ms and job.stop_ms <= time.time() * 1000:
                    break
                await _until(job.stop_ms, job.stop_now)
            await ioc.record_during.write(0)
            job.recording = False
            await ioc.snapshot_post.write(1)
            await ioc.end_of_experiment.write(1)  # its wrdn follows its event (the sender)
            log.info("run control: job %s written to %s", job.job_id, ioc.last_file.value)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - said in the job's wrdn, never the IOC's end
            why = f"job {job.job_id} failed: {err}"
            log.warning("run control: %s", why)
            await self._say(ess.wrdn(self.service_id, job.job_id, job.file_name, None, why))
        finally:
            ioc.lifecycle.job = None
            WRITER.reset(token)
            if self.job is job:
                self.job = None

    async def aborted(self, who: str) -> None:
        """An Abort (over CA or PVA) ended the experiment: the job ends with a wrdn saying so."""
        job, self.job = self.job, None
        if job is None:
            return
        if job.task is not None and job.task is not asyncio.current_task():
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job.task
        why = f"job {job.job_id} aborted by {who or 'an operator'}: nothing written"
        await self._say(ess.wrdn(self.service_id, job.job_id, job.file_name, None, why))


async def _until(ms: int, woken: asyncio.Event | None) -> None:
    """Wait until ``ms`` (POSIX milliseconds; 0: for ever) or ``woken``."""
    wait = None if not ms else max(0.0, ms / 1000 - time.time())
    if woken is None:
        if wait:
            await asyncio.sleep(wait)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(woken.wait(), wait)
