"""The frame log of a camera's frames over PVA: frames from the recording's start to its end
kept, a record torn by a kill dropped and never misread, and the detector file made of it
as areaDetector's HDF5 plugin would write it, with the uniqueIds that never arrived named."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from assonant_ioc.lifecycle.frame_log import FrameLog, missed_ids, read_frames, write_frames_file
from assonant_ioc.model.source import Frame
from assonant_ioc.model.times import EPICS_EPOCH

T0 = 1.8e9  # POSIX seconds, after the EPICS epoch


def _frame(i: int, t: float) -> Frame:
    pixels = np.full((4, 6), i, dtype=np.uint16)
    return Frame("pva://cam", i, T0 + t, pixels, {"SampleRot": 1.5 * i, "ExposureCounter": i})


def test_frames_in_the_recording_span_are_logged_and_made_the_detector_file(
    tmp_path: Path,
) -> None:
    log = FrameLog(tmp_path / "ndarray-cam.log", "pva://cam", start=T0 + 100.0, flush_s=0.05)
    log.add_frame(_frame(1, 99.0))  # exposed before the recording: not its own
    for i in (2, 3, 6, 7):  # 4 and 5 never arrive
        log.add_frame(_frame(i, 100.0 + i))
    log.close(T0 + 106.5)
    log.add_frame(_frame(8, 108.0))  # after the end
    assert log.stop() == 4
    assert [h["id"] for h, _ in read_frames(tmp_path / "ndarray-cam.log")] == [2, 3, 6, 7]
    out = tmp_path / "x_cam.h5"
    written, sent = write_frames_file(tmp_path / "ndarray-cam.log", out, {"compression": "gzip"})
    assert (written, sent) == (4, 6)
    with h5py.File(out, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (4, 4, 6) and data.chunks == (1, 4, 6)
        assert data.compression == "gzip"
        assert [int(data[k, 0, 0]) for k in range(4)] == [2, 3, 6, 7]
        assert list(data.attrs["missed_unique_ids"]) == [4, 5]
        nd = f["/entry/instrument/NDAttributes"]
        assert list(nd["NDArrayUniqueId"][()]) == [2, 3, 6, 7]
        assert list(nd["SampleRot"][()]) == [3.0, 4.5, 9.0, 10.5]
        assert list(nd["ExposureCounter"][()]) == [2, 3, 6, 7]
        secs = nd["NDArrayEpicsTSSec"][()].astype(float) + EPICS_EPOCH
        assert np.allclose(
            secs + nd["NDArrayEpicsTSnSec"][()] * 1e-9, T0 + np.array([102, 103, 106, 107])
        )


def test_a_record_torn_by_a_kill_is_dropped_never_misread(tmp_path: Path) -> None:
    path = tmp_path / "ndarray-cam.log"
    log = FrameLog(path, "pva://cam", start=T0)
    for i in range(1, 4):
        log.add_frame(_frame(i, float(i)))
    log.stop()
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # the last frame cut short, as a kill -9 mid-write leaves it
    assert [h["id"] for h, _ in read_frames(path)] == [1, 2]
    written, sent = write_frames_file(path, tmp_path / "x.h5", {})
    assert (written, sent) == (2, 2)


def test_missed_ids() -> None:
    assert list(missed_ids(np.array([5, 6, 9]))) == [7, 8]
    assert list(missed_ids(np.array([5]))) == []
