"""What is captured but not yet durable (the state directory full): held in memory, said once
per change of state, retried every second until the disk takes it. A part of
:class:`~assonant_ioc.lifecycle.experiment.Lifecycle` (a mixin: what it uses is the
lifecycle's own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.model.components import Moment

log = logging.getLogger(__name__)


class Durability:
    if TYPE_CHECKING:  # the lifecycle's own
        config: BeamlineConfig
        journal: Journal
        reporter: Reporter
        state_dir: Path
        experiment_id: str
        _meta: dict[str, Any]
        _lock: asyncio.Lock
        _loop: Any
        _recorder: Recorder | None
        _unsettled: Recorder | None
        _held_snapshots: dict[Moment, Any]
        _meta_held: bool
        _problem: str
        _said_problem: bool
        _settling: asyncio.Task[None] | None
        _retrying: asyncio.Task[None] | None

        def spawn(self, coro: Any) -> None: ...

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
