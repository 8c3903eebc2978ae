"""One worker process, started on first use, replaced when it dies, killed at the end:
where the build and the validators run, away from the process that takes the updates."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


class WorkerProcess:
    def __init__(self, initializer: Callable[[int], None]) -> None:
        #: run first in the process, with this process' pid (to die with it)
        self.initializer = initializer
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker; a dead worker is replaced (the call fails)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=self.initializer,
                initargs=(os.getpid(),),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except BrokenProcessPool:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def end(self) -> None:
        """Stop at once: the process is killed, not joined (Python's exit would wait for it
        to finish what it does, a validator's import of pynxtools included, and SIGTERM
        would seem ignored). A write cut short is what recovery handles at the next start."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(5)
