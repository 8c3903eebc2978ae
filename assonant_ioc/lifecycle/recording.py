"""What runs beside a recording, while it runs: the during entry's arrays staged in the worker
(``lifecycle.staging``), the cameras' frames staged into their files (``lifecycle.frame_file``),
and the cameras' frame logs stopped with it. A part of
:class:`~assonant_ioc.lifecycle.experiment.Lifecycle` (a mixin: the attributes below are the
lifecycle's own)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.lifecycle import frame_file, staging
from assonant_ioc.lifecycle.frame_log import FrameLog
from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.lifecycle.pool import WorkerProcess
from assonant_ioc.model.source import ReadingSource

log = logging.getLogger(__name__)


class WhileRecording:
    config: BeamlineConfig
    monitor: ReadingSource
    journal: Journal
    state_dir: Path
    _recorder: Recorder | None
    _frame_logs: list[FrameLog]
    _worker: WorkerProcess

    if TYPE_CHECKING:

        async def _in_worker(self, fn: Any, *args: Any) -> Any: ...

    async def _stop_frame_logs(self) -> int:
        """The cameras' frame logs stopped, their frames durable; returns how many frames."""
        logs, self._frame_logs = self._frame_logs, []
        for frames in logs:
            self.monitor.remove_frame_sink(frames)
        return sum([await asyncio.to_thread(frames.stop) for frames in logs])

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

    async def _stage_frames_while_recording(self, recorder: Recorder) -> None:
        """The cameras' frames appended to their files each second while ``recorder`` runs,
        in the worker (``frame_file``), so that EndOfExperiment has only the last to add."""
        cameras = {c: s.dataset for c, s in self.config.frames_specs().items() if s.array_pv}
        args = (str(self.journal.dir), cameras, self.config.compression)
        while self._recorder is recorder:
            await asyncio.sleep(1.0)
            if self._recorder is not recorder:
                return
            try:
                await self._in_worker(frame_file.stage_all, *args)
            except Exception:  # a cache: EndOfExperiment stages from the log
                log.exception("staging the frames")
