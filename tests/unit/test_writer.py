"""The NeXus writer: classes, units, transformations, logs, provenance, no overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.errors import WriteFailed
from assonant_ioc.model.times import iso
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.provenance import component_info, provenance
from tests.unit.factories import T0, experiment


@pytest.fixture
def nxs(tmp_path: Path) -> Path:
    return write_experiment(experiment(), tmp_path / "out" / "exp.nxs")


def test_groups_fields_and_units(nxs: Path) -> None:
    with h5py.File(nxs, "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        assert f.attrs["default"] == "during_exposure"  # the entry with a plot
        pre = f["pre_exposure"]
        assert pre.attrs["NX_class"] == "NXentry"
        assert pre["start_time"][()].decode().endswith("+00:00")
        mono = pre["instrument/mono"]
        assert mono.attrs["NX_class"] == "NXmonochromator"
        assert mono["crystal"].attrs["NX_class"] == "NXcrystal"
        assert mono["energy"][()] == 12.0
        assert mono["energy"].dtype == np.float64
        assert mono["energy"].attrs["units"] == "keV"
        assert mono["frames"][()] == 7 and mono["frames"].dtype == np.int64
        assert "units" not in mono["frames"].attrs
        assert list(mono["spectrum"][()]) == [1.5, 2.5, 3.5]
        assert mono["mode"][()].decode() == "Si111"
        energy = provenance(mono["energy"])
        assert energy["source_pv"] == "BL:E" and energy["connected"]
        assert energy["epics_timestamp"].startswith("2026-")
        lost = mono["lost"]
        assert np.isnan(lost[()])  # not a made-up zero
        assert provenance(lost)["alarm_severity"] == "INVALID"
        assert not provenance(lost)["connected"]
        # in the entry's NXcollection (which NeXus leaves open), mirroring the entry's tree:
        # nothing undocumented on the fields, nothing added inside the components
        assert pre["provenance"].attrs["NX_class"] == "NXcollection"
        assert list(pre["provenance/instrument/mono/field"].asstr()[()])[:1] == ["energy"]
        assert set(mono["energy"].attrs) == {"units"}
        assert "provenance" not in mono
        assert component_info(mono, "assonant_class") == "Monochromator"


def test_transformations_chain(nxs: Path) -> None:
    with h5py.File(nxs, "r") as f:
        sample = f["pre_exposure/sample"]
        assert sample.attrs["NX_class"] == "NXsample"
        trans = sample["transformations"]
        assert sample["depends_on"][()].decode() == "/pre_exposure/sample/transformations/rx"
        rx, x = trans["rx"], trans["x"]
        assert rx.attrs["transformation_type"] == "rotation"
        assert list(rx.attrs["vector"]) == [0.0, 1.0, 0.0]
        assert rx.attrs["units"] == "deg" and rx[()] == 45.0
        assert rx.attrs["depends_on"] == "/pre_exposure/sample/transformations/x"
        assert x.attrs["depends_on"] == "."
        assert list(x.attrs["offset"]) == [0.0, 0.0, 1.0]
        assert sample["temperature"].attrs["units"] == "K"


def test_time_series_is_an_nxlog(nxs: Path) -> None:
    with h5py.File(nxs, "r") as f:
        during = f["during_exposure"]
        log = during["sample/x"]
        assert log.attrs["NX_class"] == "NXlog"
        assert list(log["value"][()]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert list(log["time"][()]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert log["time"].attrs["units"] == "s"
        assert log["time"].attrs["start"] == iso(T0)  # times count from the recording start
        assert list(during["sample/transformations/x"][()]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert list(provenance(log)["connected"]) == [True] * 5
        assert set(log) == {"value", "time"}  # scippnexus reads an NXlog field by field


def test_never_overwrites_and_leaves_no_partial_file(nxs: Path) -> None:
    with pytest.raises(WriteFailed, match="exists"):
        write_experiment(experiment(), nxs)
    assert sorted(p.name for p in nxs.parent.iterdir()) == ["exp.nxs"]


def test_a_write_that_fails_after_the_file_is_open_leaves_nothing(tmp_path: Path) -> None:
    """The HDF5 write fails in the middle (a value h5py cannot store, in the last entry):
    the partial file existed and is removed, and nothing is at the final name."""
    from dataclasses import replace

    from assonant_ioc.model.components import Component, ComponentClass, DataField
    from assonant_ioc.model.readings import Reading
    from assonant_ioc.nexus.publish import partial_path

    x = experiment()
    bad = Reading.of("BL:bad", 1.0, T0, units="mm")
    bad = replace(bad, value=object())  # not storable: h5py raises on it
    last = x.entries[-1]
    broken = Component("broken", ComponentClass.SENSOR, {"v": DataField(bad, "mm")})
    x = replace(x, entries=(*x.entries[:-1], replace(last, instrument=(*last.instrument, broken))))
    final = tmp_path / "out.nxs"
    seen: list[bool] = []
    import h5py as _h5py

    original = _h5py.File.__init__

    def spy(self: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        original(self, name, *args, **kwargs)
        seen.append(Path(str(name)) == partial_path(final) and partial_path(final).exists())

    _h5py.File.__init__ = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(WriteFailed, match="cannot write"):
            write_experiment(x, final)
    finally:
        _h5py.File.__init__ = original  # type: ignore[method-assign]
    assert seen and seen[0]  # the partial file was open when the write failed
    assert not final.exists() and not partial_path(final).exists()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(WriteFailed, match="cannot write"):
        write_experiment(experiment(), blocker / "sub" / "exp.nxs")


def test_every_file_opens_on_a_plot_in_silx(nxs: Path, tmp_path: Path) -> None:
    """No detector frames: the NXdata plots the first recorded axis against time."""
    from silx.io.nxdata import get_default

    with h5py.File(nxs, "r") as f:
        nxdata = get_default(f)
        assert nxdata is not None and nxdata.is_valid
        assert nxdata.group.name == "/during_exposure/data"
        assert nxdata.signal_dataset_name == "x"
        assert list(nxdata.signal[()]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert nxdata.axes_dataset_names == ["time"]
        assert f["during_exposure/data/x"].attrs["target"] == "/during_exposure/sample/x/value"
        # the file opens on the recording, not on a snapshot's waveform
        assert f.attrs["default"] == "during_exposure"


def test_a_snapshot_with_a_waveform_opens_on_it(nxs: Path) -> None:
    """The pre entry holds a spectrum (a waveform PV): NXdata and @default point to it, and
    silx (so NeXpy and h5web) opens the entry on that plot."""
    from silx.io.nxdata import get_default

    with h5py.File(nxs, "r") as f:
        pre = f["pre_exposure"]
        assert pre.attrs["default"] == "data" and pre["data"].attrs["signal"] == "spectrum"
        plot = get_default(pre)
        assert plot is not None and plot.is_valid
        assert plot.signal[()].tolist() == [1.5, 2.5, 3.5]


def test_alarm_severities_are_stored_one_way_with_their_names(nxs: Path) -> None:
    """Snapshot tables and NXlog points hold the same HDF5 enumeration: int8 codes whose
    names any HDF5 reader shows."""
    with h5py.File(nxs, "r") as f:
        table = f["pre_exposure/provenance/instrument/mono/alarm_severity"]
        points = f["during_exposure/provenance/sample/x/alarm_severity"]
        names = {"NO_ALARM": 0, "MINOR": 1, "MAJOR": 2, "INVALID": 3}
        for where in (table, points):
            assert h5py.check_enum_dtype(where.dtype) == names
        fields = [x.decode() for x in f["pre_exposure/provenance/instrument/mono/field"][()]]
        assert table[fields.index("lost")] == 3 and table[fields.index("energy")] == 0
        assert points[()].tolist() == [0] * 5
