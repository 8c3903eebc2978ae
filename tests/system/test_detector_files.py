"""Detector files are complete before they are linked: a camera whose file plugin closes its
file seconds after the last frame, and one that never writes a file it announced."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np

from assonant_ioc.events import EVENT_SCHEMA_PATH
from assonant_ioc.events.kafka import consume_event
from assonant_ioc.nexus.provenance import source_files
from assonant_ioc.sim import procs
from tests.system.camera import acquire
from tests.system.conftest import REPO, start_service


def _frames(client: Any, BL: str, key: int, n: int) -> None:
    """``n`` frames with image key ``key``; the acquisition stops, and the test goes on at
    once: it does not wait for the camera's file to be closed."""
    counted = client.get(f"{BL}det:ArrayCounter_RBV")
    client.put(f"{BL}det:ImageKey", key)
    client.put(f"{BL}det:Acquire", 1)
    procs.wait_until(lambda: client.get(f"{BL}det:ArrayCounter_RBV") >= counted + n, 20, "frames")
    client.put(f"{BL}det:Acquire", 0)


def _experiment(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path, timeout: float, drive: Any
) -> tuple[Path, dict[str, Any], str]:
    """An NXtomo experiment around ``drive(client, BL)``; returns (master file, event,
    Validation PV)."""
    BL = sim[0]
    topic = f"assonant.test.{procs.new_prefix('t').strip(':')}"
    config = (REPO / "configs" / "sim_tomo.yaml").read_text()
    config = config.replace("dataset: /entry/data/data, timeout: 20}", f"timeout: {timeout}}}")
    assert f"timeout: {timeout}" in config
    with start_service(
        log_dir, tmp_path, sim, ["--kafka-bootstrap", kafka], topic, config_text=config
    ) as (client, P, data_dir, proc):
        client.put(f"{BL}det:HDF1:FilePath", str(data_dir / "detector"))
        exp_id = f"files-{int(time.time() * 1000)}"
        client.put(f"{P}ExperimentId", exp_id)
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        drive(client, BL)
        client.put(f"{P}Record:During", 0)
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        master = Path(client.get(f"{P}LastFile"))
        event = asyncio.run(consume_event(kafka, topic, exp_id, timeout=60))
        procs.wait_until(lambda: client.get(f"{P}Validation") != "", 60, "validation")
        validation = client.get(f"{P}Validation")
        client.put(f"{BL}det:HDF1:CloseDelay", 0.0)
        assert proc.popen.poll() is None
    jsonschema.validate(event, json.loads(EVENT_SCHEMA_PATH.read_text()))
    return master, event, validation


def test_a_file_closed_two_seconds_after_the_last_frame_is_waited_for_and_linked_whole(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    def drive(client: Any, BL: str) -> None:
        client.put(f"{BL}det:HDF1:CloseDelay", 2.0)  # a slow file system
        _frames(client, BL, 0, 8)  # EndOfExperiment follows at once

    master, event, validation = _experiment(sim, kafka, log_dir, tmp_path, 20, drive)
    (linked,) = event["detector_files"]
    n = linked["frames_expected"]
    assert n >= 8 and linked["frames_linked"] == n
    with h5py.File(master, "r") as f:
        frames = f["during_exposure/instrument/detector/data"][()]
    assert frames.shape[0] == n
    assert frames[:, 0, 0].tolist() == [2000 + i for i in range(n)]  # every frame, in order
    with h5py.File(linked["path"], "r") as camera:
        assert np.array_equal(camera["/entry/data/data"][()], frames)
    assert "checks" not in event
    assert "assonant error" not in validation
    (source,) = source_files(master)
    assert source["status"] == "ok" and source["sha256"] == linked["sha256"]


def test_a_file_never_written_is_named_with_its_frames_and_never_read_as_zeros(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    def drive(client: Any, BL: str) -> None:
        acquire(client, BL, 2, 3)  # dark: written
        client.put(f"{BL}det:HDF1:DropFile", 1)  # the flat's file is announced, never written
        acquire(client, BL, 1, 3)
        acquire(client, BL, 0, 5)  # projections: written

    master, event, validation = _experiment(sim, kafka, log_dir, tmp_path, 3, drive)
    dark, flat, projections = event["detector_files"]
    assert flat["frames_linked"] == 0 and flat["frames_expected"] >= 3 and flat["sha256"] == ""
    assert not Path(flat["path"]).exists()
    for written in (dark, projections):
        assert written["frames_linked"] == written["frames_expected"] > 0
    message = (
        f"detector file {flat['path']} missing: 0 frames linked "
        f"({flat['frames_expected']} expected)"
    )
    assert any(message in c for c in event["checks"]), event["checks"]
    assert event["validation"]["errors"] >= 1
    assert any(message in e for e in event["validation"]["first_errors"])
    assert message in validation  # the Validation PV names it first
    with h5py.File(master, "r") as f:
        data = f["during_exposure/instrument/detector/data"]
        frames = data[()]
        keys = f["during_exposure/instrument/detector/image_key"][()]
    n = dark["frames_linked"] + projections["frames_linked"]
    assert frames.shape[0] == n and keys.tolist().count(1) == 0  # no flat read as zeros
    assert (frames.reshape(n, -1)[:, 1:] > 0).all()  # no frame of fill values
    statuses = {s["path"]: s["status"] for s in source_files(master)}
    assert statuses[flat["path"]] == "missing"
    # the camera overwrites the projections' file afterwards: the file says so
    with h5py.File(projections["path"], "r+") as f:
        f["/entry/data/data"][0, 5, 5] += 1
    statuses = {s["path"]: s["status"] for s in source_files(master)}
    assert statuses[projections["path"]] == "changed" and statuses[dark["path"]] == "ok"


def test_inspect_says_which_detector_file_changed_or_went(tmp_path: Path) -> None:
    """``assonant-ioc inspect`` shows each linked file as it was and as it is now."""
    import subprocess
    import sys

    from assonant_ioc.config import load_config
    from assonant_ioc.nexus import write_experiment
    from assonant_ioc.sim.experiment import simulated_experiment

    config = load_config(REPO / "configs" / "sim_tomo.yaml")
    master = write_experiment(simulated_experiment(config, tmp_path), tmp_path / "m.nx")
    dark, flat, _proj = sorted(tmp_path.glob("detector_*.h5"))

    def inspect() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-m", "assonant_ioc.cli", "inspect", str(master)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line for line in out.splitlines() if ".h5:" in line]

    assert all(line.endswith("-> OK") for line in inspect()) and len(inspect()) == 3
    dark.unlink()
    with h5py.File(flat, "r+") as f:
        f["/entry/data/data"][0, 0, 0] = 7
    status = {line.split(": ")[1]: line.rsplit("-> ", 1)[1] for line in inspect()}
    assert status[str(dark)] == "MISSING" and status[str(flat)] == "CHANGED"
