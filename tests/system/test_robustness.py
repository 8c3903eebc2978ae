"""Bad input is refused with a message and loses nothing; one bad PV or write never kills it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import h5py
import numpy as np
import pytest

from assonant_ioc.events.kafka import consume_event
from assonant_ioc.nexus.provenance import provenance
from assonant_ioc.sim import procs
from tests.system.conftest import start_service

GHOST = """\
  - name: ghost
    class: Sensor
    fields:
      value: {pv: "$(BL)does:not:exist", units: V}
"""


def _refused(client: object, pv: str, value: object) -> str:
    with pytest.raises(procs.PutFailed):  # refused
        client.put(pv, value)  # type: ignore[attr-defined]
    return str(client.get(pv.rsplit(":", 1)[0] + ":LastError"))  # type: ignore[attr-defined]


def _error(client: object, prefix: str) -> str:
    return str(client.get(f"{prefix}LastError"))  # type: ignore[attr-defined]


def test_wrong_writes_are_refused_with_a_message(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, data_dir, proc):
        template = client.get(f"{P}FileName")
        for pv, value, why in [
            ("Snapshot:Pre", 2, "write 0 or 1, not 2"),
            ("Record:During", 5, "write 0 or 1, not 5"),
            ("DataDir", "relative/path", "not an absolute path"),
            ("FileName", "{beamline}_{oops}.nxs", "bad file name template"),
            ("FileName", "../{counter}.nxs", "unusable file name"),
            ("ExperimentId", "a/b", "path separator"),
        ]:
            with pytest.raises(procs.PutFailed):  # refused
                client.put(f"{P}{pv}", value)
            assert why in _error(client, P), (pv, value)
            assert why in client.get(f"{P}Status")
        assert client.get(f"{P}FileName") == template  # refused writes change nothing
        assert client.get(f"{P}DataDir") == str(data_dir)
        assert client.get(f"{P}State") == "Idle"
        # ... and it still works
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        assert Path(client.get(f"{P}LastFile")).exists()
        assert client.get(f"{P}KafkaConnected") == "No"
        assert proc.popen.poll() is None


def test_disconnected_pvs_are_recorded_not_fatal(log_dir: Path, tmp_path: Path) -> None:
    prefix = procs.new_prefix("BL")
    beamline = procs.sim_beamline(log_dir, prefix)
    port = beamline.__enter__()
    try:
        with start_service(log_dir, tmp_path, (prefix, port), ["--no-kafka"], extra_yaml=GHOST) as (
            client,
            P,
            _data_dir,
            proc,
        ):
            total = client.get(f"{P}PVsTotal")
            assert total == 16
            procs.wait_until(lambda: client.get(f"{P}PVsConnected") == total - 1, 20, "connect")
            client.put(f"{P}Snapshot:Pre", 1)  # one PV never connected: the step still runs
            client.put(f"{P}Record:During", 1)
            beamline.__exit__(None, None, None)  # the whole beamline IOC goes away
            procs.wait_until(lambda: client.get(f"{P}PVsConnected") == 0, 60, "disconnect")
            client.put(f"{P}Record:During", 0)
            client.put(f"{P}Snapshot:Post", 1)
            client.put(f"{P}EndOfExperiment", 1)
            path = Path(client.get(f"{P}LastFile"))
            assert proc.popen.poll() is None
    finally:
        beamline.__exit__(None, None, None)
    with h5py.File(path, "r") as f:
        ghost = f["pre_exposure/instrument/ghost/value"]
        assert not provenance(ghost)["connected"]
        assert provenance(ghost)["alarm_severity"] == "INVALID"
        assert np.isnan(ghost[()])  # no value invented
        energy = f["pre_exposure/instrument/monochromator/energy"]
        assert provenance(energy)["connected"] and energy[()] == pytest.approx(12.0)
        post = f["post_exposure/instrument/monochromator/energy"]
        assert not provenance(post)["connected"]
        assert provenance(post)["alarm_severity"] == "INVALID"
        log = f["during_exposure/instrument/monochromator/energy"]
        assert not provenance(log)["connected"][-1]  # the drop is in the series


def test_failed_write_keeps_the_experiment_for_a_retry(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "becomes_a_file"
    blocker.mkdir()
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, data_dir, _proc):
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}DataDir", str(blocker / "data"))  # fine when written...
        blocker.rmdir()
        blocker.write_text("a file where the data directory should be")  # ...not any more
        with pytest.raises(procs.PutFailed):  # the put fails: the file was not written
            client.put(f"{P}EndOfExperiment", 1)
        assert client.get(f"{P}State") == "Fault"
        assert "write failed, experiment kept" in _error(client, P)
        client.put(f"{P}DataDir", str(data_dir))
        client.put(f"{P}EndOfExperiment", 1)  # the same experiment, written this time
        assert client.get(f"{P}State") == "Idle"
        path = Path(client.get(f"{P}LastFile"))
        with h5py.File(path, "r") as f:
            assert "pre_exposure" in f
        assert client.get(f"{P}FilesWritten") == 1
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        second = Path(client.get(f"{P}LastFile"))
        assert second != path and second.exists()  # the counter never reuses a name


def test_events_wait_for_the_broker_and_are_not_lost(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    port = procs.free_port()  # nothing listens here yet
    with start_service(log_dir, tmp_path, sim, ["--kafka-bootstrap", f"127.0.0.1:{port}"]) as (
        client,
        P,
        _data_dir,
        proc,
    ):
        client.put(f"{P}ExperimentId", "while-kafka-was-down")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)  # the file does not wait for Kafka
        path = Path(client.get(f"{P}LastFile"))
        assert path.exists()
        procs.wait_until(lambda: "will be sent again" in _error(client, P), 30, "send failure")
        assert client.get(f"{P}KafkaConnected") == "No"
        with procs.broker(log_dir, port) as bootstrap:
            event = asyncio.run(
                consume_event(bootstrap, "assonant.files", "while-kafka-was-down", timeout=40)
            )
            assert event["file_path"] == str(path)
            procs.wait_until(lambda: client.get(f"{P}KafkaConnected") == "Yes", 10, "Kafka up")
        assert proc.popen.poll() is None


def test_abort_discards_the_experiment(sim: tuple[str, int], log_dir: Path, tmp_path: Path) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, data_dir, _proc):
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        client.put(f"{P}Abort", 1)  # the put succeeds
        assert client.get(f"{P}State") == "Idle"
        assert client.get(f"{P}Record:During") == 0
        assert "aborted, nothing written" in client.get(f"{P}Status")
        # a new experiment starts clean: its file holds only what it captured
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        with h5py.File(client.get(f"{P}LastFile"), "r") as f:
            assert set(f) == {"pre_exposure"}
        assert client.get(f"{P}FilesWritten") == 1
        assert len(list(data_dir.glob("*.nxs"))) == 1
