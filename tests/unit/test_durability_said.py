"""A state directory that flaps (full, room, full again, each second) is said once per change
of state: one "cannot take" while it flaps, one "durable again" once it has held."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from assonant_ioc.config.loader import load_config
from assonant_ioc.lifecycle.experiment import Lifecycle


class _Said:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def say(self, message: str) -> None:
        self.lines.append(message)

    async def error(self, message: str) -> None:
        self.lines.append(message)

    async def state_changed(self, state: Any) -> None:
        pass

    async def file_written(self, path: Path) -> None:
        pass

    async def validated(self, text: str) -> None:
        pass

    async def durability(self, waiting: int, problem: str) -> None:
        pass


def test_a_flapping_state_directory_is_said_once_per_change(tmp_path: Path) -> None:
    said = _Said()
    life = Lifecycle(load_config("sim", {"BL": "SIM:"}), None, tmp_path, said)  # type: ignore[arg-type]
    life.SETTLE_S = 0.3  # type: ignore[misc]
    life.experiment_id = "flap"
    life._meta = {"state": "Recording"}  # an experiment in progress

    async def flap() -> None:
        life._loop = asyncio.get_running_loop()
        for _ in range(5):  # full, then room, faster than it settles
            await life._not_durable("OSError: [Errno 28] No space left on device")
            await asyncio.sleep(0.05)
            await life._check_durable()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # held: said now
        assert life._problem == ""
        await life._not_durable("OSError: [Errno 28] No space left on device")  # again, later
        await asyncio.sleep(0.05)
        await life._check_durable()
        await asyncio.sleep(0.6)
        for task in [*life._tasks, life._retrying]:
            if task is not None:
                task.cancel()

    asyncio.run(flap())
    cannot = [x for x in said.lines if "cannot take the experiment" in x]
    again = [x for x in said.lines if "durable again" in x]
    assert (len(cannot), len(again)) == (2, 2), said.lines
    # in order: trouble, fine, trouble, fine
    kinds = ["cannot" if "cannot" in x else "again" for x in said.lines if x in cannot + again]
    assert kinds == ["cannot", "again", "cannot", "again"]
