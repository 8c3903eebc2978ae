"""Snapshots: readings and recordings become entries of the configured components."""

from __future__ import annotations

from pathlib import Path

from assonant_ioc.config import load_config
from assonant_ioc.model.components import DataField, Moment, TimeSeries
from assonant_ioc.snapshots import build_entry
from tests.unit.factories import T0, reading

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_pre_snapshot_uses_latest_readings_and_marks_missing_pvs_disconnected() -> None:
    config = load_config(CONFIGS / "sim.yaml", macros={"BL": "B:"})
    readings = {"B:mono:energy:RBV": reading("B:mono:energy:RBV", 9.5, units="keV")}
    entry = build_entry(config, Moment.PRE, readings, T0, T0, sample_name="s1")
    comps = {c.name: c for c in entry.instrument}
    energy = comps["monochromator"].fields["energy"]
    assert isinstance(energy, DataField) and energy.reading.value == 9.5
    wl = comps["monochromator"].fields["wavelength"]
    assert isinstance(wl, DataField) and not wl.reading.connected and wl.units == "angstrom"
    assert entry.sample is not None
    name = entry.sample.fields["name"]
    assert isinstance(name, DataField) and name.reading.value == "s1"
    assert comps["storage_ring"].fields["probe"].reading.value == "x-ray"  # type: ignore[union-attr]


def test_during_entry_holds_time_series_and_chains_skip_absent_axes() -> None:
    config = load_config(CONFIGS / "manaca.yaml")
    series = {
        "MNC:B:GONIO:Omega.RBV": [
            reading("MNC:B:GONIO:Omega.RBV", float(a), T0 + a) for a in range(3)
        ]
    }
    entry = build_entry(config, Moment.DURING, series, T0, T0 + 3)
    assert entry.sample is not None
    rx = entry.sample.axes["Rx"]
    assert isinstance(rx.value, TimeSeries) and rx.value.values == [0.0, 1.0, 2.0]
    assert rx.depends_on == "."  # x and y are pre/post only: the chain ends here
    # only what records during and what the config fixes (the map's names made NeXus
    # names; the ring's constants and the beam from the YAML)
    assert [c.name for c in entry.instrument] == ["Storage_Ring", "PILATUS_2M", "beam"]
