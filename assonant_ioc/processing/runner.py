"""Run one job where its heavy step belongs: a child process of the processor (killed at
its time limit, its whole process group with it) or a worker of a Dask cluster (a
scheduler address in the settings). :func:`run_job` is the same in both; nothing in the
pipelines knows which.

    python -m assonant_ioc.processing.runner TIMEOUT [PARENT_PID] < job.json

(prints the result as JSON; with PARENT_PID it is killed when that process dies)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from assonant_ioc.processing.jobs import Job

log = logging.getLogger(__name__)


def run_job(job_data: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Reduce the job's raw file and write its derived file; the result (``output``,
    ``sha256``, ``size``, ``seconds``, ``program``, ``version``, ``metadata``) or
    ``{"error": why}``. Blocking: run in a child process or on a Dask worker."""
    from assonant_ioc.processing.derived import write_derived
    from assonant_ioc.processing.pipelines import RUN, PipelineFailed

    job = Job.from_dict(job_data)
    raw = Path(job.raw_path)
    if not raw.is_file():
        return {"error": f"the raw file {raw} is not there"}
    out_dir = Path(job.output).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # the job's own work directory: one left by a run of this job that was killed goes first
    work = out_dir / f".work-{job.job_id.replace('/', '-')}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        reduced = RUN[job.pipeline](raw, work, job.parameters, timeout)
        seconds = time.perf_counter() - started
        sha256, size = write_derived(job, reduced, seconds)
    except PipelineFailed as err:
        return {"error": str(err)}
    except Exception as err:  # noqa: BLE001 - any failure of the program is the job's result
        return {"error": f"{job.pipeline}: {type(err).__name__}: {err}"[:500]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "output": job.output,
        "sha256": sha256,
        "size": size,
        "seconds": round(seconds, 3),
        "program": reduced.program,
        "version": reduced.version,
        "metadata": reduced.metadata,
    }


async def run_local(job: Job, timeout: float) -> dict[str, Any]:
    """:func:`run_job` in a child process (its own process group), killed at ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assonant_ioc.processing.runner",
        str(timeout),
        str(os.getpid()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(json.dumps(job.as_dict()).encode()), timeout
        )
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return {"error": f"{job.pipeline}: over its time limit of {timeout:g} s"}
    finally:
        if proc.returncode is None:  # the processor is stopping: the job goes with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return {"error": f"{job.pipeline}: the job's process exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class DaskRunner:
    """Jobs on a Dask distributed cluster (``scheduler``: its address)."""

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler
        self._client: Any = None

    async def __call__(self, job: Job, timeout: float) -> dict[str, Any]:
        from distributed import Client

        if self._client is None:
            self._client = await Client(self.scheduler, asynchronous=True)  # type: ignore[no-untyped-call]
        future = self._client.submit(run_job, job.as_dict(), timeout, pure=False)
        try:
            result: dict[str, Any] = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            await future.cancel()
            return {"error": f"{job.pipeline}: over its time limit of {timeout:g} s (Dask)"}
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def main() -> None:
    from assonant_ioc.lifecycle.build import die_with_parent

    if len(sys.argv) > 2:  # the processor killed (-9 too): this job and its program go with it
        die_with_parent(int(sys.argv[2]))
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0
    result = run_job(json.loads(sys.stdin.read()), timeout)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
