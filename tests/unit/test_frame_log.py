"""The frame log of a camera's frames over PVA: frames from the recording's start to its end
kept, a record torn by a kill dropped and never misread; the detector file made of it as
areaDetector's HDF5 plugin would write it, staged round by round while the log grows (an
attribute that appears late or widens kept, a staged file a kill spoiled made again), with
the uniqueIds that never arrived named."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from assonant_ioc.lifecycle.frame_file import finish, missed_ids, stage, staged_path
from assonant_ioc.lifecycle.frame_log import FrameLog, log_path, read_frames
from assonant_ioc.model.source import Frame
from assonant_ioc.model.times import EPICS_EPOCH

T0 = 1.8e9  # POSIX seconds, after the EPICS epoch


def _frame(i: int, t: float, **more: float | int | str) -> Frame:
    pixels = np.full((4, 6), i, dtype=np.uint16)
    attributes = {"SampleRot": 1.5 * i, "ExposureCounter": i, **more}
    return Frame("pva://cam", i, T0 + t, pixels, attributes)


def _ids(path: Path) -> list[int]:
    return [h["id"] for h, _, _ in read_frames(path)]


def test_frames_in_the_recording_span_are_logged_and_made_the_detector_file(
    tmp_path: Path,
) -> None:
    log = FrameLog(log_path(tmp_path, "cam"), "pva://cam", start=T0 + 100.0, flush_s=0.05)
    log.add_frame(_frame(1, 99.0))  # exposed before the recording: not its own
    for i in (2, 3):
        log.add_frame(_frame(i, 100.0 + i))
    gzip = {"compression": "gzip"}
    assert stage(log_path(tmp_path, "cam"), staged_path(tmp_path, "cam"), gzip) == 2  # a round
    for i in (6, 7):  # 4 and 5 never arrive; a text attribute from frame 6 on
        log.add_frame(_frame(i, 100.0 + i, note=f"n{i}"))
    log.close(T0 + 106.5)
    log.add_frame(_frame(8, 108.0))  # after the end
    assert log.stop() == 4
    assert _ids(log_path(tmp_path, "cam")) == [2, 3, 6, 7]
    out = tmp_path / "data" / "x_cam.h5"
    assert finish(tmp_path, "cam", out, gzip) == (4, 6)
    assert not staged_path(tmp_path, "cam").exists()
    with h5py.File(out, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (4, 4, 6) and data.chunks == (1, 4, 6)
        assert data.compression == "gzip"
        assert [int(data[k, 0, 0]) for k in range(4)] == [2, 3, 6, 7]
        assert list(data.attrs["missed_unique_ids"]) == [4, 5]
        assert data.attrs["frames_sent"] == 6
        nd = f["/entry/instrument/NDAttributes"]
        assert list(nd["NDArrayUniqueId"][()]) == [2, 3, 6, 7]
        assert list(nd["SampleRot"][()]) == [3.0, 4.5, 9.0, 10.5]
        assert list(nd["ExposureCounter"][()]) == [2, 3, 6, 7]
        assert nd["ExposureCounter"].dtype == np.int64
        assert list(nd["note"].asstr()[()]) == ["", "", "n6", "n7"]
        secs = nd["NDArrayEpicsTSSec"][()].astype(float) + EPICS_EPOCH
        assert np.allclose(
            secs + nd["NDArrayEpicsTSnSec"][()] * 1e-9, T0 + np.array([102, 103, 106, 107])
        )


def test_an_attribute_that_widens_keeps_every_value(tmp_path: Path) -> None:
    log = FrameLog(log_path(tmp_path, "cam"), "pva://cam", start=T0)
    log.add_frame(_frame(1, 1.0, gain=2))
    stage(log_path(tmp_path, "cam"), staged_path(tmp_path, "cam"), {})
    log.add_frame(_frame(2, 2.0, gain=2.5))  # an int attribute that becomes a float
    log.stop()
    finish(tmp_path, "cam", tmp_path / "x.h5", {})
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert list(f["/entry/instrument/NDAttributes/gain"][()]) == [2.0, 2.5]


def test_a_record_torn_by_a_kill_is_dropped_and_a_spoiled_staging_made_again(
    tmp_path: Path,
) -> None:
    path = log_path(tmp_path, "cam")
    log = FrameLog(path, "pva://cam", start=T0)
    for i in range(1, 4):
        log.add_frame(_frame(i, float(i)))
    log.stop()
    stage(path, staged_path(tmp_path, "cam"), {})
    staged_path(tmp_path, "cam").write_bytes(b"\x89HDF\r\n garbage")  # a kill mid-round
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # the last frame cut short, as a kill -9 mid-write leaves it
    assert _ids(path) == [1, 2]
    assert finish(tmp_path, "cam", tmp_path / "x.h5", {}) == (2, 2)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert list(f["/entry/instrument/NDAttributes/NDArrayUniqueId"][()]) == [1, 2]


def test_missed_ids() -> None:
    assert list(missed_ids(np.array([5, 6, 9]))) == [7, 8]
    assert list(missed_ids(np.array([5]))) == []
