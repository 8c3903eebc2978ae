"""Detector frames linked, not copied: external link or virtual dataset, relative paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from assonant_ioc.model import codec
from assonant_ioc.model.components import (
    Component,
    ComponentClass,
    Entry,
    Experiment,
    LinkedData,
    Moment,
)
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.provenance import component_info
from tests.unit.factories import T0

FRAMES = "/entry/data/data"


def _frames(path: Path, n: int, value: int) -> str:
    """A detector file as areaDetector's HDF5 plugin writes it: frames at /entry/data/data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(FRAMES, data=np.full((n, 16, 12), value, dtype=np.uint16))
    return str(path)


def _experiment(files: list[str]) -> Experiment:
    det = Component("detector", ComponentClass.DETECTOR, data=LinkedData(tuple(files), FRAMES))
    entry = Entry(Moment.DURING, T0, T0 + 1, (det,), None)
    return Experiment("scan", "BL", "", T0, T0 + 1, (entry,))


def test_several_files_become_one_virtual_dataset_that_survives_a_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    files = [
        _frames(run / "frames" / f"{kind}.h5", n, value)
        for kind, n, value in (("dark", 2, 0), ("flat", 3, 1000), ("proj", 5, 500))
    ]
    x = _experiment(files)
    assert codec.from_json(codec.to_json(x)) == x
    write_experiment(x, run / "master.nxs")
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(run), str(moved))
    monkeypatch.chdir(tmp_path)  # neither the old place nor the master's directory
    with h5py.File(moved / "master.nxs", "r") as f:
        data = f["during_exposure/instrument/detector/data"]
        assert data.is_virtual and data.shape == (10, 16, 12)
        assert list(data[:, 0, 0]) == [0, 0, 1000, 1000, 1000, 500, 500, 500, 500, 500]
        assert all(not s.file_name.startswith("/") for s in data.virtual_sources())
        # viewers open on the frames
        assert f.attrs["default"] == "during_exposure"
        entry = f["during_exposure"]
        assert entry.attrs["default"] == "data"
        assert entry["data"].attrs["NX_class"] == "NXdata"
        assert entry["data"].attrs["signal"] == "data"
        assert entry["data/data"].shape == (10, 16, 12)
    assert (moved / "master.nxs").stat().st_size < 50_000  # frames linked, not copied


def test_one_file_is_an_external_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    write_experiment(_experiment([_frames(run / "scan_0001.h5", 4, 7)]), run / "master.nxs")
    shutil.move(str(run), str(tmp_path / "moved"))
    monkeypatch.chdir("/")
    with h5py.File(tmp_path / "moved" / "master.nxs", "r") as f:
        link = f["during_exposure/instrument/detector"].get("data", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert link.filename == "scan_0001.h5" and link.path == FRAMES
        assert f["during_exposure/data/data"][:, 3, 3].tolist() == [7, 7, 7, 7]


def test_a_missing_detector_file_is_named_not_fatal(tmp_path: Path) -> None:
    present = _frames(tmp_path / "a.h5", 2, 1)
    missing = str(tmp_path / "never_written.h5")
    write_experiment(_experiment([present, missing]), tmp_path / "master.nxs")
    with h5py.File(tmp_path / "master.nxs", "r") as f:
        det = f["during_exposure/instrument/detector"]
        assert component_info(det, "missing_files") == [missing]
        assert det["data"].shape == (2, 16, 12)


def test_a_detector_file_of_other_frames_or_not_hdf5_is_named_not_fatal(tmp_path: Path) -> None:
    good = [_frames(tmp_path / "a.h5", 2, 1), _frames(tmp_path / "c.h5", 3, 3)]
    other = tmp_path / "b.h5"  # a file of another camera mode: frames of another shape
    with h5py.File(other, "w") as f:
        f.create_dataset(FRAMES, data=np.zeros((4, 8, 8), dtype=np.uint16))
    broken = tmp_path / "d.h5"
    broken.write_bytes(b"not HDF5 at all")
    files = [good[0], str(other), good[1], str(broken)]
    write_experiment(_experiment(files), tmp_path / "master.nxs")
    with h5py.File(tmp_path / "master.nxs", "r") as f:
        det = f["during_exposure/instrument/detector"]
        assert component_info(det, "unusable_files") == [str(other), str(broken)]
        assert component_info(det, "missing_files") is None
        assert det["data"][:, 0, 0].tolist() == [1, 1, 3, 3, 3]
