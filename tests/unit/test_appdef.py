"""Application definitions from the example configs: checked at load, validated after writing."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from assonant_ioc.config import load_config
from assonant_ioc.errors import ConfigError
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.validate import validate
from assonant_ioc.sim.experiment import simulated_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: nexusformat 2.1 findings that are not faults of the file (README, "Validation")
#: pynxtools findings that are the definitions' gaps, not faults of the file: nabu reads
#: darks and flats from image_key_control, which NXtomo does not document (nxtomo itself
#: writes it as a "non-standard extension")
PYNXTOOLS_KNOWN = ("/instrument/detector/image_key_control",)
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


def _write(config_name: str, tmp_path: Path) -> Path:
    """A whole experiment from the config (every PV read, the during PVs moving, the
    detector's dark, flat and projection files), written as the service writes it."""
    config = load_config(CONFIGS / config_name)
    x = simulated_experiment(config, tmp_path)
    return write_experiment(x, tmp_path / "master.nxs", config.compression)


def test_mogno_like_config_writes_an_nxtomo_that_pynxtools_passes(tmp_path: Path) -> None:
    path = _write("mogno.yaml", tmp_path)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXtomo"
        assert entry["instrument/detector/image_key"][()].tolist() == [2, 2, 1, 1] + [0] * 9
        # the rotation held before the scan, then the position reported before each frame
        angles = entry["sample/rotation_angle"][()].tolist()
        assert angles == [0.0] * 4 + [float(i) for i in range(9)]
        assert (
            entry["data/rotation_angle"].attrs["target"] == "/during_exposure/sample/rotation_angle"
        )
        assert entry["sample/rotation/value"].chunks is None  # 10 points: under min_points
    _opens_on_the_frames(path)
    _nxlogs_load_in_scippnexus(path)
    _nexusformat_reads_the_frames(path, "detector")
    report = validate(path)
    assert report.validators == ("pynxtools", "nexusformat")
    # valid, and nothing of ours undocumented: provenance lives in NXcollections
    assert report.count("pynxtools", "error") == 0, report.errors
    pynx = [f for f in report.findings if f.validator == "pynxtools"]
    assert [f for f in pynx if not f.path.endswith(PYNXTOOLS_KNOWN)] == [], pynx
    unknown = [e for e in report.errors if not any(k in e.message for k in NEXUSFORMAT_KNOWN)]
    assert unknown == []


def test_manaca_like_config_from_a_csv_map_writes_an_nxmx_that_pynxtools_passes(
    tmp_path: Path,
) -> None:
    path = _write("manaca.yaml", tmp_path)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()].decode() == "NXmx"
        module = entry["instrument/PILATUS_2M/module"]
        assert module["fast_pixel_direction"].attrs["vector"].tolist() == [-1, 0, 0]
        assert module["data_size"][()].tolist() == [1475, 1679]
        assert entry["instrument/beam/incident_wavelength"].attrs["units"] == "angstrom"
        assert entry["source/name"][()].decode() == "Sirius"
    _opens_on_the_frames(path)
    _nxlogs_load_in_scippnexus(path)
    _nexusformat_reads_the_frames(path, "PILATUS_2M")
    report = validate(path)
    assert report.count("pynxtools", "error") == 0, report.errors
    assert report.count("pynxtools", "warning") == 0, report.findings
    unknown = [e for e in report.errors if not any(k in e.message for k in NEXUSFORMAT_KNOWN)]
    assert unknown == []


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
