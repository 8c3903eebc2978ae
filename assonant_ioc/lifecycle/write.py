"""EndOfExperiment: the file built from the journal in the worker process (again in a fresh one
when that died), queued in the outbox, given its final name; the detectors' files waited for,
bounded. A part of :class:`~assonant_ioc.lifecycle.experiment.Lifecycle` (a mixin: what it uses
is the lifecycle's own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assonant_ioc.config.paths import data_dir_problem
from assonant_ioc.config.spec import BeamlineConfig, render_file_name
from assonant_ioc.errors import CommandRefused, WriteFailed
from assonant_ioc.lifecycle import build as worker
from assonant_ioc.lifecycle import staging
from assonant_ioc.lifecycle.delivery import Delivery
from assonant_ioc.lifecycle.holds import held
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.lifecycle.pool import WorkerProcess
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.lifecycle.settings import Settings, StepFailed
from assonant_ioc.model.state import Command, State, StateMachine
from assonant_ioc.nexus.publish import partial_path, publish
from assonant_ioc.snapshots import FileNames

log = logging.getLogger(__name__)


def crashed(final: Path, state_dir: Path) -> str:
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


class Writing:
    if TYPE_CHECKING:  # the lifecycle's own
        config: BeamlineConfig
        machine: StateMachine
        reporter: Reporter
        outbox: Outbox
        delivery: Delivery
        state_dir: Path
        experiment_id: str
        sample: str
        _meta: dict[str, Any]
        _lock: asyncio.Lock
        _frames: FileNames | None
        _worker: WorkerProcess

        def spawn(self, coro: Any) -> None: ...
        async def _in_worker(self, fn: Any, *args: Any) -> Any: ...
        async def _refuse_unless(self, cmd: Command) -> None: ...
        async def _enter(self, cmd: Command, who: str = "") -> None: ...
        async def _save(self) -> None: ...
        async def _settle(self) -> None: ...
        async def _check_durable(self) -> None: ...
        async def _fail(self, step: str, err: BaseException) -> StepFailed: ...
        async def _close_experiment(self) -> None: ...

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
                    err = WriteFailed(crashed(final, self.state_dir))
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
