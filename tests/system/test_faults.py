"""Faults with real processes: kill -9 and restarts, a broker outage, a full disk, racing
commands, a reader beside the validators. Each case asserts on the file and on the events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.events.kafka import consume_all
from assonant_ioc.lifecycle.journal import Journal
from assonant_ioc.nexus.provenance import provenance
from assonant_ioc.sim import procs
from tests.system.conftest import REPO, kill9, quiet_service, start_service

FAST_JOURNAL = "journal_flush_s: 0.2\n" + (REPO / "configs" / "sim.yaml").read_text()


def _wait(check: Any, timeout: float = 20, what: str = "condition") -> None:
    procs.wait_until(check, timeout, what)


def _at(client: Any, motor: str, position: float) -> bool:
    """The simulated motor has arrived (its readback at the target, done moving)."""
    return bool(
        abs(client.get(f"{motor}:RBV") - position) < 1e-6 and client.get(f"{motor}:DMOV") == 1
    )


def _record_x_moving(client: Any, P: str, BL: str) -> None:
    """The sample's x at 0, the pre snapshot, recording started, x sent to 5 mm (5 mm/s:
    moving for a second)."""
    client.put(f"{BL}smp:x:VAL", 0.0)
    _wait(lambda: _at(client, f"{BL}smp:x", 0.0))
    client.put(f"{P}Snapshot:Pre", 1)
    client.put(f"{P}Record:During", 1)
    client.put(f"{BL}smp:x:VAL", 5.0)


@contextlib.contextmanager
def _watching_x(client: Any, BL: str) -> Iterator[list[tuple[float, float]]]:
    """The sample's x at 0, then every update of its readback a CA client sees: (value,
    IOC time)."""
    from caproto.threading.client import Context

    client.put(f"{BL}smp:x:VAL", 0.0)
    _wait(lambda: _at(client, f"{BL}smp:x", 0.0))
    seen: list[tuple[float, float]] = []
    ctx = Context()
    try:
        (pv,) = ctx.get_pvs(f"{BL}smp:x:RBV")
        pv.wait_for_connection(timeout=10)
        sub = pv.subscribe(data_type="time")

        def update(_sub: Any, r: Any) -> None:  # kept: caproto holds callbacks weakly
            seen.append((float(r.data[0]), r.metadata.timestamp))

        sub.add_callback(update)
        yield seen
        sub.clear()
    finally:
        ctx.disconnect()


def _state_dir(tmp_path: Path) -> Path:
    return tmp_path / "autosave.state"


def _entry_names(path: Path) -> set[str]:
    with h5py.File(path, "r") as f:
        return set(f)


def test_kill_after_pre_then_restart_finishes_the_experiment(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    BL = sim[0]
    args = ["--no-kafka", "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _data_dir, proc):
        client.put(f"{P}ExperimentId", "killed-after-pre")
        client.put(f"{BL}mono:energy:VAL", 11.5)
        _wait(lambda: _at(client, f"{BL}mono:energy", 11.5))
        energy = client.get(f"{BL}mono:energy:RBV")
        client.put(f"{P}Snapshot:Pre", 1)
        kill9(proc)
    with start_service(log_dir, tmp_path, sim, args, prefix=P) as (client, _, _dd, _proc):
        assert client.get(f"{P}State") == "Collecting"
        assert "recovered experiment killed-after-pre" in client.get(f"{P}LastError")
        client.put(f"{BL}mono:energy:VAL", 12.5)
        _wait(lambda: _at(client, f"{BL}mono:energy", 12.5))
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
        with h5py.File(path, "r") as f:
            assert set(f) == {"pre_exposure", "post_exposure"}
            # the service's own monitor may be one 0.1 keV motor step behind the test's client
            pre = f["pre_exposure/instrument/monochromator/energy"][()]
            post = f["post_exposure/instrument/monochromator/energy"][()]
            assert abs(pre - energy) <= 0.1 + 1e-9 and abs(post - 12.5) <= 0.1 + 1e-9
            assert post - pre > 0.7
            assert f["pre_exposure/experiment_identifier"][()].decode() == "killed-after-pre"
        assert client.get(f"{P}State") == "Idle"


def test_kill_while_recording_keeps_every_durable_reading_and_marks_the_gap(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    BL = sim[0]
    args = ["--no-kafka", "--no-validate"]
    journal = Journal(_state_dir(tmp_path))
    x_pv = f"{BL}smp:x:RBV"
    with start_service(log_dir, tmp_path, sim, args, config_text=FAST_JOURNAL) as (
        client,
        P,
        _data_dir,
        proc,
    ):
        _record_x_moving(client, P, BL)
        _wait(lambda: client.get(x_pv) > 1.0)
        seen = client.get(x_pv)  # a value the beamline sent while recording

        def durable() -> bool:
            values = [r.value for r in journal.read_during()[0].get(x_pv, [])]
            return any(v is not None and abs(v - seen) < 1e-9 for v in values)

        _wait(durable, 10, "the seen value durable in the journal")
        before_kill = time.time()
        kill9(proc)
    killed_at = time.time()
    last_durable = journal.last_durable()  # the journal's own record of its last batch
    assert last_durable is not None
    with start_service(log_dir, tmp_path, sim, args, prefix=P, config_text=FAST_JOURNAL) as (
        client,
        _,
        _data_dir,
        _proc,
    ):
        assert client.get(f"{P}State") == "Collecting"
        error = client.get(f"{P}LastError")
        assert "recording closed at its last durable point" in error
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    with h5py.File(path, "r") as f:
        assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}
        during = f["during_exposure"]
        log_x = during["sample/x"]
        values = log_x["value"][()]
        connected = provenance(log_x)["connected"]
        assert np.any(np.isclose(values, seen, atol=1e-9))  # captured before the last durable point
        assert not connected[-1] and np.isnan(values[-1])  # the gap: nothing known from there
        assert provenance(log_x)["alarm_severity"][-1] == 3
        assert bool(np.all(connected[:-1]))
        note = during["service_interruption/description"][()].decode()
        assert "The service was down from" in note
        start = during["start_time"][()].decode()
        end = during["end_time"][()].decode()
        assert start < end
        t = log_x["time"][()]
        assert np.all(np.diff(t) >= 0)
        # the gap starts at the journal's last durable point (UTC, to the millisecond), which
        # the journal made no more than its flush period (0.2 s here) before the kill, plus
        # what a loaded machine delays a thread
        zero = datetime.fromisoformat(log_x["time"].attrs["start"]).timestamp()
        assert abs(zero + t[-1] - last_durable) < 1e-3
        assert before_kill - 0.2 - 1.0 < last_durable <= killed_at


STAGING_OFTEN = "staging_every_s: 0.2\n" + FAST_JOURNAL


def _points(log_group: Any) -> list[tuple[float, float]]:
    """An NXlog's (value, POSIX time) points."""
    zero = datetime.fromisoformat(log_group["time"].attrs["start"]).timestamp()
    values, times = log_group["value"][()], log_group["time"][()]
    return [(float(v), zero + float(t)) for v, t in zip(values, times, strict=True)]


def test_a_recording_staged_while_it_ran_holds_every_update_the_beamline_sent(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """The arrays built while recording (a round every 0.2 s here) are the file's: every
    update a CA client saw between the start and the stop is in it, in order, once."""
    BL = sim[0]
    args = ["--no-kafka", "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args, config_text=STAGING_OFTEN) as (
        client,
        P,
        _data_dir,
        _proc,
    ):
        with _watching_x(client, BL) as seen:
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}Record:During", 1)
            client.put(f"{BL}smp:x:VAL", 5.0)  # 5 mm/s: a second of updates
            _wait(lambda: _at(client, f"{BL}smp:x", 5.0), 30, "the motor at 5 mm")
            client.put(f"{P}Record:During", 0)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    with h5py.File(path, "r") as f:
        during = f["during_exposure"]
        start = datetime.fromisoformat(during["start_time"][()].decode()).timestamp()
        end = datetime.fromisoformat(during["end_time"][()].decode()).timestamp()
        log_x = during["sample/x"]
        assert log_x["value"].maxshape == (None,)  # the staged dataset itself
        recorded = [p for p in _points(log_x) if p[1] >= start]
        sent = [p for p in seen if start <= p[1] <= end]
        assert len(sent) >= 5 and sent[-1][0] == 5.0
        assert [v for v, _ in recorded] == [v for v, _ in sent]
        assert np.allclose([t for _, t in recorded], [t for _, t in sent], atol=1e-6, rtol=0)
        assert bool(np.all(provenance(log_x)["connected"]))


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str | None], Path]:
    """``hold(point)``: a service started after it holds its work at ``point`` (the test
    hook ``ASSONANT_TEST_HOLD``), the returned file made when it is there, for a kill -9;
    ``hold(None)``: the services started after it hold nothing."""
    held = tmp_path / "held"

    def at(point: str | None) -> Path:
        if point is None:
            monkeypatch.delenv("ASSONANT_TEST_HOLD")
        else:
            monkeypatch.setenv("ASSONANT_TEST_HOLD", f"{point}:{held}")
        return held

    return at


def test_kill_with_the_staging_file_half_written_builds_the_file_from_the_journal(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, hold: Callable[[str | None], Path]
) -> None:
    """kill -9 while the worker is half way through a round of staging (held after writing
    its arrays, before the staging file is flushed): the restart never reads that file; the
    file is built from the journal, every durable reading in it, then the gap."""
    BL = sim[0]
    args = ["--no-kafka", "--no-validate"]
    x_pv = f"{BL}smp:x:RBV"
    held = hold("staged")
    with start_service(log_dir, tmp_path, sim, args, config_text=STAGING_OFTEN) as (
        client,
        P,
        _data_dir,
        proc,
    ):
        _record_x_moving(client, P, BL)
        _wait(held.exists, 60, "a round of staging held before its flush")
        assert (_state_dir(tmp_path) / "experiment" / "during.h5").stat().st_size > 0
        kill9(proc)
    hold(None)
    durable = Journal(_state_dir(tmp_path)).read_during()[0][x_pv]
    assert len(durable) >= 2
    with start_service(log_dir, tmp_path, sim, args, prefix=P, config_text=STAGING_OFTEN) as (
        client,
        _,
        _data_dir,
        _proc,
    ):
        assert "recording closed at its last durable point" in client.get(f"{P}LastError")
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    with h5py.File(path, "r") as f:
        log_x = f["during_exposure/sample/x"]
        points = _points(log_x)
        assert [v for v, _ in points[:-1]] == [r.value for r in durable]
        assert np.allclose([t for _, t in points[:-1]], [r.timestamp for r in durable], atol=1e-6)
        assert np.isnan(points[-1][0]) and not provenance(log_x)["connected"][-1]


@pytest.mark.parametrize("point", ["built", "queued", "published"])
def test_kill_at_each_point_of_the_write_leaves_one_complete_file_and_one_event(
    point: str, sim: tuple[str, int], log_dir: Path, tmp_path: Path, kafka: str, hold: Any
) -> None:
    """kill -9 held at each point of EndOfExperiment (not by chance), then a restart: the file
    whole under its partial name but no event queued is removed and the experiment waits in
    Fault for EndOfExperiment again; with its event queued the partial file is published;
    already published, what is left is tidied. Each way: one complete file, one event."""
    topic = f"assonant.faults.{procs.new_prefix('w').strip(':')}"
    args = ["--kafka-bootstrap", kafka, "--no-validate"]
    held = hold(point)
    with start_service(log_dir, tmp_path, sim, args, topic=topic) as (client, P, data_dir, proc):
        client.put(f"{P}ExperimentId", f"killed-{point}")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        client.put(f"{P}Record:During", 0)
        client.put(f"{P}EndOfExperiment", 1, wait=False)
        _wait(held.exists, 60, f"the write held at {point!r}")
        partial, final = list(data_dir.glob(".*.partial")), list(data_dir.glob("*.nxs"))
        if point == "published":
            assert partial == [] and len(final) == 1
        else:  # the file is whole, under its partial name only
            assert len(partial) == 1 and final == []
            assert _entry_names(partial[0]) == {"pre_exposure", "during_exposure"}
        kill9(proc)
    hold(None)
    with start_service(log_dir, tmp_path, sim, args, topic=topic, prefix=P) as (
        client,
        _,
        data_dir,
        _proc,
    ):
        assert not list(data_dir.glob(".*.partial"))  # removed or published
        if point == "built":  # no event was queued: the write is done again
            assert client.get(f"{P}State") == "Fault"
            assert "interrupted by a stop" in client.get(f"{P}LastError")
            assert not list(data_dir.glob("*.nxs"))
            client.put(f"{P}EndOfExperiment", 1)
        else:
            assert "the write interrupted by a stop was finished" in client.get(f"{P}LastError")
        assert client.get(f"{P}State") == "Idle"
        (written,) = data_dir.glob("*.nxs")
        assert _entry_names(written) == {"pre_exposure", "during_exposure"}
        _wait(lambda: client.get(f"{P}EventsPending") == 0, 30, "the event sent")
        events = _consume(kafka, topic, 1)
        assert [e["file_path"] for e in events] == [str(written)]
        with h5py.File(written, "r") as f:
            assert f["during_exposure/experiment_identifier"].asstr()[()] == f"killed-{point}"


def _consume(bootstrap: str, topic: str, at_least: int) -> list[dict[str, Any]]:
    return asyncio.run(consume_all(bootstrap, topic, at_least))


def test_a_stop_between_the_brokers_ack_and_the_outbox_removal_repeats_one_event_id(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, kafka: str, hold: Any
) -> None:
    """The README's duplicate window, held open: kill -9 after the broker acknowledged the
    event and before it left the outbox. The restart sends it again with the same event_id;
    the catalog's consumer registers the file once and counts the repeat as a duplicate."""
    from assonant_ioc.sim import catalog_procs

    topic = f"assonant.faults.{procs.new_prefix('d').strip(':')}"
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    args = ["--kafka-bootstrap", kafka, "--no-validate"]
    with catalog_procs.catalog_consumer(log_dir, kafka, topic, catalog, [tmp_path]) as (
        consumer,
        status,
    ):
        held = hold("sent")
        with start_service(log_dir, tmp_path, sim, args, topic=topic) as (client, P, _d, proc):
            client.put(f"{P}ExperimentId", "twice")
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}EndOfExperiment", 1)
            written = client.get(f"{P}LastFile")
            _wait(held.exists, 30, "the event acknowledged, still in the outbox")
            kill9(proc)
        hold(None)
        with start_service(log_dir, tmp_path, sim, args, topic=topic, prefix=P) as (
            client,
            _,
            _d,
            _proc,
        ):
            _wait(lambda: client.get(f"{P}EventsPending") == 0, 30, "the event sent again")
        events = _consume(kafka, topic, 2)
        assert [e["file_path"] for e in events] == [written, written]
        assert events[0]["event_id"] == events[1]["event_id"]
        procs.wait_until(
            lambda: catalog_procs.consumer_status(status)["duplicate"] == 1, 30, "the repeat"
        )
        counts = catalog_procs.consumer_status(status)
        assert counts["registered"] == 1 and counts["updated"] == 0, counts
        assert consumer.popen.poll() is None


def test_broker_down_three_experiments_sigterm_sigkill_each_event_once(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    port = procs.free_port()  # the broker comes up only at the end
    args = ["--kafka-bootstrap", f"127.0.0.1:{port}", "--no-validate"]
    written = []
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _data_dir, proc):
        for n in range(3):
            client.put(f"{P}ExperimentId", f"outage-{n}")
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}EndOfExperiment", 1)
            written.append(client.get(f"{P}LastFile"))
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(20)
        log_text = proc.log_path.read_text()
        assert "stopping with 3 event(s) not yet delivered" in log_text
    with start_service(log_dir, tmp_path, sim, args, prefix=P) as (client, _, _data_dir, proc):
        assert client.get(f"{P}KafkaConnected") == "No"
        _wait(lambda: client.get(f"{P}EventsPending") == 3, 10, "3 events kept through SIGTERM")
        kill9(proc)
    with procs.broker(log_dir, port) as bootstrap:
        with start_service(log_dir, tmp_path, sim, args, prefix=P) as (client, _, _dd, _proc):
            _wait(lambda: client.get(f"{P}EventsPending") == 0, 40, "the events delivered")
            events = _consume(bootstrap, "assonant.files", 3)
            _wait(lambda: client.get(f"{P}KafkaConnected") == "Yes", 10, "KafkaConnected")
    counts = Counter(e["event_id"] for e in events)
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    assert [e["file_path"] for e in events] == written  # in order
    assert [e["experiment_id"] for e in events] == ["outage-0", "outage-1", "outage-2"]


@contextlib.contextmanager
def _small_tmpfs(where: Path, free_kb: int) -> Iterator[Path]:
    """A tmpfs with about ``free_kb`` kB free; skips where mounting is not allowed."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        stat = os.statvfs(where)
        fill = stat.f_bavail * stat.f_frsize - free_kb * 1024
        (where / "filler").write_bytes(b"\0" * fill)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_is_a_fault_then_a_new_data_dir_writes_the_complete_file(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    args = ["--no-kafka", "--no-validate"]
    with _small_tmpfs(tmp_path / "small", 24) as small:
        with start_service(log_dir, tmp_path, sim, args) as (client, P, data_dir, proc):
            # enough readings that the file cannot fit in 24 kB
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}Record:During", 1)
            _wait(lambda: client.get(f"{P}UpdateRate") > 0)
            client.put(f"{P}Record:During", 0)
            client.put(f"{P}Snapshot:Post", 1)
            client.put(f"{P}DataDir", str(small))
            with pytest.raises(procs.PutFailed):  # the put fails
                client.put(f"{P}EndOfExperiment", 1)
            assert client.get(f"{P}State") == "Fault"
            error = client.get(f"{P}LastError")
            assert "write failed, experiment kept" in error
            assert "cannot write" in error and "No space left on device" in error
            assert not [p for p in small.iterdir() if p.name != "filler"]
            said = proc.log_path.read_text()  # one line for the failed write, no traceback
            assert said.count("write failed: cannot write") == 1, said[-3000:]
            assert "Traceback" not in said and "Exception ignored" not in said
            client.put(f"{P}DataDir", str(data_dir))
            client.put(f"{P}EndOfExperiment", 1)
            assert client.get(f"{P}State") == "Idle"
            path = Path(client.get(f"{P}LastFile"))
            assert path.parent == data_dir
            assert _entry_names(path) == {"pre_exposure", "during_exposure", "post_exposure"}


def test_settings_that_make_no_usable_file_name_are_refused_when_written(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, _dd, _proc):
        client.put(f"{P}FileName", "{sample}.nxs")
        with pytest.raises(procs.PutFailed):  # refused
            client.put(f"{P}SampleName", "a/b")
        assert "SampleName refused" in client.get(f"{P}LastError")
        client.put(f"{P}SampleName", "ok")
        client.put(f"{P}FileName", "{experiment_id}")
        with pytest.raises(procs.PutFailed):  # refused
            client.put(f"{P}ExperimentId", "..")
        assert "ExperimentId refused" in client.get(f"{P}LastError")
        client.put(f"{P}ExperimentId", "fine")
        client.put(f"{P}SampleName", "a/b")  # fine now: the template does not use it
        with pytest.raises(procs.PutFailed):  # refused: the sample would make "a/b.nxs"
            client.put(f"{P}FileName", "{sample}.nxs")
        assert "FileName refused" in client.get(f"{P}LastError")
        assert client.get(f"{P}State") == "Idle"
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        assert Path(client.get(f"{P}LastFile")).name == "fine"


PUT_WHEN_GO = """
import os, sys, time
from assonant_ioc.sim import procs
pv, value, go, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
try:
    procs.ca_put(pv, value, wait=True, timeout=60)
    print("ok")
except Exception as err:
    print("refused:", err)
"""


def _together(client: Any, puts: list[tuple[str, int]], go: Path) -> list[str]:
    """Each put from its own client process, all released at once; returns what each said."""
    go.unlink(missing_ok=True)
    ready = [go.with_name(f"{go.name}.ready{i}") for i in range(len(puts))]
    for r in ready:
        r.unlink(missing_ok=True)
    env = os.environ | client.env
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PUT_WHEN_GO, pv, str(value), str(go), str(r)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for (pv, value), r in zip(puts, ready, strict=True)
    ]
    _wait(lambda: all(r.exists() for r in ready), 30, "both clients started")
    go.touch()
    return [c.communicate(timeout=60)[0].strip() for c in children]


def test_record_stop_and_end_of_experiment_at_once_never_lose_the_recording(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with quiet_service(log_dir, tmp_path, sim) as (client, P, _data_dir, _proc):
        for n in range(20):
            client.put(f"{P}Record:During", 1)  # no Pre: the recording starts the experiment
            said = _together(
                client, [(f"{P}Record:During", 0), (f"{P}EndOfExperiment", 1)], tmp_path / "go"
            )
            assert said[0] == "ok", (n, said)
            if said[1] != "ok":  # EndOfExperiment came first: refused, the recording went on
                assert said[1].startswith("refused"), (n, said)
                assert "stop Record:During first" in client.get(f"{P}LastError"), n
                client.put(f"{P}EndOfExperiment", 1)
            assert client.get(f"{P}State") == "Idle"
            path = Path(client.get(f"{P}LastFile"))
            assert "during_exposure" in _entry_names(path), n
            assert client.get(f"{P}FilesWritten") == n + 1


READER = """
import os, sys, time, h5py
path, stop, ready = sys.argv[1], sys.argv[2], sys.argv[3]
open(ready, "w").close()
while not os.path.exists(path) and not os.path.exists(stop):
    time.sleep(0.001)
opens = fails = 0
while not os.path.exists(stop):
    try:
        with h5py.File(path, "r") as f:
            list(f)
        opens += 1
    except OSError as err:
        fails += 1
        print("fail:", err, flush=True)
print(f"opens={opens} fails={fails}", flush=True)
"""


def test_a_reader_opening_the_new_file_in_a_loop_never_fails(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, data_dir, _proc):
        client.put(f"{P}ExperimentId", "read-me")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        client.put(f"{P}Record:During", 0)
        path = data_dir / "SIM_read-me_00001.nxs"  # the config's template, counter 1
        env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
        stop, ready = tmp_path / "stop-reading", tmp_path / "reader-ready"
        reader = subprocess.Popen(  # another program, with HDF5's default file locking
            [sys.executable, "-c", READER, str(path), str(stop), str(ready)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            _wait(ready.exists, 30, "the reader")
            client.put(f"{P}EndOfExperiment", 1)
            assert client.get(f"{P}LastFile") == str(path)
            # the validators run after the put: read until they have finished
            _wait(lambda: path.name in client.get(f"{P}Validation"), 60, "validation")
        finally:
            stop.touch()
            out = reader.communicate(timeout=30)[0]
        assert "fail:" not in out, out
        assert "fails=0" in out and "opens=0 " not in out, out


def test_a_settings_file_cut_by_a_power_failure_is_restored_from_its_backup(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """Autosave keeps the last good settings as ``.savB``: the IOC started on an empty
    settings file (a write a power cut interrupted) restores them, and says so."""
    prefix = procs.new_prefix("AS")
    args = ["--no-kafka", "--no-validate"]
    saved = tmp_path / "autosave.json"
    with start_service(log_dir, tmp_path, sim, args, prefix=prefix) as (client, P, _, _):
        client.put(f"{P}ExperimentId", "proposal-7")
        client.put(f"{P}SampleName", "Ti-6Al-4V")
        client.put(f"{P}ExperimentId", "proposal-8")  # the last save: the backup is before it
        procs.wait_until(lambda: "proposal-8" in saved.read_text(), 10, "the id saved")
    saved.write_bytes(b"")
    with start_service(log_dir, tmp_path, sim, args, prefix=prefix) as (client, P, _, proc):
        assert client.get(f"{P}ExperimentId") == "proposal-7"
        assert client.get(f"{P}SampleName") == "Ti-6Al-4V"
        assert "restored from its backup" in proc.tail(200)


BEFORE_START = "record: {before_start_s: 5}\n" + (REPO / "configs" / "sim.yaml").read_text()


def test_a_recording_starts_with_the_updates_of_the_seconds_before_it(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """``record: {before_start_s: 5}``: the during entry begins with the sample's x as a CA
    client saw it move in the 5 s before Record:During 1, each update equal, in order."""
    BL = sim[0]
    args = ["--no-kafka", "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args, config_text=BEFORE_START) as (
        client,
        P,
        _data_dir,
        _proc,
    ):
        with _watching_x(client, BL) as seen:
            client.put(f"{BL}smp:x:VAL", 10.0)  # 5 mm/s: two seconds of updates
            _wait(lambda: client.get(f"{BL}smp:x:RBV") > 6.0, 20, "x past 6 mm")
            asked = time.time()
            client.put(f"{P}Record:During", 1)
            _wait(lambda: _at(client, f"{BL}smp:x", 10.0), 30, "x at 10 mm")
            client.put(f"{P}Record:During", 0)
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    with h5py.File(path, "r") as f:
        during = f["during_exposure"]
        start = datetime.fromisoformat(during["start_time"][()].decode()).timestamp()
        points = _points(during["sample/x"])
        assert "5 s before Record:During 1" in during["before_start/description"][()].decode()
    assert asked <= start
    before = [p for p in points if p[1] < start]
    ca_before = [p for p in seen if start - 5.0 + 0.1 < p[1] < start]
    assert len(ca_before) >= 5, seen  # x moved for more than a second before the start
    # every update the CA client saw in the 5 s before the start, equal, in order (the ring
    # keeps by arrival, so its edge 5 s back may hold one more)
    assert np.allclose(before[-len(ca_before) :], ca_before, rtol=0, atol=1e-6)
    assert before[0][1] >= start - 5.0 - 0.5
    after = [p for p in points if p[1] >= start]
    ca_after = [p for p in seen if p[1] >= start]
    assert len(after) == len(ca_after) >= 5
    assert np.allclose(after, ca_after, rtol=0, atol=1e-6)
