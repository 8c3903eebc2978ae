"""A full state directory is loud and loses nothing: a real tmpfs that fills up while the
service records the camera's frame counter (10 Hz, +1 a frame, so a lost update shows as a
step of 2), then room is made while recording, or only after the stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.events.kafka import consume_event
from assonant_ioc.sim import procs
from tests.system.conftest import REPO, start_service


@contextlib.contextmanager
def _tmpfs(where: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb``; skips (with the reason) where mounting is not allowed."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def _service_on_tmpfs(
    sim: tuple[str, int],
    kafka: str,
    log_dir: Path,
    tmp_path: Path,
    settings: str,
    size_kb: int,
    experiment: str,
    sim_yaml: str | None = None,
) -> Iterator[tuple[Any, str, Any, Path, str]]:
    """The service (the simulated beamline's config, ``sim_yaml`` if given, after
    ``settings``) with its state directory on a tmpfs of ``size_kb``, ``experiment`` its
    ExperimentId; yields (client, prefix,
    process, the state directory, the event topic)."""
    topic = f"assonant.test.{procs.new_prefix('t').strip(':')}"
    config = settings + (sim_yaml or (REPO / "configs" / "sim.yaml").read_text())
    with _tmpfs(tmp_path / "state", size_kb) as state:
        args = ["--kafka-bootstrap", kafka, "--no-validate", "--state-dir", str(state)]
        with start_service(log_dir, tmp_path, sim, args, topic, config_text=config) as (
            client,
            P,
            _data,
            proc,
        ):
            client.put(f"{P}ExperimentId", experiment)
            yield client, P, proc, state, topic


def _fill(where: Path, leave: int = 0) -> Path:
    """Fill the file system of ``where`` to the last byte (but ``leave`` bytes); returns the
    filler (remove it to make room)."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                fh.write(block)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0")
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _counter_log(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The recorded frame counter (values, times) and the entry's interruption note."""
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        log = entry["instrument/detector/frame_count"]
        note = entry.get("service_interruption/description")
        text = note.asstr()[()] if note is not None else ""
        return log["value"][()], log["time"][()], text


def _start(client: Any, BL: str, P: str, state: Path) -> None:
    client.put(f"{P}Snapshot:Pre", 1)
    client.put(f"{P}Record:During", 1)
    client.put(f"{BL}det:Acquire", 1)  # the counter moves at 10 Hz
    _fill(state)
    procs.wait_until(lambda: client.get(f"{P}StateDirOK") == "No", 20, "StateDirOK No")
    assert client.get(f"{P}State") == "Recording"  # the recording goes on
    assert "cannot take the experiment" in client.get(f"{P}LastError")


def _more_frames(client: Any, BL: str, n: int) -> None:
    counted = client.get(f"{BL}det:ArrayCounter_RBV")
    procs.wait_until(
        lambda: client.get(f"{BL}det:ArrayCounter_RBV") >= counted + n, 20, f"{n} frames"
    )


def _end(client: Any, BL: str, P: str) -> Path:
    """Stop recording and the camera, the post snapshot, EndOfExperiment: the file."""
    client.put(f"{P}Record:During", 0)
    client.put(f"{BL}det:Acquire", 0)
    client.put(f"{P}Snapshot:Post", 1)
    client.put(f"{P}EndOfExperiment", 1)
    return Path(client.get(f"{P}LastFile"))


def _frames_dropped(client: Any, BL: str, P: str) -> None:
    """The memory for 40 readings full, then frames taken while nothing can be kept."""
    procs.wait_until(lambda: client.get(f"{P}NotDurable") >= 40, 30, "memory full")
    _more_frames(client, BL, 5)


def test_room_made_while_recording_loses_nothing(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    BL = sim[0]
    settings = "journal_flush_s: 0.2\n"
    with _service_on_tmpfs(
        sim, kafka, log_dir, tmp_path, settings, 512, "room-while-recording"
    ) as svc:
        client, P, proc, state, topic = svc
        _start(client, BL, P, state)
        held = client.get(f"{P}NotDurable")
        procs.wait_until(lambda: client.get(f"{P}NotDurable") > held, 20, "more held")
        (state / "filler").unlink()  # room again
        procs.wait_until(lambda: client.get(f"{P}StateDirOK") == "Yes", 20, "StateDirOK")
        assert client.get(f"{P}NotDurable") == 0
        _more_frames(client, BL, 3)
        path = _end(client, BL, P)
        event = asyncio.run(consume_event(kafka, topic, "room-while-recording", timeout=60))
        assert proc.popen.poll() is None
    values, _times, note = _counter_log(path)
    counts = values[np.isfinite(values)]
    assert len(counts) >= 10
    assert np.diff(counts).tolist() == [1] * (len(counts) - 1)  # every frame, none lost
    assert np.isfinite(values).all() and note == ""
    assert event["readings_dropped"] == 0


def test_room_made_after_the_stop_marks_the_gap_and_keeps_the_rest(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """With memory for 40 readings only: the updates beyond are dropped, the gap is marked in
    the file and counted in the event; the stop, the post snapshot and everything held are
    kept, and EndOfExperiment waits (refused, with the reason) until there is room."""
    BL = sim[0]
    settings = "journal_flush_s: 0.2\njournal_max_pending: 40\n"
    with _service_on_tmpfs(sim, kafka, log_dir, tmp_path, settings, 512, "room-after-stop") as svc:
        client, P, proc, state, topic = svc
        _start(client, BL, P, state)
        _frames_dropped(client, BL, P)
        client.put(f"{P}Record:During", 0)  # accepted: the batch stays in memory
        client.put(f"{BL}det:Acquire", 0)
        assert client.get(f"{P}State") == "Collecting"
        client.put(f"{P}Snapshot:Post", 1)  # taken, held in memory
        assert client.get(f"{P}StateDirOK") == "No"
        with pytest.raises(procs.PutFailed):
            client.put(f"{P}EndOfExperiment", 1)
        assert "not yet durable" in client.get(f"{P}LastError")
        assert client.get(f"{P}State") == "Collecting"
        (state / "filler").unlink()
        procs.wait_until(lambda: client.get(f"{P}StateDirOK") == "Yes", 20, "StateDirOK")
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
        event = asyncio.run(consume_event(kafka, topic, "room-after-stop", timeout=60))
        assert proc.popen.poll() is None
    values, times, note = _counter_log(path)
    assert "could not take the recording from" in note and "dropped" in note
    assert event["readings_dropped"] > 0
    gap = np.nonzero(~np.isfinite(values))[0]
    assert len(gap) == 1  # one point marked disconnected, where the gap begins
    before, after = values[: gap[0]], values[gap[0] + 1 :]
    assert np.diff(before).tolist() == [1] * (len(before) - 1)  # kept up to the gap
    assert np.diff(after).tolist() == [1] * (len(after) - 1)  # and after it
    assert after.size == 0  # the recording had stopped before there was room again
    assert np.all(np.diff(times) >= 0)
    with h5py.File(path, "r") as f:
        assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}


def test_room_made_after_drops_while_recording_counts_exactly_what_was_lost(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """Memory for 40 readings, then updates dropped, then room while still recording: the
    counter (the only PV recorded during the exposure here, +1 a frame) steps by 1 up to the
    gap and after it, and the event's and the note's dropped count is exactly the frames the
    gap lost."""
    BL = sim[0]
    sim_yaml = (
        (REPO / "configs" / "sim.yaml")
        .read_text()
        .replace("moments: [pre, during, post]", "moments: [pre, post]")
    )
    sim_yaml = sim_yaml.replace(
        'frame_count: {pv: "$(BL)det:ArrayCounter_RBV", moments: [pre, post]}',
        'frame_count: {pv: "$(BL)det:ArrayCounter_RBV", moments: [pre, during, post]}',
    )
    assert sim_yaml.count("during") == 1, "the counter alone is recorded during"
    settings = "journal_flush_s: 0.2\njournal_max_pending: 40\n"
    with _service_on_tmpfs(
        sim, kafka, log_dir, tmp_path, settings, 512, "room-after-drops", sim_yaml
    ) as svc:
        client, P, proc, state, topic = svc
        _start(client, BL, P, state)
        _frames_dropped(client, BL, P)
        (state / "filler").unlink()  # room again, still recording
        procs.wait_until(lambda: client.get(f"{P}StateDirOK") == "Yes", 20, "StateDirOK")
        _more_frames(client, BL, 5)  # recorded after the room came back
        path = _end(client, BL, P)
        event = asyncio.run(consume_event(kafka, topic, "room-after-drops", timeout=60))
        assert proc.popen.poll() is None
    values, _times, note = _counter_log(path)
    gap = np.nonzero(~np.isfinite(values))[0]
    assert len(gap) == 1, values  # one point marked disconnected, where the gap begins
    before, after = values[: gap[0]], values[gap[0] + 1 :]
    assert len(before) >= 40 and len(after) >= 5, (len(before), len(after))
    assert np.diff(before).tolist() == [1] * (len(before) - 1)  # kept up to the gap
    assert np.diff(after).tolist() == [1] * (len(after) - 1)  # and every one after it
    lost = int(after[0] - before[-1] - 1)  # the frames the gap lost
    assert lost >= 5
    assert event["readings_dropped"] == lost, (event["readings_dropped"], lost)
    assert f"{lost} update(s) received in that time were dropped" in note, note


def test_a_full_disk_while_staging_leaves_the_file_to_the_journal_at_the_first_end(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """The staging round fails on the full state directory (libhdf5's "Can't flush cache":
    its write cut short): the worker is replaced; the disk fills up, room comes back before
    the stop, and the first EndOfExperiment writes the file from the journal, every frame
    in it; the log says each change of the state directory's state once."""
    BL = sim[0]
    settings = "journal_flush_s: 0.2\nstaging_every_s: 2\n"
    with _service_on_tmpfs(sim, kafka, log_dir, tmp_path, settings, 2048, "staging-full") as svc:
        client, P, proc, state, topic = svc
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        client.put(f"{BL}det:Acquire", 1)
        # room for the journal's small batches for a while, not for the staging file's
        # first chunks (its first round comes 2 s after the start)
        filler = _fill(state, leave=16 << 10)
        procs.wait_until(
            lambda: "staging the recording failed" in proc.tail(300),
            30,
            "the staging round failed",
            proc,
        )
        filler.unlink()  # the staging file's room back, then full to the last byte:
        filler = _fill(state)  # the journal's next page cannot be had
        procs.wait_until(lambda: client.get(f"{P}NotDurable") > 0, 90, "held", proc)
        filler.unlink()  # room again, for good
        procs.wait_until(lambda: client.get(f"{P}StateDirOK") == "Yes", 20, "StateDirOK")
        _more_frames(client, BL, 3)
        path = _end(client, BL, P)  # the first one writes it
        event = asyncio.run(consume_event(kafka, topic, "staging-full", timeout=60))
        procs.wait_until(lambda: "durable again" in proc.tail(400), 20, "durable again said", proc)
        log = proc.tail(2000)
        assert client.get(f"{P}State") == "Idle" and proc.popen.poll() is None
    assert path.name == Path(event["file_path"]).name
    values, _times, note = _counter_log(path)
    counts = values[np.isfinite(values)]
    assert len(counts) >= 10 and note == ""
    assert np.diff(counts).tolist() == [1] * (len(counts) - 1)  # every frame, none lost
    assert event["readings_dropped"] == 0
    assert log.count("cannot take the experiment") == 1, log[-3000:]
    assert log.count("everything captured is durable again") == 1, log[-3000:]
