"""EPICS access security on the running IOC: two client identities, writes allowed and denied
as the file says, reads unchanged, a reload (SIGHUP) applying a new rule; the audit log."""

from __future__ import annotations

import contextlib
import getpass
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
from caproto import AccessRights
from caproto.threading.client import Context

from assonant_ioc.sim import procs
from tests.system.conftest import quiet_service, start_service

ACF = """\
UAG(operators) {{ op }}
HAG(consoles) {{ console1 }}
ASG(DEFAULT) {{
    RULE(1, READ)
}}
ASG(ASSONANT_COMMANDS) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(operators) HAG(consoles) }}
}}
ASG(ASSONANT_SETTINGS) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(operators) }}
    {guests}
}}
"""


def _pvs(ctx: Context, P: str, *names: str) -> list[Any]:
    pvs = ctx.get_pvs(*(f"{P}{n}" for n in names), timeout=5)
    for pv in pvs:
        pv.wait_for_connection(timeout=10)
    return list(pvs)


def _write(pv: Any, text: str) -> None:
    pv.write([*text.encode(), 0], wait=True, timeout=5)


@contextlib.contextmanager
def _two_identities(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> Iterator[tuple[Path, Any, str, Any, Context, Context]]:
    """The IOC with the ACF (no guests' rule), and two CA clients: op on console1, guest on
    laptop; yields (the ACF's path, client, prefix, proc, op's context, guest's context)."""
    acf = tmp_path / "assonant.acf"
    acf.write_text(ACF.format(guests=""))
    args = ["--no-kafka", "--no-validate", "--acf", str(acf)]
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _dd, proc):
        op_ctx = Context(host_name="console1", client_name="op")
        guest_ctx = Context(host_name="laptop", client_name="guest")
        try:
            yield acf, client, P, proc, op_ctx, guest_ctx
        finally:
            op_ctx.disconnect()
            guest_ctx.disconnect()


def test_access_security_with_two_identities_and_a_reload(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with _two_identities(sim, log_dir, tmp_path) as (acf, client, P, proc, op_ctx, guest_ctx):
        libca: _LibcaWatcher | None = None
        try:
            op_sample, op_pre, op_eoe = _pvs(
                op_ctx, P, "SampleName", "Snapshot:Pre", "EndOfExperiment"
            )
            guest_sample, guest_pre, guest_status = _pvs(
                guest_ctx, P, "SampleName", "Snapshot:Pre", "Status"
            )
            # what cainfo shows: the rights each client really has
            assert op_sample.access_rights == AccessRights.READ | AccessRights.WRITE
            assert op_pre.access_rights == AccessRights.READ | AccessRights.WRITE
            assert guest_sample.access_rights == AccessRights.READ
            assert guest_pre.access_rights == AccessRights.READ
            assert guest_status.read().data is not None  # reading is unchanged

            _write(op_sample, "by-op")
            assert client.get(f"{P}SampleName") == "by-op"
            # a denied write fails at once as in EPICS (no write access), and is logged
            reply = guest_sample.write([*b"by-guest", 0], wait=True, timeout=10)
            assert reply.status.name == "ECA_NOWTACCESS", reply
            assert "guest@laptop has no write access" in client.get(f"{P}LastError")
            assert client.get(f"{P}SampleName") == "by-op"
            reply = guest_pre.write([1], wait=True, timeout=10)
            assert reply.status.name == "ECA_NOWTACCESS", reply
            assert client.get(f"{P}State") == "Idle"
            op_pre.write([1], wait=True, timeout=10)
            assert client.get(f"{P}State") == "Collecting"
            op_eoe.write([1], wait=True, timeout=30)
            with h5py.File(client.get(f"{P}LastFile"), "r") as f:  # who did what, in the file
                audit = f["pre_exposure/audit/description"][()].decode()
            assert " Snapshot:Pre by op@console1" in audit, audit
            assert " EndOfExperiment by op@console1" in audit, audit

            # a new rule, applied without a restart: guests (and the user libca runs as) may
            # write the settings
            me = getpass.getuser()
            acf.write_text(
                ACF.format(guests="RULE(1, WRITE) { UAG(guests) }").replace(
                    "UAG(operators) { op }",
                    f"UAG(operators) {{ op }}\nUAG(guests) {{ guest, {me} }}",
                )
            )
            libca = _LibcaWatcher(f"{P}SampleName", client_env=client.env)
            assert libca.rights() == "read"  # libca's view (what cainfo prints), before
            proc.popen.send_signal(signal.SIGHUP)
            procs.wait_until(
                lambda: "access security reloaded" in client.get(f"{P}Status"), 10, "reload"
            )
            # the channels already open learn their new rights, as rsrv tells them
            procs.wait_until(
                lambda: guest_sample.access_rights == AccessRights.READ | AccessRights.WRITE,
                10,
                "the guest's open channel to be writable",
            )
            assert guest_pre.access_rights == AccessRights.READ  # commands: still not
            assert libca.rights() == "read,write"
            _write(guest_sample, "by-guest")
            assert client.get(f"{P}SampleName") == "by-guest"
            reply = guest_pre.write([1], wait=True, timeout=10)  # still denied after the reload
            assert reply.status.name == "ECA_NOWTACCESS", reply
            guest_pre.write([1], wait=False)  # a plain put, denied: no reply, but the audit
            procs.wait_until(
                lambda: (
                    proc.log_path.read_text().count(
                        "audit: guest@laptop wrote Snapshot:Pre = 1: refused (guest@laptop has no "
                        "write access (ASSONANT_COMMANDS))"
                    )
                    == 3
                ),
                10,
                "the plain put's audit line",
            )
            assert client.get(f"{P}State") == "Idle"
        finally:
            if libca is not None:
                libca.close()
        log_text = proc.log_path.read_text()
    assert "audit: op@console1 wrote SampleName = 'by-op'" in log_text
    assert "audit: guest@laptop wrote SampleName = 'by-guest'" in log_text
    # every write has its audit line, in one form, with the value as written
    assert (
        "audit: guest@laptop wrote SampleName = 'by-guest': refused (guest@laptop has no write "
        "access (ASSONANT_SETTINGS))" in log_text
    )
    assert "audit: op@console1 wrote Snapshot:Pre = 1" in log_text  # not the value after it


class _LibcaWatcher:
    """libca (pyepics) with one channel open in its own process: the rights it shows now."""

    SCRIPT = (
        "import sys, epics\n"
        "pv = epics.PV(sys.argv[1], auto_monitor=False)\n"
        "pv.wait_for_connection(timeout=10)\n"
        "for line in sys.stdin:\n"
        "    epics.ca.poll(0.2)\n"
        "    w, r = epics.ca.write_access(pv.chid), epics.ca.read_access(pv.chid)\n"
        "    print(('read,write' if w else 'read') if r else 'none', flush=True)\n"
    )

    def __init__(self, pv: str, client_env: dict[str, str]) -> None:
        import os
        import subprocess
        import sys

        env = {**os.environ, **client_env, "EPICS_CA_AUTO_ADDR_LIST": "NO"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, pv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def rights(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)  # closes the pipes


def test_sighup_without_an_access_file_changes_nothing_and_the_ioc_runs_on(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with quiet_service(log_dir, tmp_path, sim) as (client, P, _dd, proc):
        proc.popen.send_signal(signal.SIGHUP)
        procs.wait_until(
            lambda: "SIGHUP: no access security file" in proc.log_path.read_text(), 10, "log"
        )
        assert proc.popen.poll() is None
        client.put(f"{P}SampleName", "still-running")
        assert client.get(f"{P}SampleName") == "still-running"


def test_a_put_with_callback_to_a_status_pv_is_answered_at_once(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """caproto's client ``write(wait=True)`` to a read-only PV: ECA_NOWTACCESS at once, as
    libca gets from rsrv (it used to wait out its timeout)."""
    with quiet_service(log_dir, tmp_path, sim) as (_client, P, _dd, _proc):
        ctx = Context()
        try:
            (state,) = _pvs(ctx, P, "State")
            reply = state.write([1], wait=True, timeout=5)
            assert reply.status.name == "ECA_NOWTACCESS", reply
            assert state.read().data is not None
        finally:
            ctx.disconnect()


def test_a_reload_revokes_write_on_an_open_channel_and_a_malformed_file_keeps_the_rules(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with _two_identities(sim, log_dir, tmp_path) as (acf, client, P, proc, op_ctx, guest_ctx):
        (op_sample,) = _pvs(op_ctx, P, "SampleName")
        (guest_sample,) = _pvs(guest_ctx, P, "SampleName")
        assert op_sample.access_rights == AccessRights.READ | AccessRights.WRITE
        # a malformed file: said, and the rules in force stay (neither opened nor closed)
        acf.write_text("ASG(DEFAULT) {\n    RULE(1, READ\n")
        proc.popen.send_signal(signal.SIGHUP)
        procs.wait_until(
            lambda: "access security not reloaded, old rules kept" in client.get(f"{P}LastError"),
            10,
            "the malformed file refused",
        )
        _write(op_sample, "op-after-malformed")
        assert client.get(f"{P}SampleName") == "op-after-malformed"
        reply = guest_sample.write([*b"guest", 0], wait=True, timeout=10)
        assert reply.status.name == "ECA_NOWTACCESS", reply
        assert op_sample.access_rights == AccessRights.READ | AccessRights.WRITE
        # a reload that takes write away from the operators: their open channel loses it
        acf.write_text(
            ACF.format(guests="").replace("UAG(operators) { op }", "UAG(operators) { nobody }")
        )
        proc.popen.send_signal(signal.SIGHUP)
        procs.wait_until(
            lambda: op_sample.access_rights == AccessRights.READ, 10, "op's write revoked"
        )
        reply = op_sample.write([*b"op-revoked", 0], wait=True, timeout=10)
        assert reply.status.name == "ECA_NOWTACCESS", reply
        assert client.get(f"{P}SampleName") == "op-after-malformed"
        assert op_sample.read().data is not None  # reading stays
        log_text = proc.log_path.read_text()
    assert "audit: op@console1 wrote SampleName = 'op-revoked': refused" in log_text
