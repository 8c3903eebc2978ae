"""Application definitions as tables: every shipped table parses, a bad one is named, and a
config that cannot fill a definition is refused in its own terms."""

from __future__ import annotations

from pathlib import Path

import pytest

from assonant_ioc import definitions
from assonant_ioc.config import load_config
from assonant_ioc.config.loader import resolve_config
from assonant_ioc.errors import ConfigError


def test_the_shipped_tables_are_the_definitions_a_config_may_name() -> None:
    assert set(definitions.names()) == {"NXtomo", "NXmx", "NXsas", "NXfluo", "NXxas", "NXarpes"}
    for name in definitions.names():
        table = definitions.get(name)
        assert table.require and table.fill, name


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("definition: NXother\n", "must say 'definition: NXbad'"),
        ("definition: NXbad\nfill:\n  - shuffle: {}\n", "fill[0] must be one of step"),
        ("definition: NXbad\nrequire:\n  - {name: x}\n", "require[0]: a mapping with"),
        ("definition: NXbad\nrequire:\n  - {sample: true, colour: red}\n", "unknown keys"),
        ("definition: NXbad\n  : [\n", "not YAML"),
    ],
)
def test_a_bad_table_is_refused_naming_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(definitions.TableError) as err:
        definitions.parse("NXbad", text)
    assert says in str(err.value) and "NXbad" in str(err.value)


def _refused(tmp_path: Path, config: str, old: str, new: str) -> str:
    text = resolve_config(config).read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    return str(err.value)


def test_nxsas_without_a_distance_and_with_a_pixel_size_in_seconds_is_refused(
    tmp_path: Path,
) -> None:
    message = _refused(
        tmp_path,
        "sim_saxs",
        "      distance: {value: 500.0, units: mm}  # sample to detector\n"
        "      x_pixel_size: {value: 0.172, units: mm}",
        "      x_pixel_size: {value: 0.172, units: s}",
    )
    assert "NXsas: /ENTRY/INSTRUMENT/DETECTOR/distance is required: give 'detector'" in message
    assert "x_pixel_size in 'detector' needs units of [length], not 's'" in message


def test_nxxas_without_the_element_and_transmission_counter_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, "sim_xas", "  - name: itrans\n", "  - name: it\n")
    assert "NXxas: /ENTRY/INSTRUMENT/itrans is required: add a Detector component named" in (
        message
    )
    message = _refused(tmp_path, "sim_xas", "    element: Cu\n", "")
    assert "/ENTRY/SAMPLE/element is required: give 'sample' a element" in message


def test_nxfluo_energy_calibration_must_be_an_energy(tmp_path: Path) -> None:
    message = _refused(
        tmp_path,
        "sim_xrf",
        'energy_gain: {pv: "$(BL)mca:CalibSlope", units: keV',
        'energy_gain: {pv: "$(BL)mca:CalibSlope", units: mm',
    )
    assert "energy_gain in 'fluorescence' needs units of [energy], not 'mm'" in message


def test_nxarpes_added_as_a_table_alone_gives_a_valid_file(tmp_path: Path) -> None:
    """NXarpes is a table and a config, nothing else: a simulated experiment on SAPE's
    config gives the analyser's images with their angle and energy axes from its
    calibration, and pynxtools finds the entry valid."""
    import h5py
    import numpy as np

    from assonant_ioc.nexus import write_experiment
    from assonant_ioc.nexus.validate import validate
    from assonant_ioc.sim.experiment import simulated_experiment

    # the simulation reads 1.5 from every PV: the lens mode, a text, is a constant here
    text = resolve_config("sape").read_text()
    lens = '      lens_mode: {pv: "$(BL)C:ANA01:LensMode_RBV"}\n'
    assert lens in text
    (tmp_path / "sape.yaml").write_text(
        text.replace(lens, "").replace(
            "      acquisition_mode: fixed\n",
            "      acquisition_mode: fixed\n      lens_mode: Angular30\n",
        )
    )
    config = load_config(tmp_path / "sape.yaml")
    x = simulated_experiment(config, tmp_path, frame_shape=(6, 10))
    path = write_experiment(x, tmp_path / "arpes.nxs", config.compression)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()] == b"NXarpes"
        analyser = entry["instrument/analyser"]
        assert analyser["data"].shape[1:] == (6, 10)
        before = f["pre_exposure/instrument/analyser"]  # the calibration, a snapshot PV
        offset, step = float(before["angle_offset"][()]), float(before["angle_step"][()])
        assert np.allclose(analyser["angles"][()], offset + step * np.arange(6))
        assert analyser["angles"].attrs["units"] == "deg"
        assert analyser["energies"].shape == (10,) and analyser["energies"].attrs["units"] == "eV"
        assert list(entry["data"].attrs["axes"]) == [".", "angles", "energies"]
        assert analyser["pass_energy"].ndim == 0  # the recorded series as one value
    report = validate(str(path))
    assert report.verdicts == ("during_exposure (NXarpes): valid",), report.verdicts
