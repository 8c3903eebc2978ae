"""The experiment's lifecycle: commands, captures, journal (the parts it is made of, each a
room of its own: EndOfExperiment's write in ``lifecycle.write``, what is not yet durable in
``lifecycle.durability``, recovery in ``lifecycle.recovery``, the work beside a running
recording in ``lifecycle.recording``; what it tells the world:
``lifecycle.reporter``).

No Channel Access here: the IOC maps its PVs to these calls and shows what the
:class:`Reporter` is told. Commands run one at a time (a lock), so a Record stop
(its grace period included) is finished before the next command is looked at.
Every failure of a step, of any exception type, ends in Fault with the reason;
Fault is left by EndOfExperiment (after a fix) or Abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.errors import CommandRefused, WriteFailed
from assonant_ioc.lifecycle import build as worker
from assonant_ioc.lifecycle.delivery import Delivery, Sender
from assonant_ioc.lifecycle.durability import Durability
from assonant_ioc.lifecycle.frame_log import FrameLog, open_frame_logs
from assonant_ioc.lifecycle.journal import Journal, NotDurable, Recorder
from assonant_ioc.lifecycle.outbox import Outbox
from assonant_ioc.lifecycle.pool import WorkerProcess
from assonant_ioc.lifecycle.recording import WhileRecording
from assonant_ioc.lifecycle.recovery import Recovery
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.lifecycle.settings import Settings, StepFailed
from assonant_ioc.lifecycle.write import Writing
from assonant_ioc.model.components import Moment
from assonant_ioc.model.source import ReadingSource
from assonant_ioc.model.state import Command, State, StateMachine
from assonant_ioc.snapshots import FileNames

log = logging.getLogger(__name__)


class Lifecycle(Writing, Durability, Recovery, WhileRecording):
    def __init__(
        self,
        config: BeamlineConfig,
        monitor: ReadingSource,
        state_dir: Path,
        reporter: Reporter,
        sender: Sender | None = None,
    ) -> None:
        self.config = config
        self.monitor = monitor
        self.reporter = reporter
        self.sender = sender
        self.state_dir = state_dir
        self.journal = Journal(state_dir)
        self.outbox = Outbox(state_dir)
        self.machine = StateMachine()
        self.experiment_id = ""
        self.sample = ""
        self._meta: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._recorder: Recorder | None = None
        self._frames: FileNames | None = None
        self._frame_logs: list[FrameLog] = []  # cameras' frames over PVA, while recording
        #: the run-control job (``ioc.run_control``) the next experiment belongs to: kept in
        #: its meta, its notes and id in the file and the event
        self.job: dict[str, str] | None = None
        self._worker = WorkerProcess(worker.init_worker)
        self._validator = WorkerProcess(worker.init_validator)
        # validation runs in a process of its own, beside the builds: the next experiment's
        # file never waits for the last one's validators
        self.delivery = Delivery(self.outbox, reporter, sender, config.validate, self._in_validator)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._moment_pvs = {m: config.pvs(m) for m in Moment}
        if config.before_start_s:  # a recording starts with the seconds before it
            monitor.keep_history(
                self._moment_pvs[Moment.DURING],
                config.before_start_s,
                config.before_start_max_updates,
            )
        # captured but not yet durable (the state directory full): kept here, retried
        self._unsettled: Recorder | None = None  # a stopped recording's last batch
        self._held_snapshots: dict[Moment, Any] = {}
        self._meta_held = False
        self._retrying: asyncio.Task[None] | None = None
        self._problem = ""
        #: the log and LastError said the state directory cannot take the experiment; a
        #: "durable again" waiting to be said once it has held (a disk that flaps is said
        #: once per change of state, not every second)
        self._said_problem = False
        self._settling: asyncio.Task[None] | None = None
        self._loop: Any = None

    @property
    def state(self) -> State:
        return self.machine.state

    # -- the worker process ------------------------------------------------------------------
    async def _in_worker(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in the build process (replaced if it dies: the call fails)."""
        return await self._worker.run(fn, *args)

    async def _in_validator(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in the validation process (started on first use, replaced if it dies)."""
        return await self._validator.run(fn, *args)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- start and stop ------------------------------------------------------------------------
    async def start(self) -> str:
        """Recover what a stop left (experiment, events); start the worker and the delivery.

        Returns what was recovered (empty when nothing was), also said on Status.
        """
        self._loop = asyncio.get_running_loop()
        self.spawn(self._in_worker(worker.warm_up))
        if self.config.validate:
            self.spawn(self._in_validator(worker.warm_up_validators))
        message = ""
        if self.journal.exists():
            try:
                message = await self._recover()
            except Exception as err:
                log.exception("recovery failed")
                message = f"recovery of the experiment in {self.journal.dir} failed: {err!r}"
                self.machine.state = State.FAULT
                await self.reporter.state_changed(State.FAULT)
                await self.reporter.error(message + "; Abort discards it")
        for pending in self.outbox.pending():
            if not pending.ready:
                self.spawn(self.delivery.validate_and_release(pending))
        if self.sender is not None:
            self.spawn(self.delivery.run())
        return message

    async def stop(self) -> None:
        """SIGTERM/SIGINT: make what is captured durable, say what is left pending."""
        if self._recorder is not None:
            try:
                await asyncio.to_thread(self._recorder.flush)
            except Exception:
                log.exception("last journal flush failed")
        try:
            await self._settle()
        except OSError as err:
            log.error(
                "stopping with %d reading(s) or snapshot(s) of %s not durable (lost): %s",
                self._waiting(),
                self.experiment_id,
                err,
            )
        for task in list(self._tasks):
            task.cancel()
        left = self.outbox.pending()
        if left:
            log.warning(
                "stopping with %d event(s) not yet delivered, kept in %s: %s",
                len(left),
                self.outbox.dir,
                ", ".join(p.event["file_path"] for p in left),
            )
        if self.journal.exists():
            log.warning(
                "stopping with experiment %s in progress (%s), kept in %s",
                self.experiment_id,
                self.state.label,
                self.journal.dir,
            )
        if self.sender is not None:
            with contextlib.suppress(Exception):
                await self.sender.close()
        self._worker.end()
        self._validator.end()

    # -- helpers -------------------------------------------------------------------------------
    async def _refuse_unless(self, cmd: Command) -> None:
        try:
            self.machine.check(cmd)
        except CommandRefused as err:
            await self.reporter.error(str(err))
            raise

    async def _enter(self, cmd: Command, who: str = "") -> None:
        await self.reporter.state_changed(self._step(cmd, who))

    def _step(self, cmd: Command, who: str) -> State:
        """The command's step in the state machine and the experiment's meta (not said)."""
        if self._meta:
            step = {"step": cmd.value, "by": who, "at": time.time()}
            self._meta.setdefault("steps", []).append(step)
            if who:
                log.info("audit: %s by %s", cmd.value, who)
        new = self.machine.apply(cmd)
        self._meta["state"] = new.label
        self._meta["captured"] = sorted(m.value for m in self.machine.captured)
        return new

    async def _save(self) -> None:
        """The experiment's meta, durable; kept in memory and retried when the state directory
        cannot take it (a full disk), so a step is never lost for it."""
        try:
            await asyncio.to_thread(self.journal.save_meta, dict(self._meta))
        except OSError as err:
            self._meta_held = True
            await self._not_durable(f"{type(err).__name__}: {err}")
        else:
            self._meta_held = False

    # -- what is captured but not yet durable --------------------------------------------------

    async def _fail(self, step: str, err: BaseException) -> StepFailed:
        """Any failure: Fault, the reason on LastError, the experiment kept. A failure the
        service understands (a full disk, a refused path) is one log line; anything else
        keeps its traceback."""
        if isinstance(err, WriteFailed | OSError):
            log.error("%s failed: %s", step, err)
        else:
            log.error("%s failed", step, exc_info=err)
        self.machine.state = State.FAULT
        self._meta["state"] = State.FAULT.label
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, WriteFailed) else str(err)
        self._meta["fault"] = f"{step}: {reason}"
        if self.journal.exists():
            with contextlib.suppress(Exception):
                await self._save()
        await self.reporter.state_changed(State.FAULT)
        keep = (
            "experiment kept (fix it and EndOfExperiment again, or Abort)"
            if self.machine.captured
            else "nothing captured (Abort, then start again)"
        )
        await self.reporter.error(f"{self.experiment_id}: {step} failed, {keep}: {reason}")
        return StepFailed(reason)

    def _begin(self, settings: Settings, now: float, save_meta: bool = True) -> None:
        """A new experiment: its journal (its meta written now, or with the step's snapshot
        when ``save_meta`` is false), and the detector files from now on."""
        self.experiment_id = settings.experiment_id.strip() or time.strftime(
            f"{self.config.beamline}-%Y%m%dT%H%M%S", time.gmtime(now)
        )
        self.sample = settings.sample
        self._meta = {
            "version": 1,
            "experiment_id": self.experiment_id,
            "sample": self.sample,
            "proposal": settings.proposal or self.config.proposal,
            "started": now,
            "state": State.IDLE.label,
            "captured": [],
            "moments": {},
            "writing": None,
        }
        if self.job is not None:
            self._meta["job"] = dict(self.job)
        self.journal.begin(self._meta if save_meta else None)
        self._follow_frames()

    def _follow_frames(self, known: dict[str, list[str]] | None = None, held: Any = None) -> None:
        self._stop_frames()
        frame_pvs = self.config.frame_pvs()
        if frame_pvs:  # from now on, each file a detector closes belongs to this experiment
            specs = self.config.frames_specs()
            plugins = {c: (s.capture_pv, s.captured_pv) for c, s in specs.items()}
            self._frames = FileNames(
                frame_pvs,
                known,
                held,
                self.journal.add_frame_file,
                plugins,
                self.journal.add_frame_count,
            )
            watched = [*frame_pvs.values(), *(pv for s in specs.values() for pv in s.plugin_pvs())]
            self.monitor.add_sink(self._frames, watched)

    def _stop_frames(self) -> None:
        sink, self._frames = self._frames, None
        if sink is not None:
            self.monitor.remove_sink(sink)

    def _take(
        self, moment: Moment, settings: Settings, now: float
    ) -> tuple[State, int, OSError | None]:
        """A snapshot command's work, in one thread hop: a new experiment from Idle, the
        step, the snapshot durable with the step's meta (one write). Returns the new state,
        the PVs taken and the error that left the snapshot held in memory, if any."""
        if self.state is State.IDLE:
            self._begin(settings, now, False)
        new = self._step(
            Command.SNAPSHOT_PRE if moment is Moment.PRE else Command.SNAPSHOT_POST, settings.who
        )
        try:
            return new, self._snapshot(moment, now), None
        except OSError as err:
            if moment not in self._held_snapshots:
                raise
            return new, len(self._moment_pvs[moment]), err

    def _snapshot(self, moment: Moment, now: float) -> int:
        """The latest readings, durable in the journal with the experiment's meta as the
        step leaves it (one durable write), or held in memory when the state directory
        cannot take them (the error is raised after); returns how many PVs."""
        snap = self.monitor.snapshot()
        self._meta["moments"][moment.value] = {"start": now, "end": now}
        if self._frames is not None:
            self._meta["frames_held"] = self._frames.held()
        try:
            self.journal.save_snapshot(moment.value, snap, self._meta)
        except OSError:
            self._held_snapshots[moment] = snap
            self._meta_held = True
            raise
        return len(self._moment_pvs[moment])

    # -- commands ------------------------------------------------------------------------------
    async def snapshot(self, moment: Moment, settings: Settings) -> None:
        cmd = Command.SNAPSHOT_PRE if moment is Moment.PRE else Command.SNAPSHOT_POST
        async with self._lock:
            await self._refuse_unless(cmd)
            now = time.time()
            try:
                new, count, held = await asyncio.to_thread(self._take, moment, settings, now)
                await self.reporter.state_changed(new)
                if held is not None:  # taken, held in memory until the disk takes it
                    await self._not_durable(f"{type(held).__name__}: {held}")
            except Exception as err:
                raise await self._fail(cmd.value, err) from err
            await self.reporter.say(
                f"{self.experiment_id}: {moment.value}-exposure snapshot of {count} PVs"
            )

    async def record_start(self, settings: Settings) -> None:
        async with self._lock:
            await self._refuse_unless(Command.RECORD_START)
            now = time.time()
            pvs = self._moment_pvs[Moment.DURING]
            try:
                if self.state is State.IDLE:
                    await asyncio.to_thread(self._begin, settings, now)
                self._recorder = await asyncio.to_thread(
                    Recorder,
                    self.journal.during_path(),
                    pvs,
                    now,
                    self.monitor.units_of,
                    self.config.journal_flush_s,
                    self.config.journal_max_pending,
                    self._recorder_durability,
                )
                self._frame_logs = await asyncio.to_thread(
                    open_frame_logs,
                    self.journal.dir,
                    self.config.array_pvs(),
                    now,
                    self.config.journal_flush_s,
                )
                self._meta["moments"]["during"] = {"start": now, "end": None}
                if self.config.before_start_s:
                    self._meta["moments"]["during"]["before_start_s"] = self.config.before_start_s
                if self._frames is not None:
                    self._meta["frames_held"] = self._frames.held()
                await self._enter(Command.RECORD_START, settings.who)
                await self._save()
                before = self.config.before_start_s  # the updates of the seconds before
                self.monitor.add_sink(self._recorder, pvs, now - before if before else None)
                for frames in self._frame_logs:
                    self.monitor.add_frame_sink(frames, frames.pv)
                if self._frame_logs:
                    self.spawn(self._stage_frames_while_recording(self._recorder))
                self.spawn(self._stage_while_recording(self._recorder, now))
            except Exception as err:
                if self._recorder is not None:
                    self._recorder.abandon()
                    self._recorder = None
                await self._stop_frame_logs()
                raise await self._fail(Command.RECORD_START.value, err) from err
            cameras = f" and {len(self._frame_logs)} camera(s)" if self._frame_logs else ""
            await self.reporter.say(f"{self.experiment_id}: recording {len(pvs)} PVs{cameras}")

    async def record_stop(self, who: str = "") -> None:
        async with self._lock:
            await self._refuse_unless(Command.RECORD_STOP)
            now = time.time()
            recorder = self._recorder
            assert recorder is not None
            try:
                recorder.close(now)
                for frames in self._frame_logs:
                    frames.close(now)
                await asyncio.sleep(Recorder.GRACE_S)  # updates stamped before the stop
                self.monitor.remove_sink(recorder)
                camera_frames = await self._stop_frame_logs()
                try:
                    count = await asyncio.to_thread(recorder.stop)
                except NotDurable as err:  # kept in memory and retried: never thrown away
                    self._unsettled = recorder
                    count = recorder.count + err.waiting
                    await self._not_durable(str(err))
                self._recorder = None
                self._meta["moments"]["during"]["end"] = now
                await self._enter(Command.RECORD_STOP, who)
                await self._save()
            except Exception as err:
                self._recorder = None
                self.machine.captured.add(Moment.DURING)  # what is durable is kept
                self._meta["moments"]["during"]["end"] = recorder.durable_at
                raise await self._fail(Command.RECORD_STOP.value, err) from err
            over_pva = f" and {camera_frames} frames over PVA" if camera_frames else ""
            await self.reporter.say(
                f"{self.experiment_id}: recorded {count} readings of {len(recorder.pvs)} PVs"
                + over_pva
            )

    async def abort(self) -> None:
        async with self._lock:
            await self._refuse_unless(Command.ABORT)
            recorder, self._recorder = self._recorder, None
            if recorder is not None:
                self.monitor.remove_sink(recorder)
                await asyncio.to_thread(recorder.abandon)
            await self._stop_frame_logs()
            if self._unsettled is not None:
                await asyncio.to_thread(self._unsettled.abandon)
            await self._close_experiment()
            await self.reporter.state_changed(State.IDLE)
            await self.reporter.say(f"{self.experiment_id}: aborted, nothing written")

    async def _close_experiment(self) -> None:
        """Written or aborted: forget the experiment (its journal too); back to Idle."""
        self._stop_frames()
        try:
            await asyncio.to_thread(self.journal.discard)
        except Exception:
            log.exception("cannot remove the journal of %s", self.experiment_id)
        self.machine.state = State.IDLE
        self.machine.captured.clear()
        self._meta = {}
        self._unsettled = None
        self._held_snapshots.clear()
        self._meta_held = False
        if self._problem:
            self._problem = ""
            await self.reporter.durability(0, "")
        self._said_problem = False
