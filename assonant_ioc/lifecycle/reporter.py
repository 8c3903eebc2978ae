"""What the lifecycle tells the world: the IOC shows it on its status PVs, the Bluesky
consumer in its log. Its own module, so that the lifecycle's parts (delivery, recovery)
name it without importing the lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from assonant_ioc.model.state import State


class Reporter(Protocol):
    """What the lifecycle tells the world (the IOC shows it on its status PVs)."""

    async def say(self, message: str) -> None: ...

    async def error(self, message: str) -> None: ...

    async def state_changed(self, state: State) -> None: ...

    async def file_written(self, path: Path) -> None: ...

    async def validated(self, text: str) -> None: ...

    async def durability(self, waiting: int, problem: str) -> None:
        """What is captured but not yet durable (readings, snapshots) and why (empty: all
        durable)."""
