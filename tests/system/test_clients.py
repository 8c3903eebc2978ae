"""A refused step fails the put in every client a beamline uses, and never leaves one waiting:
libca (what ``caput -c`` and pyepics call), caproto's client, aioca (under ophyd-async), and
a Bluesky RunEngine with the shipped ophyd-async device and plan stubs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
from caproto.threading.client import Context

from tests.system.conftest import REPO, quiet_service


def _client(kind: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run a client in its own process (one libca context per process); what it saw."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.system.clients", kind, *args],
        env=os.environ | env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_refused_step_fails_the_put_in_libca_caproto_and_aioca(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with quiet_service(log_dir, tmp_path, sim) as (client, P, _data_dir, _proc):
        # libca: the put callback's status is a failure, and LastError says why
        seen = _client("libca", f"{P}Snapshot:Post", "1", env=client.env)
        assert seen["ok"] is False, seen
        assert "Snapshot:Post refused" in client.get(f"{P}LastError")
        # aioca: caput(wait=True) raises
        seen = _client("aioca", f"{P}EndOfExperiment", "1", env=client.env)
        assert seen["ok"] is False, seen
        assert "EndOfExperiment refused" in client.get(f"{P}LastError")
        # caproto's threading client: write(wait=True) returns the failure status at once
        ctx = Context()
        try:
            abort, record = ctx.get_pvs(f"{P}Abort", f"{P}Record:During", timeout=5)
            reply = abort.write([1], wait=True, timeout=10)
            assert reply.status.name == "ECA_PUTFAIL", reply
            assert "Abort refused" in client.get(f"{P}LastError")
            # and the same clients see success as success
            assert _client("libca", f"{P}Snapshot:Pre", "1", env=client.env)["ok"] is True
            assert client.get(f"{P}State") == "Collecting"
            assert _client("aioca", f"{P}Record:During", "1", env=client.env)["ok"] is True
            assert client.get(f"{P}State") == "Recording"
            reply = record.write([1], wait=True, timeout=10)  # a second start
            assert reply.status.name == "ECA_PUTFAIL", reply
            assert "already recording" in client.get(f"{P}LastError")
            assert record.write([0], wait=True, timeout=10).status.name == "ECA_NORMAL"
        finally:
            ctx.disconnect()


def test_a_bluesky_plan_writes_the_file_and_a_refused_step_raises(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with quiet_service(log_dir, tmp_path, sim) as (client, P, data_dir, _proc):
        seen = _client("bluesky", P, env=client.env)
        path = Path(seen["path"])
        assert path.parent == data_dir and path == Path(client.get(f"{P}LastFile"))
        with h5py.File(path, "r") as f:
            assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}
            assert f["pre_exposure/experiment_identifier"][()].decode() == "bluesky-run"
            assert f["pre_exposure/sample/name"][()].decode() == "bluesky sample"
        assert seen["documents"][0] == "start" and seen["documents"][-1] == "stop"
        # the refused step raised StepRefused with the IOC's reason, and did not hang
        assert "refused_wrongly" not in seen, seen
        assert seen["refused"].startswith("EndOfExperiment refused"), seen
        assert seen["refused_seconds"] < 10, seen  # a hang would wait out the test's timeout
