"""The experiment's lifecycle: commands, captures, journal, file build, outbox (recovery:
``lifecycle.recovery``; what it tells the world: ``lifecycle.reporter``).

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
import os
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assonant_ioc.config.paths import data_dir_problem
from assonant_ioc.config.spec import BeamlineConfig, render_file_name
from assonant_ioc.errors import CommandRefused, WriteFailed
from assonant_ioc.lifecycle import build as worker
from assonant_ioc.lifecycle import staging
from assonant_ioc.lifecycle.delivery import Delivery, Sender
from assonant_ioc.lifecycle.holds import held
from assonant_ioc.lifecycle.journal import Journal, NotDurable, Recorder
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.lifecycle.pool import WorkerProcess
from assonant_ioc.lifecycle.recovery import Recovery
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.model.components import Moment
from assonant_ioc.model.source import ReadingSource
from assonant_ioc.model.state import Command, State, StateMachine
from assonant_ioc.nexus.publish import partial_path, publish
from assonant_ioc.snapshots import FileNames

log = logging.getLogger(__name__)


def _crashed(final: Path, state_dir: Path) -> str:
    """Why a build process died, as far as can be told: the room left where it wrote and
    where it read (the state directory)."""
    import shutil

    def free(where: Path) -> str:
        try:
            return f"{shutil.disk_usage(where).free:,} bytes free"
        except OSError as err:
            return str(err)

    return (
        f"cannot write {final}: the process writing it died twice (libhdf5 crashes when a "
        f"disk fills in the middle of a write; the data directory: {free(final.parent)}; "
        f"the state directory {state_dir}: {free(state_dir)})"
    )


def next_path(
    config: BeamlineConfig,
    data_dir: str,
    template: str,
    experiment_id: str,
    sample: str,
    when: float,
    counter: int = 0,
) -> tuple[Path, int]:
    """The next free file name and its counter: a name already on disk is never reused."""
    directory = Path(data_dir)
    if not directory.is_absolute():
        raise WriteFailed(f"DataDir {data_dir!r} is not an absolute path")
    # checked again right before the file is created, where it resolves now: a symbolic
    # link accepted when DataDir was written may point somewhere else since
    why = data_dir_problem(data_dir, config.data_root)
    if why:
        raise WriteFailed(why)
    directory = Path(os.path.realpath(directory))
    tries = 100_000 if "{counter" in template else 1
    for n in range(counter + 1, counter + 1 + tries):
        path = directory / render_file_name(
            template,
            beamline=config.beamline,
            experiment_id=experiment_id,
            sample=sample or "sample",
            counter=n,
            when=when,
        )
        if not path.exists() and not partial_path(path).exists():
            return path, n
    raise WriteFailed(f"{directory}: no free file name for template {template!r}")


class StepFailed(Exception):
    """A step failed; the state is Fault and the reason was reported."""


@dataclass(frozen=True)
class Settings:
    """The operator's settings when a command arrives."""

    experiment_id: str = ""
    sample: str = ""
    #: the Proposal PV ("": the config's default)
    proposal: str = ""
    comment: str = ""
    data_dir: str = ""
    file_name: str = ""
    counter: int = 0
    #: who wrote the command (``user@host`` as the CA client gave them), for the audit
    who: str = ""


class Lifecycle(Recovery):
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
        self._worker = WorkerProcess(worker.init_worker)
        self._validator = WorkerProcess(worker.init_validator)
        # validation runs in a process of its own, beside the builds: the next experiment's
        # file never waits for the last one's validators
        self.delivery = Delivery(self.outbox, reporter, sender, config.validate, self._in_validator)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._moment_pvs = {m: config.pvs(m) for m in Moment}
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
    def _waiting(self) -> int:
        """Readings and snapshots held in memory, not yet on disk."""
        recorders = [r for r in (self._recorder, self._unsettled) if r is not None]
        return sum(r.waiting for r in recorders) + len(self._held_snapshots)

    async def _not_durable(self, problem: str) -> None:
        """Something could not be made durable: say it at once, and retry every second."""
        self._problem = problem
        await self.reporter.durability(self._waiting(), problem)
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()  # it had not held: for the operator nothing changed
        elif not self._said_problem:
            self._said_problem = True
            await self.reporter.error(
                f"{self.experiment_id}: the state directory {self.state_dir} cannot take the "
                f"experiment ({problem}); what is captured is kept in memory and retried every "
                "second: make room"
            )
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry_durable())

    def _recorder_durability(self, waiting: int, problem: str) -> None:
        """From the recorder's flush thread: a failed flush, or the first one that worked."""
        loop = self._loop
        if problem:
            loop.call_soon_threadsafe(lambda: self.spawn(self._not_durable(problem)))
        else:
            loop.call_soon_threadsafe(lambda: self.spawn(self._check_durable()))

    async def _check_durable(self) -> None:
        if not self._problem:
            return
        if self._waiting() == 0 and not self._meta_held and self._unsettled is None:
            self._problem = ""
            await self.reporter.durability(0, "")
            if self._said_problem and (self._settling is None or self._settling.done()):
                self._settling = asyncio.get_running_loop().create_task(self._say_durable())
        else:
            await self.reporter.durability(self._waiting(), self._problem)

    async def _settle(self) -> None:
        """Write what is held in memory; raises NotDurable (or OSError) when it still cannot."""
        if self._unsettled is not None:
            await asyncio.to_thread(self._unsettled.settle)
            self._unsettled = None
        for moment, snap in list(self._held_snapshots.items()):
            await asyncio.to_thread(self.journal.save_snapshot, moment.value, snap)
            del self._held_snapshots[moment]
        if self._meta_held:
            await asyncio.to_thread(self.journal.save_meta, dict(self._meta))
            self._meta_held = False

    #: how long the state directory must take everything before "durable again" is said
    SETTLE_S = 3.0

    async def _say_durable(self) -> None:
        await asyncio.sleep(self.SETTLE_S)
        if not self._problem:
            self._said_problem = False
            await self.reporter.say(f"{self.experiment_id}: everything captured is durable again")

    async def _retry_durable(self) -> None:
        while self._problem:
            await asyncio.sleep(self.config.journal_flush_s)
            async with self._lock:
                if not self._meta and not self.journal.exists():
                    self._problem = ""  # aborted meanwhile
                    self._said_problem = False
                    await self.reporter.durability(0, "")
                    return
                with contextlib.suppress(OSError):
                    await self._settle()
                await self._check_durable()

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
                self._meta["moments"]["during"] = {"start": now, "end": None}
                if self._frames is not None:
                    self._meta["frames_held"] = self._frames.held()
                await self._enter(Command.RECORD_START, settings.who)
                await self._save()
                self.monitor.add_sink(self._recorder, pvs)
                self.spawn(self._stage_while_recording(self._recorder, now))
            except Exception as err:
                if self._recorder is not None:
                    self._recorder.abandon()
                    self._recorder = None
                raise await self._fail(Command.RECORD_START.value, err) from err
            await self.reporter.say(f"{self.experiment_id}: recording {len(pvs)} PVs")

    async def _stage_while_recording(self, recorder: Recorder, t0: float) -> None:
        """Build the during entry's arrays while ``recorder`` runs (``lifecycle.staging``),
        so that EndOfExperiment does not: a round every few seconds in the worker, each
        wait at least 4 times the last round (the worker at most a fifth of a core)."""
        every = self.config.staging_every_s
        wait = every
        while self._recorder is recorder:
            await asyncio.sleep(wait)
            if self._recorder is not recorder:
                return
            try:
                done = await self._in_worker(
                    staging.stage, str(self.state_dir), t0, self.config.compression
                )
            except Exception:  # a cache: EndOfExperiment reads the journal instead
                log.exception("staging the recording")
                continue
            if done.get("failed"):  # its HDF5 state not to be trusted: a fresh worker next
                log.warning("staging failed (%s): the worker process is replaced", done["given_up"])
                if self._recorder is recorder:  # else a build may be queued: it sees the
                    self._worker.end()  # failure itself (StagingBroken) and goes elsewhere
                return
            if done["given_up"]:
                return
            wait = max(every, 4 * float(done["seconds"]))

    async def record_stop(self, who: str = "") -> None:
        async with self._lock:
            await self._refuse_unless(Command.RECORD_STOP)
            now = time.time()
            recorder = self._recorder
            assert recorder is not None
            try:
                recorder.close(now)
                await asyncio.sleep(Recorder.GRACE_S)  # updates stamped before the stop
                self.monitor.remove_sink(recorder)
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
            await self.reporter.say(
                f"{self.experiment_id}: recorded {count} readings of {len(recorder.pvs)} PVs"
            )

    async def abort(self) -> None:
        async with self._lock:
            await self._refuse_unless(Command.ABORT)
            recorder, self._recorder = self._recorder, None
            if recorder is not None:
                self.monitor.remove_sink(recorder)
                await asyncio.to_thread(recorder.abandon)
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

    async def end_of_experiment(self, settings: Settings) -> tuple[Path, int]:
        """Write the file and queue its event; returns (path, the counter used)."""
        async with self._lock:
            await self._refuse_unless(Command.END_OF_EXPERIMENT)
            if not self.machine.captured:
                msg = "EndOfExperiment refused: nothing captured (Abort, then start again)"
                await self.reporter.error(msg)
                raise CommandRefused(msg)
            try:  # the file is built from the journal: everything captured must be there
                await self._settle()
            except OSError as err:
                await self._check_durable()
                msg = (
                    f"EndOfExperiment refused: what is captured is not yet durable ({err}); "
                    f"make room in {self.state_dir} and write EndOfExperiment again"
                )
                await self.reporter.error(msg)
                raise CommandRefused(msg) from err
            await self._check_durable()
            await self._enter(Command.END_OF_EXPERIMENT, settings.who)
            try:
                await self._wait_for_detectors()
            except Exception:  # the build names what is missing; the write goes on
                log.exception("waiting for the detector files")
            await self.reporter.say(f"{self.experiment_id}: writing")
            final: Path | None = None
            queued: Pending | None = None
            try:
                final, counter = self._next_path(settings)
                event_id = uuid.uuid4().hex
                self._meta["writing"] = {
                    "final": str(final),
                    "tmp": str(partial_path(final)),
                    "event_id": event_id,
                }
                self._meta.pop("fault", None)
                await self._save()
                job = worker.BuildJob(
                    self.config,
                    str(self.state_dir),
                    str(final),
                    self.experiment_id,
                    self.sample,
                    settings.comment,
                    event_id,
                    settings.who,
                )
                tmp, event = await self._build(job)
                await held("built")
                ready = not self.config.validate
                path = await asyncio.to_thread(self.outbox.put, self.experiment_id, event, ready)
                queued = Pending(path, self.experiment_id, event, ready)
                await held("queued")
                await asyncio.to_thread(publish, Path(tmp), final)
                await held("published")
            except Exception as err:
                if isinstance(err, BrokenProcessPool) and final is not None:
                    err = WriteFailed(_crashed(final, self.state_dir))
                if final is not None:
                    with contextlib.suppress(OSError):
                        partial_path(final).unlink(missing_ok=True)
                if queued is not None:
                    with contextlib.suppress(OSError):
                        self.outbox.remove(queued)
                self._meta["writing"] = None
                raise await self._fail("write", err) from err
            await self._finish_written(final, queued)
            return final, counter

    async def _build(self, job: worker.BuildJob) -> tuple[str, dict[str, Any]]:
        """The file built in the worker; when that process died or its staging write failed
        (a full state directory: libhdf5's state is not to be trusted after it), built once
        more in a fresh process, from the journal, which holds everything durable."""
        try:
            result: tuple[str, dict[str, Any]] = await self._in_worker(worker.build, job)
            return result
        except (BrokenProcessPool, staging.StagingBroken) as err:
            log.warning("the build process failed (%r): building again in a fresh one", err)
            self._worker.end()
            result = await self._in_worker(worker.build, job)
            return result

    async def _finish_written(self, final: Path, queued: Pending) -> None:
        """The file is at its final name and its event in the outbox: the experiment is done."""
        await self._close_experiment()
        await self.reporter.file_written(final)
        await self.reporter.state_changed(State.IDLE)
        await self.reporter.say(f"{self.experiment_id}: wrote {final}")
        if queued.ready:
            self.delivery.wake()
        else:
            self.spawn(self.delivery.validate_and_release(queued))

    async def _wait_for_detectors(self) -> None:
        """Bounded by each detector's ``frames: {timeout}``: until every file plugin has closed
        its file and each file holds the frames the detector said it captured. What is still
        open, missing or short at the timeout is named by the build (never read as zeros)."""
        specs = {c: s for c, s in self.config.frames_specs().items() if s.capture_pv}
        sink = self._frames
        if not specs or sink is None:
            return
        deadline = time.monotonic() + max(s.timeout for s in specs.values())
        said = False
        while True:
            open_now = [c for c in specs if sink.is_open(c)]
            files = sink.files()
            wanted = {
                path: (specs[comp].dataset, sink.expected.get(path, -1))
                for comp, paths in files.items()
                if comp in specs
                for path in paths
            }
            short = [] if open_now else await self._in_worker(worker.frames_short, wanted)
            if not open_now and not short:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: detector files not complete after the timeout: %s",
                    self.experiment_id,
                    ", ".join([f"{c} still capturing" for c in open_now] + short),
                )
                return
            if not said:
                said = True
                await self.reporter.say(f"{self.experiment_id}: waiting for the detector files")
            await asyncio.sleep(0.1)

    def _next_path(self, settings: Settings) -> tuple[Path, int]:
        when = float(self._meta.get("started", time.time()))
        return next_path(
            self.config,
            settings.data_dir,
            settings.file_name,
            self.experiment_id,
            self.sample,
            when,
            settings.counter,
        )
