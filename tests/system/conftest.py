"""Real processes on loopback: a Kafka-protocol broker, the simulated beamline, the service."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.sim import procs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session", autouse=True)
def ca_repeater(log_dir: Path) -> Iterator[int]:
    """One CA repeater for the session: the libca of every process started here finds it
    and starts none of its own (one would outlive the tests)."""
    with procs.ca_repeater(log_dir) as port:
        saved = os.environ.get("EPICS_CA_REPEATER_PORT")
        os.environ["EPICS_CA_REPEATER_PORT"] = str(port)
        try:
            yield port
        finally:
            if saved is None:
                os.environ.pop("EPICS_CA_REPEATER_PORT", None)
            else:
                os.environ["EPICS_CA_REPEATER_PORT"] = saved


@pytest.fixture(scope="session")
def kafka(log_dir: Path) -> Iterator[str]:
    with procs.broker(log_dir) as bootstrap:
        yield bootstrap


@pytest.fixture(params=["caproto", "c"], ids=["caproto-sim", "c-ioc-sim"])
def beamline(request: pytest.FixtureRequest, log_dir: Path) -> Iterator[tuple[str, int]]:
    prefix = procs.new_prefix("BL")
    with procs.sim_beamline(log_dir, prefix, kind=request.param) as port:
        yield prefix, port


@pytest.fixture
def sim(log_dir: Path) -> Iterator[tuple[str, int]]:
    """The caproto simulated beamline alone (for tests that need not run on both)."""
    prefix = procs.new_prefix("BL")
    with procs.sim_beamline(log_dir, prefix) as port:
        yield prefix, port


@contextlib.contextmanager
def start_service(
    log_dir: Path,
    tmp_path: Path,
    beamline: tuple[str, int],
    kafka_args: list[str],
    topic: str = "assonant.files",
    extra_yaml: str = "",
    prefix: str | None = None,
    config_text: str | None = None,
    more_env: dict[str, str] | None = None,
) -> Iterator[tuple[CA, str, Path, procs.Proc]]:
    """The service on the sim config (``more_env``: its PVA client's, say); yields (CA client
    of both servers, prefix, data dir, proc)."""
    bl_prefix, bl_port = beamline
    data_dir = tmp_path / "a_data_directory_whose_path_is_longer_than_forty_characters"
    prefix = prefix or procs.new_prefix("AS")
    config = tmp_path / "sim.yaml"
    text = config_text or (REPO / "configs" / "sim.yaml").read_text()
    text = text.replace("assonant.files", topic)
    config.write_text(text.replace("instrument:\n", "instrument:\n" + extra_yaml, 1))
    extra = [
        "--macro",
        f"BL={bl_prefix}",
        "--data-dir",
        str(data_dir),
        "--autosave",
        str(tmp_path / "autosave.json"),
        *kafka_args,
    ]
    with procs.service(log_dir, config, prefix, bl_port, extra, more_env) as (port, proc):
        with CA(port, bl_port) as client:
            yield client, prefix, data_dir, proc


@contextlib.contextmanager
def quiet_service(
    log_dir: Path, tmp_path: Path, beamline: tuple[str, int]
) -> Iterator[tuple[CA, str, Path, procs.Proc]]:
    """``start_service`` with no broker and no validation of the files it writes."""
    with start_service(log_dir, tmp_path, beamline, ["--no-kafka", "--no-validate"]) as svc:
        yield svc


class CA:
    """A CA client (caproto, pure Python) that searches only the given loopback servers."""

    def __init__(self, *ports: int) -> None:
        self.env = procs.ca_client_env(*ports)

    def __enter__(self) -> CA:
        self._env = procs.client_env(self.env)
        self._env.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._env.__exit__(*exc)

    def get(self, pv: str) -> Any:
        return procs.ca_get(pv, timeout=5)

    def alarm(self, pv: str) -> tuple[int, int]:
        """(severity, status): 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID."""
        return procs.ca_alarm(pv, timeout=5)

    def put(
        self, pv: str, value: Any, wait: bool = True, timeout: float = 30, data_type: Any = None
    ) -> None:
        """A put with callback (``caput -c``) when ``wait``: returns when the command is done,
        raises ``procs.PutFailed`` when it was refused."""
        procs.ca_put(pv, value, wait=wait, timeout=timeout, data_type=data_type)


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the service's worker process)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def kill9(proc: procs.Proc) -> None:
    """SIGKILL the service and its worker process (both ours), and wait for them."""
    worker = children(proc.popen.pid)
    proc.popen.kill()
    proc.popen.wait(10)
    for pid in worker:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
