"""The IOC's own PVs over PVAccess, beside Channel Access: p4p's client (as ``pvput``,
``pvget``, ``pvmonitor`` and Phoebus' ``pva://`` talk) drives a whole experiment; a put
with completion is answered when the command is done, one without at once; a refused write
says over PVA what LastError says, as a CA client's refused write does; the ACF's host and
user rules hold for a PVA peer as for a CA client; each write's audit line names it."""

from __future__ import annotations

import getpass
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import pytest
from caproto.threading.client import Context as CAContext

from assonant_ioc.sim import procs, pva_env
from tests.system.conftest import start_service
from tests.system.test_access import ACF

pytestmark = pytest.mark.timeout(300)


@contextmanager
def _pva(udp: int) -> Iterator[Any]:
    from p4p.client.thread import Context

    ctx = Context("pva", conf=pva_env.pva_client_env(udp), useenv=False)
    try:
        yield ctx
    finally:
        ctx.close()


def _refusal(ctx: Any, pv: str, value: Any) -> str:
    """The error a PVA put with completion is answered with."""
    from p4p.client.thread import RemoteError

    with pytest.raises(RemoteError) as refused:
        ctx.put(pv, value, wait=True)
    return str(refused.value)


def test_an_experiment_over_pva_puts_with_and_without_completion(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    args = ["--no-kafka", "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _data, proc):
        assert proc.pva is not None
        with _pva(proc.pva[1]) as ctx:
            states: list[str] = []
            lock = threading.Lock()

            def seen(value: Any) -> None:
                if not isinstance(value, Exception):
                    with lock:
                        states.append(str(value))

            watch = ctx.monitor(f"{P}State", seen)  # as pvmonitor
            try:
                ctx.put(f"{P}ExperimentId", "over-pva", wait=True)
                assert client.get(f"{P}ExperimentId") == "over-pva"  # the same PV as CA's
                # hostile text over PVA: refused by the same checks as over CA, nothing kept
                for pv, text, why in (
                    ("SampleName", "ok\x1b[2Jwiped", "has a control or bidirectional character"),
                    ("SampleName", "x" * 300, "300 bytes, at most 255"),
                    ("DataDir", "../../etc", "DataDir refused"),
                ):
                    said = _refusal(ctx, f"{P}{pv}", text)
                    assert why in said and said == client.get(f"{P}LastError"), said
                assert client.get(f"{P}SampleName") == "" and client.get(f"{P}State") == "Idle"
                ctx.put(f"{P}Snapshot:Pre", 1, wait=True)  # answered when done
                assert client.get(f"{P}State") == "Collecting"
                ctx.put(f"{P}Record:During", 1, wait=False)  # answered at once, done after
                procs.wait_until(
                    lambda: str(ctx.get(f"{P}State")) == "Recording", 10, "recording", proc
                )
                ctx.put(f"{P}Record:During", 0, wait=True)
                ctx.put(f"{P}Snapshot:Post", 1, wait=True)
                # a refused write: the put fails with what LastError says, as over CA
                said = _refusal(ctx, f"{P}Snapshot:Post", 1)
                assert said == client.get(f"{P}LastError") == ctx.get(f"{P}LastError")
                assert "post-exposure snapshot already taken" in said
                ca_ctx = CAContext()
                try:
                    (post,) = ca_ctx.get_pvs(f"{P}Snapshot:Post", timeout=5)
                    post.wait_for_connection(timeout=10)
                    reply = post.write([1], wait=True, timeout=10)
                    assert reply.status.name == "ECA_PUTFAIL", reply
                    assert client.get(f"{P}LastError") == said  # the same words both ways
                finally:
                    ca_ctx.disconnect()
                assert _refusal(ctx, f"{P}Snapshot:Pre", 2).startswith("Snapshot:Pre refused")
                assert _refusal(ctx, f"{P}Heartbeat", 5) == "Heartbeat is read-only"
                ctx.put(f"{P}EndOfExperiment", 1, wait=True)
                path = Path(ctx.get(f"{P}LastFile").raw.value)  # pvget: the path
                procs.wait_until(lambda: states[-1:] == ["Idle"], 10, "Idle seen over PVA")
            finally:
                watch.close()
        with lock:
            seen_states = list(dict.fromkeys(states))
        assert seen_states[:1] == ["Idle"] and "Recording" in seen_states, seen_states
        assert {"Collecting", "Recording"} <= set(seen_states)
        log = proc.tail(400)
    with h5py.File(path, "r") as f:
        assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}
        audit = f["pre_exposure/audit/description"][()].decode()
    me = getpass.getuser()
    assert f" Snapshot:Pre by {me}@127.0.0.1" in audit, audit
    assert f"audit: {me}@127.0.0.1 wrote Snapshot:Pre = 1 (pva)" in log
    assert f"audit: {me}@127.0.0.1 wrote Heartbeat: refused (read-only) (pva)" in log


def _acf(me: str, console_hosts: str) -> str:
    """test_access's ACF (commands: operators on a console; settings: operators), this
    account an operator and ``console_hosts`` the consoles."""
    return (
        ACF.format(guests="")
        .replace("UAG(operators) { op }", f"UAG(operators) {{ op, {me} }}")
        .replace("HAG(consoles) { console1 }", f"HAG(consoles) {{ {console_hosts} }}")
    )


def test_the_acf_denies_a_host_over_both_protocols_and_a_reload_lets_it_in(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """Commands are for operators on console1: an operator's CA client on a laptop and an
    operator's PVA client on this host (127.0.0.1, its peer address) are both refused, with
    the same words; console1 over CA writes. The ACF reloaded with 127.0.0.1 among the
    consoles: the PVA client writes, without a restart."""
    me = getpass.getuser()
    acf = tmp_path / "assonant.acf"
    acf.write_text(_acf(me, "console1"))
    args = ["--no-kafka", "--no-validate", "--acf", str(acf)]
    denied = "has no write access (ASSONANT_COMMANDS)"
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _data, proc):
        assert proc.pva is not None
        laptop = CAContext(host_name="laptop", client_name="op")
        console = CAContext(host_name="console1", client_name="op")
        try:
            with _pva(proc.pva[1]) as ctx:
                said = _refusal(ctx, f"{P}Snapshot:Pre", 1)
                assert said == f"Snapshot:Pre refused: {me}@127.0.0.1 {denied}"
                assert client.get(f"{P}LastError") == said
                (from_laptop,) = laptop.get_pvs(f"{P}Snapshot:Pre", timeout=5)
                from_laptop.wait_for_connection(timeout=10)
                reply = from_laptop.write([1], wait=True, timeout=10)
                assert reply.status.name == "ECA_NOWTACCESS", reply
                assert client.get(f"{P}LastError") == f"Snapshot:Pre refused: op@laptop {denied}"
                assert str(ctx.get(f"{P}State")) == "Idle"
                (from_console,) = console.get_pvs(f"{P}Snapshot:Pre", timeout=5)
                from_console.wait_for_connection(timeout=10)
                from_console.write([1], wait=True, timeout=10)
                assert str(ctx.get(f"{P}State")) == "Collecting"  # CA's command, seen over PVA
                # this host among the consoles: reloaded, no restart
                acf.write_text(_acf(me, "console1, 127.0.0.1"))
                proc.popen.send_signal(signal.SIGHUP)
                procs.wait_until(
                    lambda: "access security reloaded" in client.get(f"{P}Status"), 10, "reload"
                )
                ctx.put(f"{P}Abort", 1, wait=True)
                assert client.get(f"{P}State") == "Idle"
        finally:
            laptop.disconnect()
            console.disconnect()
        log = proc.tail(400)
    assert (
        f"audit: {me}@127.0.0.1 wrote Snapshot:Pre = 1: refused ({me}@127.0.0.1 {denied}) (pva)"
        in log
    )
    assert f"audit: op@laptop wrote Snapshot:Pre = 1: refused (op@laptop {denied})\n" in log
    assert "audit: op@console1 wrote Snapshot:Pre = 1\n" in log
    assert f"audit: {me}@127.0.0.1 wrote Abort = 1 (pva)" in log
