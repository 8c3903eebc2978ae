"""Standard NeXus from a real run: an NXtomo over the simulated camera's own HDF5 files,
linked (never copied), per-frame image_key and rotation_angle, validated after the write."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
import pytest

from assonant_ioc.events import EVENT_SCHEMA_PATH
from assonant_ioc.events.kafka import consume_event
from assonant_ioc.sim import phantom, procs
from tests.system.camera import acquire, scan, sweep
from tests.system.conftest import REPO, start_service

#: nexusformat 2.1 findings that are not faults of the file (see the README, "Validation")
NEXUSFORMAT_KNOWN = (
    "NXslit is an invalid class in NXinstrument",  # NeXus definitions issue #1430
    "NXsource is an invalid class in NXentry",  # NXmx wants it there: definitions issue #1248
)

#: every error the validators find in the simulated beamline's NXtomo and NXmx files:
#: (where, which known report)
TOMO_KNOWN = [
    (f"/{entry}/instrument/slit_1", NEXUSFORMAT_KNOWN[0])
    for entry in ("pre_exposure", "post_exposure")
]
MX_KNOWN = [("/during_exposure/source", NEXUSFORMAT_KNOWN[1])]

#: the monochromator's energy each experiment here is taken at (keV)
ENERGY_KEV = 12.0


def _run(
    sim: tuple[str, int],
    kafka: str,
    log_dir: Path,
    tmp_path: Path,
    config_name: str,
    dark_and_flat: bool,
    turn: float = 30.0,
    images: int = 0,
    topic: str = "",
) -> tuple[Path, dict[str, Any], str, Path, Path]:
    """One experiment driven over CA while the camera writes its files and the sample
    rotates 0 -> ``turn`` deg at 30 deg/s (with ``images``: a fly scan, the camera
    triggered by the motion, ``images`` frames); returns (master file, event, Validation
    PV, frames dir, data dir). ``topic``: where the IOC sends its event (default: one of
    its own)."""
    BL = sim[0]
    topic = topic or f"assonant.test.{procs.new_prefix('t').strip(':')}"
    config = (REPO / "configs" / config_name).read_text()
    with start_service(
        log_dir, tmp_path, sim, ["--kafka-bootstrap", kafka], topic, config_text=config
    ) as (client, P, data_dir, proc):
        frames_dir = data_dir / "detector"
        client.put(f"{BL}det:HDF1:FilePath", str(frames_dir))
        client.put(f"{BL}smp:rx:VAL", 0.0)
        client.put(f"{BL}mono:energy:VAL", ENERGY_KEV)  # another test may have moved it
        procs.wait_until(
            lambda: (
                client.get(f"{BL}smp:rx:DMOV") == 1
                and abs(client.get(f"{BL}mono:energy:RBV") - ENERGY_KEV) < 1e-9
                and client.get(f"{BL}mono:energy:DMOV") == 1
            ),
            10,
            "rx at 0 and the monochromator at its energy",
        )
        exp_id = f"{config_name.split('.')[0]}-{int(time.time())}"
        client.put(f"{P}ExperimentId", exp_id)
        client.put(f"{P}Snapshot:Pre", 1)
        if dark_and_flat:
            acquire(client, BL, 2)  # dark
            acquire(client, BL, 1)  # flat
        if images:
            sweep(client, BL, P, turn, images)
        else:
            scan(client, BL, P, turn)  # 30 deg/s: 30 deg is a one-second scan
        client.put(f"{P}Snapshot:Post", 1)
        client.put(f"{P}EndOfExperiment", 1)
        master = Path(client.get(f"{P}LastFile"))
        event = asyncio.run(consume_event(kafka, topic, exp_id, timeout=60))
        validation_pv = client.get(f"{P}Validation")
        assert proc.popen.poll() is None
    jsonschema.validate(event, json.loads(EVENT_SCHEMA_PATH.read_text()))
    return master, event, validation_pv, frames_dir, data_dir


def _only_known_errors(
    event: dict[str, Any], validation_pv: str, path: Path, known: list[tuple[str, str]]
) -> None:
    """Every error the validators find in the file, read in full (not the event's first
    few), is one of the known reports that are not faults of the file: ``known`` lists
    them as (where, what); the event and the PV count them all."""
    from assonant_ioc.nexus.validate import validate

    report = event["validation"]
    assert report["validators"] == ["assonant", "pynxtools", "nexusformat"]
    assert report["warnings"] > 0  # nexusformat: fields of ours its base classes do not list
    assert f"{report['errors']} errors" in validation_pv
    full = validate(path)
    errors = sorted(
        (f.validator, f.path, next((k for k in NEXUSFORMAT_KNOWN if k in f.message), f.message))
        for f in full.findings
        if f.severity == "error"
    )
    assert errors == sorted(("nexusformat", where, what) for where, what in known)
    assert len(errors) == report["errors"]


def test_nxtomo_over_the_detectors_own_files(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    master, event, validation_pv, frames_dir, data_dir = _run(
        sim, kafka, log_dir, tmp_path, "sim_tomo.yaml", dark_and_flat=True
    )
    det_files = sorted(frames_dir.glob("*.h5"))
    assert len(det_files) == 3
    n_frames = [h5py.File(f, "r")["/entry/data/data"].shape[0] for f in det_files]
    with h5py.File(master, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXtomo"
        data = entry["instrument/detector/data"]
        assert data.is_virtual and data.shape == (sum(n_frames), 16, 16)
        keys = entry["instrument/detector/image_key"][()]
        assert keys.tolist() == [2] * n_frames[0] + [1] * n_frames[1] + [0] * n_frames[2]
        angles = entry["sample/rotation_angle"][()]
        assert entry["sample/rotation_angle"].attrs["units"] == "deg"
        assert len(angles) == len(keys)
        assert np.all(angles[keys != 0] == pytest.approx(0.0, abs=1e-6))  # before the scan
        projections = angles[keys == 0]
        assert np.all(np.diff(projections) >= 0) and projections[-1] > projections[0]
        assert entry["data"].attrs["signal"] == "data"
        assert f.attrs["default"] == "during_exposure"
    assert master.stat().st_size < 1_000_000

    # the directory moves (to an archive, say): the frames still read through the links
    moved = tmp_path / "archive"
    shutil.move(str(data_dir), str(moved))
    with h5py.File(moved / master.name, "r") as f:
        frames = f["during_exposure/data/data"][()]
    assert frames.shape[0] == sum(n_frames)
    from nexusformat.nexus import nxload  # NeXpy's reader: the same frames

    seen = nxload(str(moved / master.name))["during_exposure/data/data"]
    assert seen.shape == frames.shape and np.array_equal(np.asarray(seen.nxvalue), frames)
    # the camera's levels: dark 0, flat 1000, projection 2000, plus the frame's index
    first_flat = n_frames[0]
    assert frames[first_flat, 0, 0] == 1000
    assert frames[-1, 0, 0] == 2000 + n_frames[2] - 1

    assert event["definition"] == "NXtomo"
    _only_known_errors(event, validation_pv, moved / master.name, TOMO_KNOWN)
    _tomography_programs_take(moved / master.name, n_frames)
    _scippnexus_loads(moved / master.name, "rotation_angle", sum(n_frames))


def _tomography_programs_take(path: Path, n_frames: list[int]) -> None:
    """nabu's dataset analyzer, and nxtomo/tomoscan under it, take the file as written (its
    extension, ``.nx``, is the one nabu takes) and read what the config gave."""
    from nabu.resources.dataset_analyzer import analyze_dataset
    from tomoscan.esrf import NXtomoScan

    assert path.suffix == ".nx"
    dataset = analyze_dataset(str(path), extra_options={"hdf5_entry": "during_exposure"})
    darks, flats = dataset.darks, dataset.flats
    assert darks is not None and flats is not None, "nabu finds no darks or flats"
    assert sum(d.shape[0] if d.ndim == 3 else 1 for d in darks.values()) >= 1
    assert len(dataset.projections) == n_frames[2]
    assert dataset.energy == pytest.approx(ENERGY_KEV, rel=1e-6)  # keV, what the test set
    assert dataset.distance == pytest.approx(0.1)  # 100 mm in the config, in m
    assert dataset.pixel_size == pytest.approx(6.5)  # um
    scan = NXtomoScan(str(path), "during_exposure")
    assert scan.source_name == "SIM storage ring"
    assert scan.energy == pytest.approx(dataset.energy)
    assert scan.sample_detector_distance == pytest.approx(0.1)
    assert len(scan.projections) == n_frames[2] and len(scan.darks) == n_frames[0]


#: what scippnexus cannot take as NXdetector, by its design (README, "The file"): a detector
#: with no ``data`` (a snapshot's), or with recorded fields (NXlog children become auxiliary
#: signals that must share the frames' dimensions); it then loads the group as it is
SCIPPNEXUS_DETECTOR = re.compile(
    r"Failed to load /(pre|during|post)_exposure/instrument/detector as NXdetector: "
    r"(Could not determine signal field or dimensions|Cannot add item '\w+' with dims)"
)


def _scippnexus_loads(path: Path, axis: str, n_frames: int) -> None:
    """scippnexus (ESS) loads every entry; the frames' NXdata as a DataArray over ``axis``,
    each recorded series as a DataArray over time; only the detectors fall back."""
    import scipp as sc
    import scippnexus as snx

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with snx.File(path) as f:
            entries = {name: f[name][()] for name in f if f[name].nx_class == snx.NXentry}
    assert set(entries) == {"pre_exposure", "during_exposure", "post_exposure"}
    fallbacks = [str(w.message) for w in caught if "Failed to load" in str(w.message)]
    assert all(SCIPPNEXUS_DETECTOR.match(m) for m in fallbacks), fallbacks
    data = entries["during_exposure"]["data"]
    assert isinstance(data, sc.DataArray) and data.sizes[axis] == n_frames
    for name, item in entries["during_exposure"]["sample"].items():
        if name in ("rx", "omega"):
            assert isinstance(item, sc.DataArray) and "time" in item.coords, name
    if axis == "omega":  # NXmx: the sample's chain has omega per image, so a position each
        sample = snx.compute_positions(entries["during_exposure"]["sample"])
        assert sample["position"].shape == (n_frames,)
        detector = snx.compute_positions(entries["during_exposure"]["instrument"]["detector"])
        assert detector["position"].value.tolist() == pytest.approx([0, 0, 0.2])  # det_z, m


def test_nxmx_with_the_goniometer_chain_over_one_sweep(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """A 0 -> 30 deg sweep of 10 images, the camera triggered by the motion and stamping
    each frame at the end of its exposure, after a dark and a flat acquisition: the sweep
    holds the 10 images, each omega the start of its oscillation."""
    n, turn = 10, 30.0
    step = turn / n
    master, event, validation_pv, frames_dir, _ = _run(
        sim, kafka, log_dir, tmp_path, "sim_mx.yaml", dark_and_flat=True, turn=turn, images=n
    )
    *dark_and_flat, sweep_file = sorted(frames_dir.glob("*.h5"))
    assert h5py.File(sweep_file, "r")["/entry/data/data"].shape[0] == n
    still = sum(h5py.File(f, "r")["/entry/data/data"].shape[0] for f in dark_and_flat)
    with h5py.File(master, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXmx"
        assert entry["end_time_estimated"][()] == entry["end_time"][()]
        # the sweep only: the dark and flat frames (not rotating) are left out, and named
        data = entry["instrument/detector/data"]
        assert data.is_virtual
        sources = data.virtual_sources()
        assert {s.file_name for s in sources} == {f"detector/{sweep_file.name}"}
        assert len(sources) == n  # one mapping per frame (what nexusformat reads right)
        assert entry["data/data"].shape == (n, 16, 16)
        assert entry["data/data"][:, 0, 0].tolist() == [2000 + i for i in range(n)]
        checks = entry["provenance/checks"].asstr()[()].tolist()
        assert checks == [
            f"warning: /during_exposure: {still} frame(s) left out of the sweep (not rotating, "
            f"or image key dark/flat): 0-{still - 1}"
        ]
        sample = entry["sample"]
        trans = sample["transformations"]
        assert sample["depends_on"][()].decode() == trans["omega"].name
        assert [trans[a].attrs["depends_on"] for a in ("omega", "x", "y", "z")] == [
            trans["x"].name,
            trans["y"].name,
            trans["z"].name,
            ".",
        ]
        # omega per image: the start of each oscillation, within a tenth of a step of the
        # motor's start and stop in the recorded log (the frames are stamped at their end)
        omega, omega_end = trans["omega"][()], trans["omega_end"][()]
        positions = sample["omega/value"][()]
        assert positions[0] == pytest.approx(0.0) and positions[-1] == pytest.approx(turn)
        assert len(omega) == n and len(omega_end) == n
        assert omega[0] == pytest.approx(positions[0], abs=step / 10)
        assert omega_end[-1] == pytest.approx(positions[-1], abs=step / 10)
        assert np.diff(omega).tolist() == pytest.approx([step] * (n - 1), abs=step / 10)
        assert omega_end.tolist() == pytest.approx((omega + step).tolist(), abs=step / 10)
        assert trans["omega_increment_set"][()] == pytest.approx(step, abs=step / 10)
        assert entry["data"].attrs["axes"].tolist() == ["omega", ".", "."]
        module = entry["instrument/detector/module"]
        assert module["fast_pixel_direction"].attrs["offset"].tolist() == [0, 0, 0]
        # the detector's chain, as MX processing follows it: pixels -> beam centre -> distance
        det = entry["instrument/detector"]
        det_z = det["transformations/det_z"]
        assert det["depends_on"][()].decode() == det_z.name and det_z[()] == 200.0
        assert module["module_offset"].attrs["depends_on"] == det_z.name
        assert module["fast_pixel_direction"].attrs["depends_on"] == module["module_offset"].name
        wavelength = entry["instrument/beam/incident_wavelength"]  # one value for the sweep
        assert wavelength.attrs["units"] == "angstrom"
        assert wavelength[()] == pytest.approx(12.398419843320026 / 12.0, rel=1e-4)
        assert entry["source/name"][()].decode() == "SIM storage ring"
    assert event["definition"] == "NXmx"
    _only_known_errors(event, validation_pv, master, MX_KNOWN)
    _scippnexus_loads(master, "omega", n)


@pytest.mark.timeout(400)  # its time on a loaded 2-core machine, with room
def test_a_half_turn_of_the_phantom_reconstructs(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """The camera looks through a known object while the sample turns 180 deg: the file's
    frames, image keys and rotation angles, flat-field corrected and back-projected, give
    the object back (nabu's reconstruction needs OpenCL and pyvkfft, which this machine's
    CPU-only environment cannot build; a plain numpy FBP checks the same data)."""
    n = 60
    master, _event, _pv, _frames, _data = _run(
        sim, kafka, log_dir, tmp_path, "sim_tomo.yaml", dark_and_flat=True, turn=180.0, images=n
    )
    with h5py.File(master, "r") as f:
        entry = f["during_exposure"]
        frames = entry["data/data"][()].astype(np.float64)
        keys = entry["instrument/detector/image_key"][()]
        angles = entry["sample/rotation_angle"][()]
    dark = frames[keys == 2].mean(axis=0)
    flat = frames[keys == 1].mean(axis=0)
    projections, at = frames[keys == 0], angles[keys == 0]
    # a half turn, 3 deg a projection, each at the middle of its exposure (stamped at its end)
    assert len(at) == n
    assert at.tolist() == pytest.approx([1.5 + 3 * i for i in range(n)], abs=0.3)
    row = 8  # a slice through both discs
    sinogram = -np.log((projections[:, row] - dark[row]) / (flat[row] - dark[row]))
    image = phantom.filtered_back_projection(sinogram, at)
    truth = phantom.slice_image(row)
    correlation = float(np.corrcoef(image.ravel(), truth.ravel())[0, 1])
    print(f"phantom slice {row}: correlation {correlation:.3f} over {len(at)} projections")
    assert correlation > 0.85, correlation
    # the angles matter: the same frames read as a 30 deg scan give something else
    wrong = phantom.filtered_back_projection(sinogram, at / 6)
    assert float(np.corrcoef(wrong.ravel(), truth.ravel())[0, 1]) < correlation - 0.2
    _nabu_reconstructs(master, tmp_path / "nabu")


def _nabu_reconstructs(master: Path, work: Path) -> None:
    """nabu's own pipeline, with the config ``nabu-config --dataset`` writes and nothing
    changed (half-tomography "auto", the centre of rotation found by nabu, FBP on the CPU
    through OpenCL): the volume holds the phantom."""

    try:
        import pyopencl  # noqa: F401
        import pyvkfft  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"nabu's CPU backend is not installed in CI: {err}")
        pytest.skip(f"nabu's CPU backend is not installed (scripts/test.sh installs it): {err}")
    from tests.system.reduction import nabu_by_hand

    volume_file = nabu_by_hand(master, work)
    with h5py.File(volume_file, "r") as f:
        results = f["during_exposure/reconstruction"]
        volume = results["results/data"][()]
        cor = float(
            results["configuration/processing_options/reconstruction/rotation_axis_position"][()]
        )
    assert volume.shape == (16, 16, 16)
    assert cor == pytest.approx(7.5, abs=0.5)  # the phantom turns about the frame's centre
    for row in (4, 8, 11):  # nabu's image rows run opposite to the phantom's y-up
        truth = phantom.slice_image(row)
        found = float(np.corrcoef(np.flipud(volume[row]).ravel(), truth.ravel())[0, 1])
        print(f"nabu slice {row}: correlation {found:.3f}, centre of rotation {cor:.2f}")
        assert found > 0.9, (row, found)
