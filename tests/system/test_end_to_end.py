"""The whole path: CA puts drive the service; the file and the Kafka event are checked."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
import pytest

from assonant_ioc.events import EVENT_SCHEMA_PATH
from assonant_ioc.events.kafka import consume_event
from assonant_ioc.nexus.provenance import provenance
from assonant_ioc.sim import procs
from tests.system.conftest import start_service


def _wait(check: Any, timeout: float = 20) -> None:
    procs.wait_until(check, timeout, "condition")


@pytest.fixture
def service(beamline: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path) -> Any:
    topic = f"assonant.test.{procs.new_prefix('t').strip(':')}"
    with start_service(log_dir, tmp_path, beamline, ["--kafka-bootstrap", kafka], topic) as (
        client,
        prefix,
        data_dir,
        proc,
    ):
        yield client, prefix, beamline[0], data_dir, topic, proc


def test_whole_experiment(service: Any, kafka: str) -> None:
    client, P, BL, data_dir, topic, proc = service
    total = client.get(f"{P}PVsTotal")
    assert total == 15
    _wait(lambda: client.get(f"{P}PVsConnected") == total)
    assert client.get(f"{P}DataDir") == str(data_dir)

    # refused commands: the put fails, Status/LastError say why, nothing crashes
    for pv in ("Snapshot:Post", "EndOfExperiment", "Abort"):
        with pytest.raises(procs.PutFailed):  # refused
            client.put(f"{P}{pv}", 1)
        assert "refused" in client.get(f"{P}LastError")
        assert client.get(f"{P}State") == "Idle"

    exp_id = f"e2e-{int(time.time())}"
    client.put(f"{P}ExperimentId", exp_id)
    client.put(f"{P}SampleName", "lysozyme crystal 7")
    note = "beam slightly off centre after refill; a note well over forty characters"
    client.put(f"{P}Comment", note)

    # the values the beamline holds at the pre snapshot
    client.put(f"{BL}smp:x:VAL", 0.0)
    client.put(f"{BL}mono:energy:VAL", 12.0)
    _wait(lambda: client.get(f"{BL}smp:x:DMOV") == 1 and client.get(f"{BL}mono:energy:DMOV") == 1)
    pre = {
        "energy": client.get(f"{BL}mono:energy:RBV"),
        "wavelength": client.get(f"{BL}mono:wavelength"),
        "x_gap": client.get(f"{BL}s1:hgap:RBV"),
        "y_gap": client.get(f"{BL}s1:vgap:RBV"),
        "x": client.get(f"{BL}smp:x:RBV"),
        "count_time": client.get(f"{BL}det:AcquireTime"),
    }
    client.put(f"{P}Snapshot:Pre", 1)
    assert client.get(f"{P}State") == "Collecting"

    client.put(f"{P}Record:During", 1)
    assert client.get(f"{P}State") == "Recording"
    with pytest.raises(procs.PutFailed):  # a second start is refused
        client.put(f"{P}Record:During", 1)
    assert "already recording" in client.get(f"{P}LastError")
    client.put(f"{BL}smp:x:VAL", 2.0)  # 5 mm/s at 10 Hz: 0.5 mm steps
    _wait(lambda: client.get(f"{BL}smp:x:RBV") == 2.0 and client.get(f"{BL}smp:x:DMOV") == 1)
    # changed before the recording stops: the stop takes every update stamped before it
    # (the service's grace for late monitors), so the post snapshot has it, no sleep needed
    client.put(f"{BL}det:AcquireTime", 0.25)
    client.put(f"{P}Record:During", 0)

    post = {"x": client.get(f"{BL}smp:x:RBV"), "count_time": client.get(f"{BL}det:AcquireTime")}
    client.put(f"{P}Snapshot:Post", 1)
    client.put(f"{P}EndOfExperiment", 1)  # returns when the file is at its final name

    last = Path(client.get(f"{P}LastFile"))
    assert len(str(last)) > 40
    assert last.parent == data_dir and last.exists()
    assert client.get(f"{P}FilesWritten") == 1
    assert client.get(f"{P}State") == "Idle"
    assert not list(data_dir.glob(".*partial"))

    with h5py.File(last, "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}
        # no detector frames in this config: the viewers open on a recorded axis
        from silx.io.nxdata import get_default

        plot = get_default(f)
        assert plot is not None and plot.is_valid, "silx finds no default plot"
        assert plot.group.name == "/during_exposure/data" and plot.axes_dataset_names == ["time"]
        for name in f:
            entry = f[name]
            assert entry.attrs["NX_class"] == "NXentry"
            assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
            assert entry["experiment_identifier"][()].decode() == exp_id
            assert entry["experiment_description"][()].decode() == note
            assert entry["start_time"][()].decode() <= entry["end_time"][()].decode()
        pre_e = f["pre_exposure"]
        mono = pre_e["instrument/monochromator"]
        assert mono.attrs["NX_class"] == "NXmonochromator"
        assert mono["energy"][()] == pytest.approx(pre["energy"])
        assert mono["energy"].attrs["units"] == "keV"
        energy = provenance(mono["energy"])
        assert energy["source_pv"] == f"{BL}mono:energy:RBV"
        assert energy["connected"] and energy["alarm_severity"] == "NO_ALARM"
        assert mono["wavelength"][()] == pytest.approx(pre["wavelength"])
        assert mono["wavelength"].attrs["units"] == "angstrom"
        slit = pre_e["instrument/slit_1"]
        assert slit.attrs["NX_class"] == "NXslit"
        assert slit["x_gap"][()] == pytest.approx(pre["x_gap"])
        assert slit["y_gap"][()] == pytest.approx(pre["y_gap"])
        assert slit["x_gap"].attrs["units"] == "mm"
        det = pre_e["instrument/detector"]
        assert det.attrs["NX_class"] == "NXdetector"
        assert det["count_time"][()] == pytest.approx(pre["count_time"])
        assert pre_e["instrument/storage_ring"].attrs["NX_class"] == "NXsource"

        sample = pre_e["sample"]
        assert sample.attrs["NX_class"] == "NXsample"
        assert sample["name"][()].decode() == "lysozyme crystal 7"
        trans = sample["transformations"]
        assert trans.attrs["NX_class"] == "NXtransformations"
        assert sample["depends_on"][()].decode() == trans["rx"].name
        assert trans["rx"].attrs["transformation_type"] == "rotation"
        assert list(trans["rx"].attrs["vector"]) == [0, 1, 0]
        assert trans["rx"].attrs["units"] == "deg"
        assert trans["rx"].attrs["depends_on"] == trans["x"].name
        assert trans["x"].attrs["depends_on"] == trans["y"].name
        assert trans["z"].attrs["depends_on"] == "."
        assert trans["x"][()] == pytest.approx(pre["x"])

        post_e = f["post_exposure"]
        assert post_e["sample/transformations/x"][()] == pytest.approx(post["x"]) == 2.0
        assert post_e["instrument/detector/count_time"][()] == pytest.approx(0.25)

        during = f["during_exposure"]
        xlog = during["sample/x"]
        assert xlog.attrs["NX_class"] == "NXlog"
        values, times = xlog["value"][()], xlog["time"][()]
        assert xlog["value"].attrs["units"] == "mm"
        assert xlog["time"].attrs["units"] == "s"
        assert values[0] == pytest.approx(0.0) and values[-1] == pytest.approx(2.0)
        intermediate = [v for v in values if 0.0 < v < 2.0]
        assert len(intermediate) >= 2, values
        assert np.all(np.diff(times) > 0), times
        assert np.all(np.diff(values) >= 0), values
        assert list(during["sample/transformations/x"][()]) == list(values)
        assert "y" not in during["sample/transformations"]  # y is a pre/post axis only

    event = asyncio.run(consume_event(kafka, topic, exp_id))
    jsonschema.validate(event, json.loads(EVENT_SCHEMA_PATH.read_text()))
    user, host = getpass.getuser(), socket.gethostname()  # what caproto's client says it is
    assert event["ended_by"] == f"{user}@{host}"
    data = last.read_bytes()
    assert event["sha256"] == hashlib.sha256(data).hexdigest()
    assert event["file_size"] == len(data)
    assert event["file_path"] == str(last)
    assert event["experiment_id"] == exp_id
    assert event["moments"] == ["pre_exposure", "during_exposure", "post_exposure"]
    assert event["readings_disconnected"] == 0
    assert event["readings_captured"] == _readings_in(last)  # each one, as the file holds
    assert client.get(f"{P}KafkaConnected") == "Yes"
    assert proc.popen.poll() is None


def _readings_in(path: Path) -> int:
    """The readings a file holds: one ``connected`` flag per reading in its provenance
    (a snapshot's field, each point of a recorded series)."""
    count = 0

    def visit(name: str, obj: object) -> None:
        nonlocal count
        if "provenance/" in name and name.endswith("/connected"):
            assert isinstance(obj, h5py.Dataset)
            count += obj.size

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count
