"""Started by a service manager: systemd's readiness (``Type=notify``) and watchdog pings
reach ``$NOTIFY_SOCKET``; the shipped unit's command line is one the IOC takes."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from caproto.threading.client import Context

from assonant_ioc.ioc.main import _parse_args
from assonant_ioc.sim import procs
from tests.system.conftest import REPO, start_service


def test_the_ioc_tells_systemd_it_is_ready_and_alive(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(1.0)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping each second
    said: list[str] = []

    def heard(text: str) -> bool:
        try:
            said.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        return any(text in s for s in said)

    try:
        args = ["--no-kafka", "--no-validate"]
        with start_service(log_dir, tmp_path, sim, args) as (client, P, _, proc):
            procs.wait_until(lambda: heard("READY=1"), 30, "READY=1", proc)
            ready = next(s for s in said if "READY=1" in s)
            assert "STATUS=SIM:" in ready and "PVs" in ready
            assert client.get(f"{P}State") == "Idle"  # ready means it answers
            procs.wait_until(lambda: heard("WATCHDOG=1"), 10, "a watchdog ping", proc)
        procs.wait_until(lambda: heard("STOPPING=1"), 10, "STOPPING=1")
    finally:
        listener.close()


def test_the_shipped_unit_is_type_notify_and_its_command_is_the_iocs() -> None:
    unit = (REPO / "deploy" / "systemd" / "assonant-ioc@.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#")
    assert lines["Type"] == "notify" and lines["KillSignal"] == "SIGINT"
    command = lines["ExecStart"].split()
    assert command[0].endswith("/assonant-ioc")
    args, _, _ = _parse_args(command[1:])  # every option there is one the IOC takes
    assert args.metrics_port == 9600 and args.config == "/etc/assonant-ioc/%i.yaml"


class _Pings:
    """The ``WATCHDOG=1`` pings the IOC sends to ``$NOTIFY_SOCKET``, with their times."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.at: list[float] = []

    def listen(self) -> list[float]:
        try:
            while True:
                if "WATCHDOG=1" in self.sock.recv(4096).decode():
                    self.at.append(time.monotonic())
        except TimeoutError:
            pass
        return self.at


class _Severities:
    """Every update of a PV's value and alarm severity, from a CA subscription."""

    def __init__(self, ctx: Context, name: str) -> None:
        (pv,) = ctx.get_pvs(name)
        pv.wait_for_connection(timeout=10)
        self.seen: list[tuple[float, int]] = []
        self.sub = pv.subscribe(data_type="time")
        self.sub.add_callback(self._add)

    def _add(self, _sub: Any, reply: Any) -> None:
        self.seen.append((float(reply.data[0]), int(reply.metadata.severity)))


def _hold(pid: int, seconds: float, pings: _Pings) -> tuple[float, float]:
    """The IOC stopped (SIGSTOP: its loop wedged with everything else) for ``seconds``."""
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        while time.monotonic() - stopped < seconds:  # the stimulus itself, not a wait
            pings.listen()
    finally:
        os.kill(pid, signal.SIGCONT)
    return stopped, time.monotonic()


@pytest.mark.parametrize(("mem_limits", "mem_severity"), [("[10, 100000]", 1), ("[10, 20]", 2)])
def test_the_watchdog_stops_while_the_ioc_is_held_and_its_health_alarms_rise(
    sim: tuple[str, int],
    log_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mem_limits: str,
    mem_severity: int,
) -> None:
    """Several pings a second apart; none while the IOC is held, then pings again; the
    hold shows as LoopLag in HIGH (a short one) and HIHI (a long one); MemUsed in HIGH or
    HIHI as its limits say."""
    pings = _Pings(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping each second
    config = (
        f"alarms: {{mem_used_mb: {mem_limits}}}\n" + (REPO / "configs" / "sim.yaml").read_text()
    )
    args = ["--no-kafka", "--no-validate"]
    ctx = Context()
    try:
        with start_service(log_dir, tmp_path, sim, args, config_text=config) as (
            client,
            P,
            _,
            proc,
        ):
            procs.wait_until(
                lambda: client.alarm(f"{P}MemUsed")[0] == mem_severity, 10, "MemUsed", proc
            )
            procs.wait_until(lambda: len(pings.listen()) >= 4, 15, "pings", proc)
            gaps = [b - a for a, b in itertools.pairwise(pings.at)]
            assert all(0.5 < g < 2.5 for g in gaps), gaps  # about a second apart
            lag = _Severities(ctx, f"{P}LoopLag")
            for seconds, severity in ((0.6, 1), (3.0, 2)):
                lag.seen.clear()
                stopped, resumed = _hold(proc.popen.pid, seconds, pings)
                assert not [t for t in pings.at if stopped + 0.1 < t < resumed], pings.at
                procs.wait_until(
                    lambda s=severity: any(sev == s for _v, sev in lag.seen),
                    10,
                    "LoopLag's alarm",
                )
                assert max(v for v, _s in lag.seen) >= seconds * 1000 * 0.8, lag.seen
                procs.wait_until(
                    lambda r=resumed: any(t > r for t in pings.listen()), 5, "pings again"
                )
                procs.wait_until(lambda: lag.seen[-1][1] == 0, 10, "LoopLag back to normal")
    finally:
        ctx.disconnect()
        pings.sock.close()
