"""Bluesky runs in: a RunEngine with ophyd-async's simulated devices publishes its documents
with bluesky-kafka to the test's broker; ``assonant-ioc bluesky`` (a real process) writes one
file per run; nabu, tomoscan and the MX layout read them right; the catalog finds them; the
same documents given to the in-process callback give the same file. A kill -9 mid-run, a run
that never stops and malformed documents lose nothing and are named.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import h5py
import numpy as np
import pytest

from assonant_ioc.documents.callback import NexusCallback
from assonant_ioc.documents.journal import RunJournal
from assonant_ioc.events.kafka import consume_all
from assonant_ioc.sim import catalog_procs, procs
from assonant_ioc.sim.run_control import StatusTopic
from tests.system.bluesky_runs import EXPOSURE, Devices, Doc, mx, run, tomo
from tests.system.conftest import REPO
from tests.system.test_nexus_standard import NEXUSFORMAT_KNOWN
from tests.system.tiled_http import Tiled

ANGLES = [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]


def _config(
    tmp_path: Path, events_topic: str, validate: bool = True, status_topic: str = ""
) -> Path:
    text = (REPO / "assonant_ioc" / "configs" / "sim_bluesky.yaml").read_text()
    if status_topic:  # ESS's finished-writing message (wrdn) after each file
        text += (
            f"run_control: {{command_topic: unused-{status_topic}, status_topic: {status_topic}}}\n"
        )
    text = text.replace("topic: assonant.files", f"topic: {events_topic}")
    if not validate:
        text += "validate: false\n"
    text += f"detector_dirs: [{tmp_path / 'frames'}]\n"  # the devices' files, nowhere else
    path = tmp_path / "sim_bluesky.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def consumer(
    log_dir: Path,
    kafka: str,
    config: Path,
    topic: str,
    state: Path,
    data: Path,
    run_timeout: float = 3600,
    extra: list[str] | None = None,
) -> Iterator[procs.Proc]:
    args = [
        sys.executable,
        "-m",
        "assonant_ioc.cli",
        "bluesky",
        "--config",
        str(config),
        "--bootstrap",
        kafka,
        "--topic",
        topic,
        "--state-dir",
        str(state),
        "--data-dir",
        str(data),
        "--run-timeout",
        str(run_timeout),
        *(extra or []),
    ]
    with procs.running("bluesky-consumer", args, {}, log_dir) as proc:
        procs.wait_until(
            lambda: "consuming Bluesky documents" in proc.tail(200), 60, "consumer up", proc
        )
        yield proc


def _publisher(kafka: str, topic: str) -> Any:
    from bluesky_kafka import Publisher

    return Publisher(
        topic=topic,
        bootstrap_servers=kafka,
        key=f"test-{secrets.token_hex(4)}",
        flush_on_stop_doc=True,
    )


def _publish(kafka: str, topic: str, docs: list[Doc]) -> None:
    publisher = _publisher(kafka, topic)
    for name, doc in docs:
        publisher(name, doc)
    publisher.flush()


def _events(kafka: str, topic: str, n: int, timeout: float = 90) -> list[dict[str, Any]]:
    return asyncio.run(consume_all(kafka, topic, n, timeout))


def _uid(docs: list[Doc]) -> str:
    return next(str(d["uid"]) for n, d in docs if n == "start")


def _values(path: Path) -> dict[str, Any]:
    """Every dataset of a file by path, but the times (they say when the file was made)."""
    out: dict[str, Any] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and not any(
            t in name.rsplit("/", 1)[-1] for t in ("time", "timestamp", "written", "sha256")
        ):
            value = item[()]
            out[name] = repr(value.tolist() if hasattr(value, "tolist") else value)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def _check_tomo(path: Path, frames_dir: Path) -> None:
    """What nabu and tomoscan read: 2 darks, 3 flats, 6 projections at the plan's angles,
    the frames linked (virtual) and equal to the detector's own."""
    from nabu.resources.dataset_analyzer import analyze_dataset
    from tomoscan.esrf import NXtomoScan

    scan = NXtomoScan(str(path), "during_exposure")
    assert (len(scan.darks), len(scan.flats), len(scan.projections)) == (2, 3, 6)
    dataset = analyze_dataset(str(path), extra_options={"hdf5_entry": "during_exposure"})
    assert len(dataset.projections) == 6
    np.testing.assert_allclose(dataset.rotation_angles, np.deg2rad(ANGLES), atol=1e-9)
    with h5py.File(path, "r") as f:
        frames = f["during_exposure/instrument/detector/data"]
        assert frames.is_virtual and frames.shape == (11, 240, 320)
        # every frame, darks and flats included, is the detector's own, in its order
        (source,) = {vs.file_name for vs in frames.virtual_sources()}
        with h5py.File(path.parent / source, "r") as det:
            written = det["/entry/data/data"][()]
        assert written.shape[0] == 11  # (the simulated blob is the same in each frame: the
        # order of frames is tested where they differ, the Resource/Datum path's unit test)
        np.testing.assert_array_equal(frames[()], written)
        keys = f["during_exposure/instrument/detector/image_key"][()].tolist()
        assert keys == [2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0]
        assert f["during_exposure/definition"][()] == b"NXtomo"
        # the stage read at start and stop: the snapshots
        assert f["pre_exposure/sample/transformations/x"][()] == pytest.approx(0.0)
        assert f["post_exposure/sample/transformations/y"][()] == pytest.approx(0.0)
        assert "during_exposure/det_files/det_sum" in f  # the detector's sums, linked


def _uneven_sweep(path: Path) -> bool:
    """Whether an NXmx file's omega steps stray more than 10 % from their median (a sweep
    triggered by software on a loaded machine can: the writer must then say so)."""
    with h5py.File(path, "r") as f:
        omega = f.get("during_exposure/sample/transformations/rotation")
        if f["during_exposure/definition"][()] != b"NXmx" or omega is None:
            return False
        steps = np.diff(omega[()])
    return bool(np.any(np.abs(steps - np.median(steps)) > 0.1 * abs(np.median(steps))))


def _check_mx(path: Path, docs: list[Doc]) -> None:
    """One omega per image: 10 images, each triggered as the rotation (1 deg per 0.3 s)
    reached 0, 1, ... 9 deg. Each image's omega is the rotation's monitored readback (the
    run's monitor stream) where its exposure began, its event's time less the exposure;
    omega_end the readback at its event's time (as the PV path compares with the motor's
    log)."""
    descriptors = {d["uid"]: d for name, d in docs if name == "descriptor"}
    primary = {u for u, d in descriptors.items() if d["name"] == "primary"}
    monitor = {  # the readback's own stream (monitor_during: "rot_monitor", key "rot")
        u: next(iter(d["data_keys"]))
        for u, d in descriptors.items()
        if d["name"].endswith("_monitor")
    }
    images = sorted(
        (e["seq_num"], e["time"]) for n, e in docs if n == "event" and e["descriptor"] in primary
    )
    readback = sorted(
        (e["time"], e["data"][monitor[e["descriptor"]]])
        for n, e in docs
        if n == "event" and e["descriptor"] in monitor
    )
    assert len(images) == 10 and len(readback) >= 20, (len(images), len(readback))
    t_img = np.array([t for _seq, t in images])
    t_rb, v_rb = np.array(readback).T
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()] == b"NXmx"
        axes = entry["sample/transformations"]
        omega, omega_end = axes["rotation"][()], axes["rotation_end"][()]
        assert omega.shape == (10,) == entry["data/data"].shape[:1]
        assert axes["rotation_increment_set"][()] == pytest.approx(1.0, abs=0.1)
        assert axes["rotation"].attrs["transformation_type"] == "rotation"
    # at 3.3 deg/s, 0.03 deg is 9 ms: a monitor's time against its PV's own stamp
    np.testing.assert_allclose(omega, np.interp(t_img - EXPOSURE, t_rb, v_rb), atol=0.03)
    np.testing.assert_allclose(omega_end, np.interp(t_img, t_rb, v_rb), atol=0.03)


@pytest.mark.timeout(400)
def test_runs_from_kafka_give_nxtomo_and_nxmx_files_the_catalog_finds(
    log_dir: Path, kafka: str, tmp_path: Path
) -> None:
    doc_topic, event_topic = f"docs-{secrets.token_hex(4)}", f"files-{secrets.token_hex(4)}"
    status_topic = f"status-{secrets.token_hex(4)}"
    config = _config(tmp_path, event_topic, status_topic=status_topic)
    data, state = tmp_path / "data", tmp_path / "state"
    devices = Devices(tmp_path / "frames")
    publisher = _publisher(kafka, doc_topic)
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    api_key = secrets.token_hex(16)
    with (
        consumer(log_dir, kafka, config, doc_topic, state, data) as proc,
        catalog_procs.catalog_consumer(log_dir, kafka, event_topic, catalog, [data]),
        catalog_procs.catalog_server(log_dir, catalog, [data], api_key) as url,
    ):
        tomo_docs = run(
            devices, tomo(devices, 2, 3, ANGLES, experiment_id="p42", sample="Ti"), publisher
        )
        mx_docs = run(
            devices, mx(devices, 0.0, 10.0, 10, experiment_id="mx7", sample="lyso"), publisher
        )
        events = _events(kafka, event_topic, 2)
        tiled = Tiled(url, api_key)
        for exp in ("p42", "mx7"):
            procs.wait_until(
                lambda exp=exp: len(tiled.search(("experiment_id", "eq", exp))) == 1,
                60,
                f"{exp} in the catalog",
                proc,
            )
        # found by the run's uid too, as a Bluesky run
        (record,) = tiled.search(("run_uid", "eq", _uid(mx_docs))).values()
        assert record["acquired_from"] == "bluesky" and record["experiment_id"] == "mx7"
    status = StatusTopic(kafka, status_topic)  # each file's wrdn, as the PV path's
    try:
        procs.wait_until(lambda: len(status.of("wrdn")) >= 2, 60, "two wrdn")
        finished = {w.file_name: w for w in status.of("wrdn")}
    finally:
        status.close()
    assert set(finished) == {e["file_path"] for e in events}
    for event in events:
        wrdn = finished[event["file_path"]]
        assert not wrdn.error_encountered and wrdn.job_id == event["experiment_id"]
        assert json.loads(wrdn.metadata)["event_id"] == event["event_id"]
    by_run = {e["run_uid"]: e for e in events}
    assert set(by_run) == {_uid(tomo_docs), _uid(mx_docs)}
    for event in events:
        assert event["origin"] == "bluesky"
        assert event["ended_by"] == "bluesky stop (success)"
        report = event["validation"]
        assert report["validators"] == ["assonant", "pynxtools", "nexusformat"]
        assert report["errors"] == len(report["first_errors"])
        uneven = _uneven_sweep(Path(event["file_path"]))
        for finding in report["first_errors"]:  # as the PV path's: none but known false ones
            if "step is not constant" in finding:  # said when, and only when, it is so
                assert uneven, report
                continue
            assert finding.startswith("nexusformat"), report
            assert any(k in finding for k in NEXUSFORMAT_KNOWN), report
        assert not uneven or any("step is not constant" in f for f in report["first_errors"])
    tomo_file = Path(by_run[_uid(tomo_docs)]["file_path"])
    mx_file = Path(by_run[_uid(mx_docs)]["file_path"])
    assert by_run[_uid(tomo_docs)]["experiment_id"] == "p42"
    _check_tomo(tomo_file, tmp_path / "frames")
    _check_mx(mx_file, mx_docs)
    # the same documents, in process: the same file
    cb = NexusCallback(
        config,
        state_dir=tmp_path / "cb-state",
        data_dir=str(tmp_path / "cb-data"),
        send=False,
    )
    for name, doc in tomo_docs + mx_docs:
        cb(name, doc)
    assert [w.path.name for w in cb.written] == [tomo_file.name, mx_file.name]
    for ours, theirs in zip(cb.written, (tomo_file, mx_file), strict=True):
        values = _values(theirs)
        assert len(values) > 80  # every field, the frames' virtual datasets included
        assert _values(ours.path) == values


def _made(tmp_path: Path, plan: Any) -> list[Doc]:
    """The documents of a run made here (not published)."""
    devices = Devices(tmp_path / "frames")
    return run(devices, plan(devices))


@pytest.mark.timeout(300)
def test_consumer_killed_mid_run_then_restarted_writes_one_file_and_one_event(
    log_dir: Path, kafka: str, tmp_path: Path
) -> None:
    docs = _made(tmp_path, lambda d: tomo(d, 2, 3, ANGLES, experiment_id="k9", sample="Ti"))
    uid, half = _uid(docs), len(docs) // 2
    doc_topic, event_topic = f"docs-{secrets.token_hex(4)}", f"files-{secrets.token_hex(4)}"
    config = _config(tmp_path, event_topic, validate=False)
    data, state = tmp_path / "data", tmp_path / "state"
    publisher = _publisher(kafka, doc_topic)
    journal = RunJournal(state)
    with consumer(log_dir, kafka, config, doc_topic, state, data) as proc:
        for name, doc in docs[:half]:
            publisher(name, doc)
        publisher.flush()
        procs.wait_until(
            lambda: len(list(journal.documents(uid))) >= half, 60, "half the run journaled", proc
        )
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)
    for name, doc in docs[half:]:
        publisher(name, doc)
    publisher.flush()
    with consumer(log_dir, kafka, config, doc_topic, state, data) as proc:
        events = _events(kafka, event_topic, 1)
        procs.wait_until(lambda: "files=1" in proc.tail(50), 30, "the file said", proc)
        assert "taken=" in proc.tail(50)
    assert len(events) == 1 and events[0]["run_uid"] == uid
    assert [p.name for p in data.iterdir()] == [Path(events[0]["file_path"]).name]
    # nothing missing: the file is the one the whole run gives in process
    cb = NexusCallback(
        config, state_dir=tmp_path / "cb-state", data_dir=str(tmp_path / "cb"), send=False
    )
    for name, doc in docs:
        cb(name, doc)
    assert _values(Path(events[0]["file_path"])) == _values(cb.written[0].path)
    assert journal.in_progress() == []


@pytest.mark.timeout(300)
def test_a_run_without_stop_closes_at_its_timeout_and_malformed_documents_are_named(
    log_dir: Path, kafka: str, tmp_path: Path
) -> None:
    docs = _made(tmp_path, lambda d: tomo(d, 1, 1, ANGLES[:3], experiment_id="t1", sample="Ti"))
    uid = _uid(docs)
    kept = [(n, d) for n, d in docs if n != "stop"]
    events_in = [d for n, d in kept if n == "event"]
    bad = {k: v for k, v in events_in[-1].items() if k != "seq_num"} | {"uid": "bad-event"}
    doc_topic, event_topic = f"docs-{secrets.token_hex(4)}", f"files-{secrets.token_hex(4)}"
    config = _config(tmp_path, event_topic, validate=False)
    data, state = tmp_path / "data", tmp_path / "state"
    with consumer(log_dir, kafka, config, doc_topic, state, data, run_timeout=3) as proc:
        publisher = _publisher(kafka, doc_topic)
        for name, doc in kept[:4]:
            publisher(name, doc)
        publisher("event", bad)  # no seq_num
        publisher.flush()
        raw = confluent_kafka.Producer({"bootstrap.servers": kafka})
        raw.produce(doc_topic, value=b"\x93not msgpack", key=b"x")
        raw.flush(10)
        for name, doc in kept[4:]:
            publisher(name, doc)
        publisher.flush()
        events = _events(kafka, event_topic, 1)
        procs.wait_until(lambda: "malformed=2" in proc.tail(100), 30, "two malformed", proc)
        log = proc.tail(200)
    assert f"{doc_topic}[" in log and "event document: seq_num is missing" in log
    assert "message document: (value) is not" in log
    (event,) = events
    assert event["ended_by"] == "timeout" and event["run_uid"] == uid
    with h5py.File(event["file_path"], "r") as f:
        note = f["during_exposure/run_incomplete/description"][()].decode()
        assert uid in note and "timeout" in note
        rotation = f["during_exposure/sample/rotation"]
        assert rotation["value"][-1] != rotation["value"][-1]  # NaN: the gap is marked
        assert f["during_exposure/instrument/detector/data"].shape[0] == 5  # 1 + 1 + 3
