"""Started by a service manager: systemd's readiness (``Type=notify``) and watchdog pings
reach ``$NOTIFY_SOCKET``; the shipped unit's command line is one the IOC takes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

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
