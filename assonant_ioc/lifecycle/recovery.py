"""Recovery after a stop: the experiment a service left in its state directory taken up
where it was (a recording closed at its last durable point, an interrupted write finished
or cleaned up). A part of :class:`~assonant_ioc.lifecycle.experiment.Lifecycle` (a mixin:
the attributes and steps below are the lifecycle's own)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assonant_ioc.lifecycle.journal import Journal
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.model.components import Moment
from assonant_ioc.model.state import State, StateMachine
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.publish import publish


class Recovery:
    journal: Journal
    outbox: Outbox
    machine: StateMachine
    reporter: Reporter
    experiment_id: str
    sample: str
    _meta: dict[str, Any]

    if TYPE_CHECKING:  # the lifecycle's steps recovery takes (its own)

        async def _save(self) -> None: ...

        def _follow_frames(
            self, known: dict[str, list[str]] | None = None, held: Any = None
        ) -> None: ...

        async def _finish_written(self, final: Path, queued: Pending) -> None: ...

    async def _recover(self) -> str:
        meta = await asyncio.to_thread(self.journal.load_meta)
        self._meta = meta
        self.experiment_id = str(meta.get("experiment_id", ""))
        self.sample = str(meta.get("sample", ""))
        captured = {Moment(m) for m in meta.get("captured", [])}
        state = State[str(meta.get("state", "Idle")).upper()]
        now = time.time()
        self.machine.captured = set(captured)
        what = self.experiment_id
        if state is State.IDLE and not captured:  # began, nothing durable captured
            await asyncio.to_thread(self.journal.discard)
            self._meta = {}
            return ""
        writing = meta.get("writing")
        if state is State.WRITING and writing:
            done = await self._recover_write(writing)
            if done:  # said where a stop's other outcomes are (LastError), for the operator
                message = (
                    f"{what}: the write interrupted by a stop was finished: {writing['final']}"
                )
                await self.reporter.error(message)
                return message
            state = State.FAULT
            meta["fault"] = (
                f"the write of {writing['final']} was interrupted by a stop; "
                "EndOfExperiment writes it again, or Abort"
            )
            meta["writing"] = None
        elif state is State.WRITING:
            state = State.FAULT
        if state is State.RECORDING:
            last = await asyncio.to_thread(self.journal.last_durable)
            during = meta["moments"]["during"]
            down = last if last is not None else float(during["start"])
            during["end"] = down
            during["interrupted"] = {"down_from": down, "up_at": now}
            captured.add(Moment.DURING)
            self.machine.captured.add(Moment.DURING)
            meta["captured"] = sorted(m.value for m in captured)
            state = State.COLLECTING
            note = (
                f"recording closed at its last durable point {iso(down)} "
                f"(service down until {iso(now)}; the gap is marked in the file)"
            )
        else:
            note = ""
        self.machine.state = state
        meta["state"] = state.label
        await self._save()
        self._follow_frames(
            await asyncio.to_thread(self.journal.frame_files), meta.get("frames_held")
        )
        await self.reporter.state_changed(state)
        moments = ", ".join(m.value for m in Moment if m in captured) or "nothing"
        message = f"recovered experiment {what} after a stop ({moments} captured)"
        if note:
            message += f"; {note}"
        if state is State.FAULT:
            message += f"; Fault: {meta.get('fault', 'unknown')}"
        else:
            message += "; go on (Snapshot:Post, EndOfExperiment) or Abort"
        await self.reporter.error(message)
        return message

    async def _recover_write(self, writing: dict[str, Any]) -> bool:
        """A stop came during EndOfExperiment: finish it if its event was queued, else clean up."""
        final, tmp = Path(writing["final"]), Path(writing["tmp"])
        queued = self.outbox.find(str(writing["event_id"]))
        if queued is None:  # the file was not complete: remove the partial file
            tmp.unlink(missing_ok=True)
            return False
        if not final.exists():
            if not tmp.exists():  # neither: nothing to announce
                self.outbox.remove(queued)
                return False
            await asyncio.to_thread(publish, tmp, final)
        else:
            tmp.unlink(missing_ok=True)
        await self._finish_written(final, queued)
        return True
