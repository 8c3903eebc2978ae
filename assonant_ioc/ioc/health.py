"""Process health in the devIocStats style: memory, CPU load and event-loop lag of this process."""

from __future__ import annotations

import asyncio
import os
import resource
import time


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class CpuLoad:
    """CPU time used by this process since the last call, as a percentage of wall time."""

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.monotonic()

    def sample(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        load = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._cpu, self._wall = cpu, wall
        return load


class LoopLag:
    """How late the event loop runs a timer: the worst lateness since the last ``take``.

    A callback or a write that holds the loop shows here as lag; the probe itself wakes
    every ``period`` seconds and costs a few microseconds each time.
    """

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self._worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.period)
            self._worst = max(self._worst, loop.time() - start - self.period)

    def take(self) -> float:
        """The worst lag in seconds since the last call."""
        worst, self._worst = self._worst, 0.0
        return worst
