"""The IOC's process tree behaves as a service manager expects: nothing of it outlives a
``kill -9``, and SIGTERM stops it however it was launched (a shell's ``&`` included)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from assonant_ioc.sim import procs
from tests.system.conftest import REPO, start_service


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead and not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_of_the_ioc_leaves_no_process_of_it(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (_client, _P, _data, proc):
        ioc = proc.popen.pid
        # its build worker (started at once) and multiprocessing's resource tracker
        procs.wait_until(lambda: len(procs.descendants(ioc)) >= 2, 30, "the IOC's worker", proc)
        family = procs.descendants(ioc)
        os.kill(ioc, signal.SIGKILL)
        proc.popen.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in family):
            time.sleep(0.05)
        left = sorted(p for p in family if _alive(p))
        assert left == [], f"left running 5 s after kill -9 of the IOC: {left}"


def test_sigterm_stops_an_ioc_started_in_the_background_by_a_shell(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """A shell starts a background job with SIGINT ignored; SIGTERM must still stop it, with
    the shutdown hooks run (the log says it stopped), and its worker with it."""
    port = procs.free_port()
    prefix = procs.new_prefix("AS")
    config = tmp_path / "sim.yaml"
    config.write_text((REPO / "configs" / "sim.yaml").read_text())
    env = {**os.environ, **procs.ca_server_env(port), **procs.ca_client_env(sim[1])}
    log = log_dir / f"background-{prefix.strip(':')}.log"
    args = procs.service_args(
        config,
        prefix,
        [
            "--macro",
            f"BL={sim[0]}",
            "--no-kafka",
            "--no-pva",
            "--data-dir",
            str(tmp_path / "data"),
            "--autosave",
            str(tmp_path / "autosave.json"),
        ],
    )
    launched = subprocess.run(
        ["bash", "-c", '"$@" > "$LOG" 2>&1 & echo $!', "launcher", *args],
        env={**env, "LOG": str(log)},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    ioc = int(launched.stdout.strip())
    try:
        ignored = Path(f"/proc/{ioc}/status").read_text().split("SigIgn:")[1].split()[0]
        assert int(ignored, 16) & (1 << (signal.SIGINT - 1)), "the shell did not ignore SIGINT"
        client_env = procs.ca_client_env(port)
        procs.wait_until(lambda: procs._started(prefix, client_env), 30, "IOC", None)
        procs.wait_until(lambda: len(procs.descendants(ioc)) >= 1, 30, "the IOC's worker", None)
        family = procs.descendants(ioc) | {ioc}
        os.kill(ioc, signal.SIGTERM)
        procs.wait_until(lambda: not any(_alive(p) for p in family), 20, "stopped", None)
        assert "Server exiting" in log.read_text()  # the shutdown hooks ran
    finally:
        if _alive(ioc):
            os.kill(ioc, signal.SIGKILL)
