"""A forwarder's stream as a source: ``f144`` values, an ``al00`` MAJOR and an ``ep01``
disconnect for three sources, made with ESS's library and published to the test's broker,
recorded as CA readings are: each value at its timestamp, the alarm on the points after it,
the disconnect a gap, against the values sent."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.logdata_f144 import serialise_f144

from assonant_ioc.nexus.provenance import provenance
from assonant_ioc.sim import procs
from assonant_ioc.sim.run_control import send
from tests.system.conftest import REPO, start_service

pytestmark = pytest.mark.timeout(300)

SOURCES = ("bl:motor1", "bl:temp", "bl:gauge")


def _config(topic: str) -> str:
    fields = "\n".join(
        f'      {name}: {{pv: "kafka://{source}", moments: [during]}}'
        for name, source in zip(("motor", "temp", "gauge"), SOURCES, strict=True)
    )
    extra = f"  - name: forwarded\n    class: Sensor\n    fields:\n{fields}\n"
    text = (REPO / "configs" / "sim.yaml").read_text()
    return f"forwarder: {{topics: [{topic}]}}\n" + text.replace(
        "instrument:\n", "instrument:\n" + extra, 1
    )


def _ns(t: float) -> int:
    return int(t * 1e9)


def test_f144_al00_and_ep01_are_recorded_as_ca_readings_are(
    kafka: str, sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    topic = f"forwarded.{procs.new_prefix('f').strip(':')}"
    now = time.time()
    for i, source in enumerate(SOURCES):  # each source's value before the experiment
        send(kafka, topic, serialise_f144(source, float(i), _ns(now)), source)
    args = ["--kafka-bootstrap", kafka, "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args, config_text=_config(topic)) as (
        client,
        P,
        _data,
        _proc,
    ):
        total = client.get(f"{P}PVsTotal")
        procs.wait_until(lambda: client.get(f"{P}PVsConnected") == total, 30, "every source")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        sent: dict[str, list[tuple[float, float]]] = {s: [] for s in SOURCES}
        for k in range(5):
            for i, source in enumerate(SOURCES):
                t = time.time()
                value = 10.0 * i + k
                send(kafka, topic, serialise_f144(source, value, _ns(t)), source)
                sent[source].append((value, t))
            if k == 2:
                alarm_at = time.time()
                alarm = serialise_al00("bl:temp", _ns(alarm_at), Severity.MAJOR, "HIHI")
                send(kafka, topic, alarm, "bl:temp")
        gone_at = time.time()
        gone = serialise_ep01(_ns(gone_at), ConnectionInfo.DISCONNECTED, "bl:gauge")
        send(kafka, topic, gone, "bl:gauge")
        procs.wait_until(
            lambda: client.get(f"{P}PVsConnected") == total - 1, 30, "the gauge's disconnect"
        )
        client.put(f"{P}Record:During", 0)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    with h5py.File(path, "r") as f:
        during = f["during_exposure/instrument/forwarded"]
        logs = {}
        for name, source in zip(("motor", "temp", "gauge"), SOURCES, strict=True):
            g = during[name]
            zero = datetime.fromisoformat(g["time"].attrs["start"]).timestamp()
            prov = provenance(g)
            assert prov["source_pv"] == f"kafka://{source}"
            logs[source] = (
                g["value"][()],
                zero + g["time"][()],
                np.asarray(prov["alarm_severity"]),
                np.asarray(prov["alarm_status"]),
                np.asarray(prov["connected"]),
            )
    # the motor: the value it had at the start, then every value sent, at its time
    values, times, severity, _status, connected = logs["bl:motor1"]
    assert list(values[1:]) == [v for v, _ in sent["bl:motor1"]]
    assert np.allclose(times[1:], [t for _, t in sent["bl:motor1"]], rtol=0, atol=1e-6)
    assert not severity.any() and connected.all()
    # the temperature: MAJOR HIHI from the alarm on (a point of its own at the alarm's time)
    values, times, severity, status, _ = logs["bl:temp"]
    (at,) = np.nonzero(np.isclose(times, alarm_at, rtol=0, atol=1e-6))[0]
    assert values[at] == values[at - 1] and severity[at] == 2 and status[at] == 3  # HIHI
    assert not severity[:at].any() and (severity[at:] == 2).all()
    sent_points = [p for k, p in enumerate(zip(values, times, strict=True)) if k not in (0, at)]
    assert np.allclose(sent_points, sent["bl:temp"], rtol=0, atol=1e-6)  # the values sent
    # the gauge: its values, then the gap at the disconnect's time
    values, times, severity, _status, connected = logs["bl:gauge"]
    assert list(values[1:-1]) == [v for v, _ in sent["bl:gauge"]]
    assert not connected[-1] and np.isnan(values[-1]) and severity[-1] == 3
    assert abs(times[-1] - gone_at) < 1e-6
