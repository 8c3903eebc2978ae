"""EPICS access security on the running IOC: two client identities, writes allowed and denied
as the file says, reads unchanged, a reload (SIGHUP) applying a new rule; the audit log."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import h5py
from caproto import AccessRights
from caproto.threading.client import Context

from assonant_ioc.sim import procs
from tests.system.conftest import start_service

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


def test_access_security_with_two_identities_and_a_reload(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    acf = tmp_path / "assonant.acf"
    acf.write_text(ACF.format(guests=""))
    args = ["--no-kafka", "--no-validate", "--acf", str(acf)]
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _dd, proc):
        op_ctx = Context(host_name="console1", client_name="op")
        guest_ctx = Context(host_name="laptop", client_name="guest")
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

            # a new rule, applied without a restart
            acf.write_text(
                ACF.format(guests="RULE(1, WRITE) { UAG(guests) }").replace(
                    "UAG(operators) { op }", "UAG(operators) { op }\nUAG(guests) { guest }"
                )
            )
            proc.popen.send_signal(signal.SIGHUP)
            procs.wait_until(
                lambda: "access security reloaded" in client.get(f"{P}Status"), 10, "reload"
            )
            _write(guest_sample, "by-guest")
            assert client.get(f"{P}SampleName") == "by-guest"
        finally:
            op_ctx.disconnect()
            guest_ctx.disconnect()
        log_text = proc.log_path.read_text()
    assert "audit: op@console1 wrote SampleName = 'by-op'" in log_text
    assert "audit: guest@laptop wrote SampleName = 'by-guest'" in log_text
    assert "SampleName refused: guest@laptop has no write access" in log_text
