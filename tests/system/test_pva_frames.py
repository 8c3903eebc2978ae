"""A camera's frames over PVAccess (NDPluginPva's NTNDArray, from the simulated beamline's
PVA camera) recorded during the exposure into the detector's file: every frame a bare p4p
client monitoring the same PV saw, pixel for pixel, with its uniqueId, dataTimeStamp and
NDAttributes; the frame's angle attribute equal to the rotation recorded over PVA at the
frame's time; two uniqueIds the camera skipped named in the checks with their count; a
kill -9 while frames arrive loses none that was in the journal, and the gap is marked."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.lifecycle.frame_log import log_path, read_frames
from assonant_ioc.model.source import Frame
from assonant_ioc.model.times import EPICS_EPOCH
from assonant_ioc.monitor.ndarray import decode_frame
from assonant_ioc.nexus.frames import positions_at
from assonant_ioc.nexus.publish import checks_of
from assonant_ioc.sim import procs, pva_env
from tests.system.conftest import kill9, start_service

pytestmark = pytest.mark.timeout(300)


def _camera(prefix: str) -> str:
    """The PVA camera and its rotation stage, put into the simulated beamline's config."""
    return (
        "  - name: pva_camera\n"
        "    class: Detector\n"
        f'    frames: {{array_pv: "pva://{prefix}cam:Pva1:Image"}}\n'
        "    fields:\n"
        f'      rotation: {{pv: "pva://{prefix}rot", units: deg, moments: [during]}}\n'
    )


class BareCamera:
    """p4p's own client monitoring the camera: every frame as it arrived; and its settings."""

    def __init__(self, udp: int, prefix: str) -> None:
        from p4p.client.thread import Context

        self.prefix = prefix
        self.frames: list[Frame] = []
        self._lock = threading.Lock()
        self.ctx = Context("pva", conf=pva_env.pva_client_env(udp), useenv=False, nt=False)
        image = f"{prefix}cam:Pva1:Image"
        self._sub = self.ctx.monitor(image, self._take)

    def _take(self, v: Any) -> None:
        if not isinstance(v, Exception):
            with self._lock:
                self.frames.append(decode_frame("bare", v))

    def acquire(self, n: int, period: float, skip: int = 0, start: float = 0.0) -> None:
        """``n`` frames ``period`` s apart (the first ``skip`` uniqueIds skipped), returning
        once the camera is done."""
        for name, value in (
            ("NumImages", n),
            ("AcquireTime", period),
            ("SkipIds", skip),
            ("StartAngle", start),
            ("EndAngle", start + 90.0),
        ):
            self.ctx.put(f"{self.prefix}cam:{name}", value)
        seen = self.ctx.get(f"{self.prefix}cam:Pva1:Image")["uniqueId"]
        self.ctx.put(f"{self.prefix}cam:Acquire", 1)
        procs.wait_until(
            lambda: (
                self.last_id() >= seen + n + skip
                and self.ctx.get(f"{self.prefix}cam:Acquire")["value"] == 0
            ),
            60,
            f"{n} frames from the camera",
        )

    def last_id(self) -> int:
        with self._lock:
            return self.frames[-1].unique_id if self.frames else -1

    def close(self) -> None:
        self._sub.close()
        self.ctx.close()


@pytest.fixture
def pva_camera(log_dir: Path) -> Iterator[tuple[str, int, BareCamera]]:
    prefix = procs.new_prefix("PVC")
    with procs.sim_pva(log_dir, prefix) as (_tcp, udp):
        bare = BareCamera(udp, prefix)
        try:
            yield prefix, udp, bare
        finally:
            bare.close()


def _all_connected(client: Any, P: str) -> None:
    procs.wait_until(
        lambda: client.get(f"{P}PVsConnected") == client.get(f"{P}PVsTotal"), 30, "every PV"
    )


def _frames_file(
    master: h5py.File, path: str = "during_exposure/instrument/pva_camera/data"
) -> tuple[h5py.Dataset, h5py.Group]:
    """The camera's frames and their NDAttributes, through the master file's link (an
    external link, or the virtual dataset of an NXtomo)."""
    data = master[path]
    if not data.is_virtual:
        return data, data.file["/entry/instrument/NDAttributes"]
    (name,) = {source.file_name for source in data.virtual_sources()}
    detector = h5py.File(Path(master.filename).parent / name, "r")
    return data, detector["/entry/instrument/NDAttributes"]


def test_frames_over_pva_are_recorded_as_a_bare_client_sees_them_and_a_skip_is_named(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, pva_camera: tuple[str, int, BareCamera]
) -> None:
    prefix, udp, bare = pva_camera
    args = ["--no-kafka", "--no-validate"]
    service = {"extra_yaml": _camera(prefix), "more_env": pva_env.pva_client_env(udp)}
    with start_service(log_dir, tmp_path, sim, args, **service) as (client, P, _data, _proc):
        _all_connected(client, P)
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        start = time.time()
        bare.acquire(50, 0.02)
        bare.acquire(50, 0.02, skip=2, start=90.0)  # the camera skips two uniqueIds
        client.put(f"{P}Record:During", 0)
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    seen = [f for f in bare.frames if f.t >= start]
    assert len(seen) == 100
    with h5py.File(path, "r") as f:
        data, nd = _frames_file(f)
        assert data.shape == (100, 16, 16) and data.dtype == np.uint16
        assert data.file.filename != f.filename  # the detector's file, linked
        assert data.chunks == (1, 16, 16)
        ids = nd["NDArrayUniqueId"][()]
        stamps = nd["NDArrayEpicsTSSec"][()] + EPICS_EPOCH + nd["NDArrayEpicsTSnSec"][()] * 1e-9
        for i, frame in enumerate(seen):  # frame by frame as the bare client saw it
            assert np.array_equal(data[i], frame.pixels), i
            assert ids[i] == frame.unique_id
            assert abs(stamps[i] - frame.t) < 2e-9
            for name, value in frame.attributes.items():
                assert nd[name][i] == value, (i, name)
        # the angle attribute is the frame-aligned value of the rotation recorded over PVA
        rot = f["during_exposure/instrument/pva_camera/rotation"]
        zero = datetime.fromisoformat(rot["time"].attrs["start"]).timestamp()
        aligned = positions_at(zero + rot["time"][()], rot["value"][()], stamps)
        # (to what a POSIX time in a double resolves, 0.24 us: 2e-5 deg at the 90 deg/s here)
        assert np.allclose(nd["SampleRot"][()], aligned, atol=1e-4)
        assert sorted(set(np.round(nd["SampleRot"][()], 6))) == sorted(
            set(np.round(np.concatenate([np.linspace(0, 90, 50), np.linspace(90, 180, 50)]), 6))
        )
        assert list(nd["ExposureCounter"][()]) == list(
            range(
                seen[0].attributes["ExposureCounter"],
                int(seen[0].attributes["ExposureCounter"]) + 100,
            )
        )
    errors, _ = checks_of(path)
    skipped = [ids[49] + 1, ids[49] + 2]
    assert (
        f"/during_exposure/instrument/pva_camera: 2 frame(s) missed over PVA (uniqueId "
        f"{skipped[0]}, {skipped[1]} never arrived)"
    ) in "\n".join(errors)
    assert "holds 100 of the 102 frames the camera sent" in "\n".join(errors)


def test_kill_9_while_frames_arrive_keeps_every_frame_in_the_journal_and_marks_the_gap(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, pva_camera: tuple[str, int, BareCamera]
) -> None:
    prefix, udp, bare = pva_camera
    args = ["--no-kafka", "--no-validate"]
    service = {
        "extra_yaml": _camera(prefix),
        "more_env": pva_env.pva_client_env(udp),
    }
    journal = tmp_path / "autosave.state" / "experiment"
    with start_service(log_dir, tmp_path, sim, args, **service) as (client, P, _data, proc):
        _all_connected(client, P)
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}Record:During", 1)
        for name, value in (("NumImages", 100000), ("AcquireTime", 0.02)):
            bare.ctx.put(f"{prefix}cam:{name}", value)
        bare.ctx.put(f"{prefix}cam:Acquire", 1)  # frames until the test stops them
        log = log_path(journal, "pva_camera")
        procs.wait_until(
            lambda: sum(1 for _ in read_frames(log, growing=True)) >= 30,
            30,
            "30 frames in the journal",
        )
        kill9(proc)
        killed = time.time()
    bare.ctx.put(f"{prefix}cam:Acquire", 0)
    kept = [h["id"] for h, _, _ in read_frames(log)]  # what the journal holds after the kill
    assert len(kept) >= 30
    with start_service(log_dir, tmp_path, sim, args, prefix=P, **service) as (client, _, _d, _p):
        assert client.get(f"{P}State") == "Collecting"
        assert "recording closed at its last durable point" in client.get(f"{P}LastError")
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        path = Path(client.get(f"{P}LastFile"))
    by_id = {f.unique_id: f for f in bare.frames}
    with h5py.File(path, "r") as f:
        data, nd = _frames_file(f)
        ids = list(nd["NDArrayUniqueId"][()])
        assert ids == kept  # every frame the journal held, none more
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # none missed before the kill
        for i, unique_id in enumerate(ids):
            assert np.array_equal(data[i], by_id[unique_id].pixels)
        note = f["during_exposure/service_interruption/description"][()].decode()
        assert "The service was down from" in note
        assert by_id[ids[-1]].t <= killed


@pytest.mark.timeout(600)
def test_the_demo_over_pva_writes_an_nxtomo_that_nabu_reconstructs(tmp_path: Path) -> None:
    """``demo --pva``: darks, flats and a half turn of projections, the frames and the angles
    over PVA, the rest of the beamline over CA: one NXtomo whose angles are the frames' own
    angle attributes, and nabu (run by hand, as a scientist would) reconstructs the phantom."""
    from assonant_ioc.sim import phantom
    from tests.system.reduction import nabu_by_hand

    done = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "demo", "--pva", "--data-dir", "out"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (master,) = (tmp_path / "out").glob("*.nx")
    assert '"definition": "NXtomo"' in done.stdout
    assert "101 of 101 frames" in done.stdout  # 5 darks, 5 flats, 91 projections
    with h5py.File(master, "r") as f:
        entry = f["during_exposure"]
        keys = entry["instrument/detector/image_key"][()]
        assert list(keys) == [2] * 5 + [1] * 5 + [0] * 91
        angles = entry["sample/rotation_angle"][()]
        data, nd = _frames_file(f, "during_exposure/instrument/detector/data")
        assert np.allclose(angles, nd["SampleRot"][()], atol=1e-4)
        assert np.allclose(angles[keys == 0], np.linspace(0, 180, 91), atol=1e-4)
        assert np.array_equal(data[10], np.round(phantom.projection(0.0)).astype(np.uint16))
        sources = set(f["pre_exposure/provenance/sample/source_pv"].asstr()[()])
        assert any(s.startswith("pva://") and s.endswith("rot") for s in sources)
        assert any(s.endswith("smp:x:RBV") and "://" not in s for s in sources)  # CA, bare
    volume_file = nabu_by_hand(master, tmp_path / "nabu")
    with h5py.File(volume_file, "r") as f:
        volume = np.asarray(f["during_exposure/reconstruction/results/data"][()])
    for row in (4, 8, 11):  # slices through the phantom's discs (nabu's rows run upwards)
        found = np.corrcoef(np.flipud(volume[row]).ravel(), phantom.slice_image(row).ravel())
        assert found[0, 1] >= 0.95, (row, found[0, 1])
