"""Process health in the devIocStats style: memory and CPU load of this process."""

from __future__ import annotations

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
