"""Application definitions from the example configs: checked at load, validated after writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.config import load_config
from assonant_ioc.errors import ConfigError
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.publish import checks_of
from assonant_ioc.nexus.validate import validate
from assonant_ioc.sim.experiment import simulated_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: nexusformat 2.1 findings that are not faults of the file (README, "Validation")
#: pynxtools findings that are the definitions' gaps, not faults of the file: nabu reads
#: darks and flats from image_key_control, which NXtomo does not document (nxtomo itself
#: writes it as a "non-standard extension")
#: and pynxtools takes NXmx's module_offset for the reserved suffix _offset of a missing
#: field "module" (its own false report, classed a warning in nexus/validate.py)
#: and nabu's full pipeline needs field_of_view (Full/Half), which NXtomo does not document
PYNXTOOLS_KNOWN = (
    "/instrument/detector/image_key_control",
    "/instrument/detector/field_of_view",
    "/module/module_offset",
)
NEXUSFORMAT_KNOWN = (
    "NXslit is an invalid class in NXinstrument",
    "NXsource is an invalid class in NXentry",
)


def _opens_on_the_frames(path: Path) -> None:
    """silx (and so NeXpy and h5web, which follow the same @default chain) opens on the
    detector frames."""
    from silx.io.nxdata import get_default

    with h5py.File(path, "r") as f:
        nxdata = get_default(f)
        assert nxdata is not None and nxdata.is_valid
        assert nxdata.group.name == "/during_exposure/data" and nxdata.signal.ndim == 3


def _nexusformat_reads_the_frames(path: Path, detector: str) -> None:
    """nexusformat (NeXpy) reads the virtual frames with their shape and values."""
    from nexusformat.nexus import nxload

    where = f"during_exposure/instrument/{detector}/data"
    with h5py.File(path, "r") as f:
        frames = f[where][()]
    seen = nxload(str(path))[where]
    assert seen.shape == frames.shape
    assert np.array_equal(np.asarray(seen.nxvalue), frames)


def _nxlogs_load_in_scippnexus(path: Path) -> None:
    """scippnexus loads every NXlog of the exposure as a time series (no fallback)."""
    import warnings

    import scippnexus as snx

    with h5py.File(path, "r") as f:
        logs: list[str] = []
        f["during_exposure"].visititems(
            lambda name, obj: logs.append(name) if obj.attrs.get("NX_class") == "NXlog" else None
        )
    assert len(logs) >= 3, logs
    with warnings.catch_warnings(record=True) as caught, snx.File(path) as f:
        warnings.simplefilter("always")
        for name in logs:
            loaded = f[f"during_exposure/{name}"][()]
            assert "time" in loaded.coords, (name, loaded)
    fallbacks = [str(w.message) for w in caught if "Falling back" in str(w.message)]
    assert fallbacks == []


#: What nexgen writes for a rotation sweep that our NXmx file leaves out, and why.
NEXGEN_ONLY = {
    "instrument/detector/detectorSpecific": "Dectris-specific (nimages, pixel counts)",
    **{
        f"instrument/detector/{name}": "a link into the Eiger's _meta.h5 (Dectris-specific)"
        for name in (
            "bit_depth_image",
            "bit_depth_readout",
            "detector_readout_time",
            "flatfield",
            "flatfield_applied",
            "photon_energy",
            "pixel_mask",
            "pixel_mask_applied",
        )
    },
    "instrument/detector/threshold_energy": "snapshot_at_start in the map: in the pre entry",
    "data/data_000001": "nexgen links each image file; ours is one virtual data over them",
    "instrument/detector/detector_z": "nexgen's copy of transformations/det_z",
    "instrument/detector/underload_value": "not configured for this detector",
    "instrument/detector/count_time": "a snapshot PV in the map: in pre/post, not during",
    "instrument/attenuator": "the config has no attenuator PV",
    "sample/sample_omega": "nexgen's copy of sample/transformations/omega_*",
    "sample/beam": "nexgen's link to instrument/beam",
}


def _nexgen_reference(tmp_path: Path, frames: int) -> Path:
    """What Diamond's nexgen writes for a rotation sweep of ``frames`` images."""
    tmp_path.mkdir(exist_ok=True)
    from nexgen.nxs_utils import Attenuator, Axis, Beam, Detector, Goniometer, Source
    from nexgen.nxs_utils import TransformationType as NexgenTransformation
    from nexgen.nxs_utils.detector import EigerDetector
    from nexgen.nxs_utils.scan_utils import calculate_scan_points
    from nexgen.nxs_write.nxmx_writer import NXmxFileWriter
    from nexgen.utils import Point3D

    omega = Axis("omega", ".", NexgenTransformation.ROTATION, Point3D(-1, 0, 0), 0.0, 1.0, frames)
    det_z = Axis("det_z", ".", NexgenTransformation.TRANSLATION, Point3D(0, 0, 1), 250.0)
    scan = calculate_scan_points(omega, rotation=True, tot_num_imgs=frames)
    params = EigerDetector("Eiger2 X 9M", (3262, 3108), "Si", 65535, -1)
    fast, slow = Point3D(-1, 0, 0), Point3D(0, -1, 0)
    detector = Detector(params, [det_z], [1600.0, 1700.0], 0.1, [fast, slow])
    images = tmp_path / "ref_000001.h5"
    with h5py.File(images, "w") as f:
        f.create_dataset("data", data=np.zeros((frames, 4, 4), np.uint16))
    path = tmp_path / "ref.nxs"
    writer = NXmxFileWriter(
        path,
        Goniometer([omega], scan),
        detector,
        Source("I03"),
        Beam(0.98),
        Attenuator(1.0),
        frames,
    )
    writer.write(image_datafiles=[images])
    return path


def _names(group: h5py.Group, prefix: str = "") -> set[str]:
    """Every path below ``group``, hard links included (visititems skips them)."""
    found: set[str] = set()
    for name, item in group.items():
        path = f"{prefix}{name}"
        found.add(path)
        if isinstance(item, h5py.Group):
            found |= _names(item, f"{path}/")
    return found


def _has_what_nexgen_writes(ours: Path, tmp_path: Path, frames: int) -> None:
    """Every field nexgen writes for the same sweep is in our entry, under our names."""
    ref = _nexgen_reference(tmp_path, frames)
    rename = {"detector": "PILATUS_2M", "omega": "Rx", "sample": "Sample"}
    with h5py.File(ref, "r") as f:
        theirs = _names(f["entry"])
    with h5py.File(ours, "r") as f:
        mine = _names(f["during_exposure"])
    missing = []
    for path in sorted(theirs):
        if any(path == skip or path.startswith(skip + "/") for skip in NEXGEN_ONLY):
            continue
        parts = [rename.get(p, p) for p in path.split("/")]
        parts[-1] = parts[-1].replace("omega_", "Rx_")
        if "/".join(parts) not in mine:
            missing.append(path)
    assert missing == [], "\n".join(missing)


def _same_sweep_as_nexgen(ours: Path, tmp_path: Path, frames: int) -> None:
    """nexgen's file for the same sweep (start 0, 1 deg an image) has our omega arrays."""
    ref = _nexgen_reference(tmp_path, frames)
    with h5py.File(ref, "r") as f, h5py.File(ours, "r") as g:
        theirs = f["entry/sample/transformations"]
        mine = g["during_exposure/Sample/transformations"]
        for name in ("omega", "omega_end", "omega_increment_set"):
            expected = np.asarray(theirs[name][()], dtype=np.float64)
            got = np.asarray(mine[name.replace("omega", "Rx")][()], dtype=np.float64)
            assert got.tolist() == pytest.approx(expected.tolist()), name
            assert mine[name.replace("omega", "Rx")].attrs["units"] in ("deg", "degree")


def _write(config_name: str, tmp_path: Path) -> Path:
    """A whole experiment from the config (every PV read, the during PVs moving, the
    detector's dark, flat and projection files), written as the service writes it."""
    config = load_config(CONFIGS / config_name)
    x = simulated_experiment(config, tmp_path)
    return write_experiment(x, tmp_path / "master.nxs", config.compression)


def _valid_but_the_known(report: Any) -> None:
    """No pynxtools error, nothing of ours undocumented (provenance lives in NXcollections)
    but the definitions' known gaps, and no nexusformat error but the known ones."""
    assert report.count("pynxtools", "error") == 0, report.errors
    pynx = [f for f in report.findings if f.validator == "pynxtools"]
    assert [f for f in pynx if not f.path.endswith(PYNXTOOLS_KNOWN)] == [], pynx
    unknown = [e for e in report.errors if not any(k in e.message for k in NEXUSFORMAT_KNOWN)]
    assert unknown == []


def test_mogno_like_config_writes_an_nxtomo_that_pynxtools_passes(tmp_path: Path) -> None:
    path = _write("mogno.yaml", tmp_path)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXtomo"
        assert entry["instrument/detector/image_key"][()].tolist() == [2, 2, 1, 1] + [0] * 9
        # each projection at the middle of its exposure (stamped at its end, count_time 1 s,
        # the rotation stepping 1 deg a second); darks and flats before the scan: held at 0
        angles = entry["sample/rotation_angle"][()].tolist()
        assert angles == pytest.approx([0.0] * 4 + [i + 0.5 for i in range(9)])
        assert (
            entry["data/rotation_angle"].attrs["target"] == "/during_exposure/sample/rotation_angle"
        )
        assert entry["sample/rotation/value"].chunks is None  # 10 points: under min_points
    _opens_on_the_frames(path)
    _nxlogs_load_in_scippnexus(path)
    _nexusformat_reads_the_frames(path, "detector")
    report = validate(path)
    assert report.validators == ("assonant", "pynxtools", "nexusformat")
    # valid, and nothing of ours undocumented: provenance lives in NXcollections
    _valid_but_the_known(report)


def test_manaca_like_config_from_a_csv_map_writes_an_nxmx_that_pynxtools_passes(
    tmp_path: Path,
) -> None:
    path = _write("manaca.yaml", tmp_path)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXmx"
        module = entry["instrument/PILATUS_2M/module"]
        assert module["fast_pixel_direction"].attrs["vector"].tolist() == [-1, 0, 0]
        # PILATUS 2M: 1475 fast x 1679 slow; data_size like the data, slow then fast
        assert module["data_size"][()].tolist() == [1679, 1475]
        assert entry["data/data"].shape == (9, 1679, 1475)
        det = entry["instrument/PILATUS_2M"]
        for name, pixels in (("beam_center_x", 737.5), ("beam_center_y", 839.5)):
            assert det[name].attrs["units"] == "mm"  # a length: scipp has no unit "pixel"
            assert det[name][()] == pytest.approx(pixels * 0.172)
        assert entry["instrument/beam/incident_wavelength"].attrs["units"] == "angstrom"
        assert entry["source/name"][()].decode() == "Sirius"
        # one sweep: the dark and flat frames (not rotating) left out and named; the
        # rotation per image at the start of its exposure (each frame stamped at its end,
        # count_time 1 s): 0..8 deg, ending 1..9, one degree an image
        trans = entry["Sample/transformations"]
        assert trans["Rx"][()].tolist() == pytest.approx([float(i) for i in range(9)])
        assert trans["Rx_increment_set"][()] == pytest.approx(1.0)
        assert trans["Rx_end"][()].tolist() == pytest.approx([float(i) for i in range(1, 10)])
        assert entry["data/data"].shape[0] == 9
        assert entry["data/data"][:, 0, 0].tolist() == [0] * 9  # the projections' files
        assert entry["instrument/PILATUS_2M/data"].shape[0] == 9
        checks = entry["provenance/checks"].asstr()[()].tolist()
        assert checks == [
            "warning: /during_exposure: 4 frame(s) left out of the sweep (not rotating, or "
            "image key dark/flat): 0-3"
        ]
        assert list(entry["data"].attrs["axes"]) == ["Rx", ".", "."] and "Rx" in entry["data"]
        # the detector on its chain: det_z (distance), module_offset (beam centre), pixels
        det = entry["instrument/PILATUS_2M"]
        assert det["depends_on"][()].decode() == det["transformations/det_z"].name
        offset = det["module/module_offset"]
        assert offset.attrs["depends_on"] == det["transformations/det_z"].name
        assert det["module/fast_pixel_direction"].attrs["depends_on"] == offset.name
        x, y = 737.5 * 0.172, 839.5 * 0.172  # beam centre (pixels) x pixel size (mm)
        assert offset[()] == pytest.approx((x**2 + y**2) ** 0.5)
        assert entry["instrument/beam/incident_wavelength"].shape == ()  # one per sweep
    _has_what_nexgen_writes(path, tmp_path / "names", 9)
    _same_sweep_as_nexgen(path, tmp_path / "values", 9)
    _opens_on_the_frames(path)
    _nxlogs_load_in_scippnexus(path)
    _nexusformat_reads_the_frames(path, "PILATUS_2M")
    report = validate(path)
    _valid_but_the_known(report)


def test_geometry_that_does_not_fit_the_frames_is_an_error_named_in_the_file(
    tmp_path: Path,
) -> None:
    """data_size given as (fast, slow), a pixel size that is not the module's: named errors."""
    text = (CONFIGS / "manaca.yaml").read_text()
    text = text.replace("data_size: [1679, 1475]", "data_size: [1475, 1679]")
    text = text.replace("pv_map: manaca_pv_map.csv", f"pv_map: {CONFIGS / 'manaca_pv_map.csv'}")
    text = text.replace(
        "beam_center_x:", "x_pixel_size: {value: 0.2, units: mm}\n      beam_center_x:"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    config = load_config(bad)
    x = simulated_experiment(config, tmp_path, frame_shape=(1679, 1475))  # the real detector
    path = write_experiment(x, tmp_path / "master.nxs", config.compression)
    errors, _ = checks_of(path)
    assert errors == [
        "/during_exposure/instrument/PILATUS_2M/module/data_size is [1475, 1679] but the linked "
        "frames are 1679 x 1475 (slow, fast) (given as fast, slow: NXmx orders data_size like "
        "the data, slow then fast)",
        "/during_exposure/instrument/PILATUS_2M/x_pixel_size (0.2 mm) differs from "
        "/during_exposure/instrument/PILATUS_2M/module/fast_pixel_direction (0.172 mm)",
    ]
    report = validate(path)
    assert [str(f) for f in report.errors if f.validator == "assonant"] == [
        f"assonant error: /during_exposure: {e}" for e in errors
    ]


def test_a_config_that_cannot_fill_the_definition_is_refused_naming_the_fields(
    tmp_path: Path,
) -> None:
    text = (
        (CONFIGS / "sim.yaml")
        .read_text()
        .replace("beamline: SIM", "beamline: SIM\ndefinition: NXmx")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    message = str(err.value)
    for needed in ("sensor_material", "sensor_thickness", "DETECTOR_MODULE", "BEAM", "/ENTRY/DATA"):
        assert needed in message


@pytest.mark.parametrize("name", ["bitshuffle-lz4", "zstd", "gzip"])
def test_long_series_are_chunked_and_compressed_as_configured(tmp_path: Path, name: str) -> None:
    import hdf5plugin  # registers the filters for reading, as any reader of these files must

    from assonant_ioc.config.spec import CompressionSpec
    from tests.unit.factories import experiment

    x = experiment()
    path = write_experiment(x, tmp_path / "c.nxs", CompressionSpec(name, 0, min_points=5))
    del hdf5plugin
    with h5py.File(path, "r") as f:
        value = f["during_exposure/sample/x/value"]
        assert value.chunks is not None
        assert value.id.get_create_plist().get_nfilters() >= 1  # the compression filter
        assert value[()].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert f["pre_exposure/sample/transformations/x"].chunks is None  # a scalar: as it is


#: Reads every dataset of a file with plain h5py, hdf5plugin unimportable and no plugin path:
#: what a reader that never heard of hdf5plugin sees.
_PLAIN_READER = """
import sys
sys.modules["hdf5plugin"] = None
import h5py
bad = []
def read(name, item):
    if isinstance(item, h5py.Dataset) and not item.is_virtual:
        try:
            item[()]
        except OSError as err:
            bad.append(f"{name}: {err}")
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(read)
print("\\n".join(bad) or "ok")
"""


def _read_plainly(path: Path, env: dict[str, str]) -> str:
    """What ``_PLAIN_READER`` says of ``path`` (in its own Python, with ``env``)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", _PLAIN_READER, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout


@pytest.mark.parametrize("config_name", ["sim_tomo.yaml", "mogno.yaml"])
def test_a_long_recording_reads_without_hdf5plugin(tmp_path: Path, config_name: str) -> None:
    """The shipped configs compress with deflate, which libhdf5 has built in: every dataset of a
    long recording reads in a Python where hdf5plugin cannot be imported. The same recording
    written with bitshuffle-LZ4 does not, so the check can fail."""
    import os

    from assonant_ioc.config.spec import CompressionSpec

    config = load_config(CONFIGS / config_name)
    assert config.compression.filter == "gzip"
    x = simulated_experiment(config, tmp_path, points=2000)
    env = {**os.environ, "HDF5_PLUGIN_PATH": str(tmp_path / "no-plugins")}
    for name, spec, expected in (
        ("deflate.nx", config.compression, "ok"),
        ("lz4.nx", CompressionSpec("bitshuffle-lz4", 0, 100), "can't open directory"),
    ):
        path = write_experiment(x, tmp_path / name, spec)
        with h5py.File(path, "r") as f:  # long series are compressed
            axis = "rx" if config_name == "sim_tomo.yaml" else "rotation"
            value = f[f"during_exposure/sample/{axis}/value"]
            assert value.shape == (2000,) and value.id.get_create_plist().get_nfilters() >= 1
        out = _read_plainly(path, env)
        assert expected in out, out


@pytest.mark.parametrize(
    "config_name",
    [
        "sim",
        "sim_tomo",
        "sim_mx",
        "mogno",
        "manaca",
        "sim_saxs",
        "sim_xrf",
        "sim_xas",
        "sapucaia",
        "carnauba",
        "quati",
        "sape",
    ],
)
def test_a_file_of_every_shipped_config_opens_in_the_readers(
    tmp_path: Path, config_name: str
) -> None:
    """scippnexus loads every entry (only detector groups may fall back, by its design), silx
    finds the default plot, nexusformat reads the whole tree, plain h5py without hdf5plugin
    reads every dataset, and nabu's dataset analyzer takes the NXtomo ones."""
    import os
    import warnings

    import scippnexus as snx
    from nexusformat.nexus import nxload
    from silx.io.nxdata import get_default

    config = load_config(CONFIGS / f"{config_name}.yaml")
    shape = (16, 16) if config_name == "manaca" else None  # a 16 x 16 stand-in camera
    x = simulated_experiment(config, tmp_path, frame_shape=shape)
    path = write_experiment(x, tmp_path / "master.nx", config.compression)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with snx.File(path) as f:
            loaded = {name: f[name][()] for name in f}
    assert set(loaded) == {"pre_exposure", "during_exposure", "post_exposure"}
    said = [str(w.message) for w in caught]
    assert all("Failed to load" not in m or "as NXdetector" in m for m in said), said
    assert not [m for m in said if "Unrecognized unit" in m], said
    with h5py.File(path, "r") as f:
        plot = get_default(f)
        assert plot is not None and plot.is_valid
    tree = nxload(str(path))
    assert tree["during_exposure"].nxclass == "NXentry"
    env = {**os.environ, "HDF5_PLUGIN_PATH": str(tmp_path / "no-plugins")}
    out = _read_plainly(path, env)
    assert out.strip() == "ok", out
    if config.definition == "NXtomo":
        from nabu.resources.dataset_analyzer import analyze_dataset

        dataset = analyze_dataset(str(path), extra_options={"hdf5_entry": "during_exposure"})
        assert dataset.darks and dataset.flats and len(dataset.projections) == 9
