"""The journal: recordings and snapshots on disk, read back exactly; torn records dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.lifecycle.outbox import Outbox
from assonant_ioc.lifecycle.records import read_records
from assonant_ioc.model.readings import RawSnapshot
from assonant_ioc.monitor.columns import LatestColumns
from assonant_ioc.nexus.provenance import provenance
from tests.unit.factories import T0, reading


def _recorder(tmp_path: Path, pvs: list[str], flush_s: float = 60.0) -> tuple[Journal, Recorder]:
    journal = Journal(tmp_path)
    journal.begin({"experiment_id": "x"})
    units = {"B:x": "mm"}
    return journal, Recorder(journal.during_path(), pvs, T0, units.get, flush_s)


def test_recording_keeps_every_update_of_its_pvs_only(tmp_path: Path) -> None:
    journal, rec = _recorder(tmp_path, ["B:x", "B:y"])
    for i in range(10):
        rec.add("B:x", float(i), T0 + i, 0, 0, True)
    rec.add("B:other", 1.0, T0, 0, 0, True)
    assert rec.stop() == 10
    rec.add("B:x", 99.0, T0 + 1, 0, 0, True)  # after stop: ignored
    series, last = journal.read_during()
    assert [r.value for r in series["B:x"]] == [float(i) for i in range(10)]
    assert [r.timestamp for r in series["B:x"]] == [T0 + i for i in range(10)]
    assert series["B:x"][0].units == "mm" and series["B:x"][0].dtype == "float64"
    assert series["B:y"] == [] and "B:other" not in series
    assert last is not None and last >= rec.durable_at - 1e-6


def test_recording_takes_late_updates_stamped_before_the_stop(tmp_path: Path) -> None:
    journal, rec = _recorder(tmp_path, ["B:x"])
    rec.add("B:x", 1.0, T0 + 1, 0, 0, True)
    rec.close(T0 + 2)
    rec.add("B:x", 2.0, T0 + 1.9, 0, 0, True)  # arrives after the stop command, stamped before
    rec.add("B:x", 3.0, T0 + 2.1, 0, 0, True)  # stamped after the stop: not part of it
    rec.stop()
    rec.add("B:x", 1.5, T0 + 1.5, 0, 0, True)  # after stop(): nothing more
    assert [r.value for r in journal.read_during()[0]["B:x"]] == [1.0, 2.0]


def test_values_alarms_and_disconnections_round_trip(tmp_path: Path) -> None:
    journal, rec = _recorder(tmp_path, ["B:w", "B:s", "B:i"])
    rec.add("B:w", np.array([1.5, 2.5, float("nan")]), T0, 1, 3, True)
    rec.add("B:s", "text é", T0 + 1, 2, 7, True)
    rec.add("B:i", 7, T0 + 2, 0, 0, True)
    rec.flush()  # two records
    rec.add("B:i", None, T0 + 3, 3, 17, False)
    rec.stop()
    series, _ = journal.read_during()
    w = series["B:w"][0]
    assert w.value is not None and w.value[:2] == (1.5, 2.5) and np.isnan(w.value[2])  # type: ignore[index,arg-type]
    assert w.shape == (3,) and int(w.severity) == 1 and w.status == 3
    assert series["B:s"][0].value == "text é" and series["B:s"][0].dtype == "str"
    i0, i1 = series["B:i"]
    assert i0.value == 7 and i0.connected
    assert i1.value is None and not i1.connected and int(i1.severity) == 3


def test_a_torn_last_record_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    journal, rec = _recorder(tmp_path, ["B:x"])
    rec.add("B:x", 1.0, T0, 0, 0, True)
    rec.flush()
    rec.add("B:x", 2.0, T0 + 1, 0, 0, True)
    rec.stop()
    data = journal.during_path().read_bytes()
    journal.during_path().write_bytes(data[:-5])  # a kill in the middle of the last write
    series, _ = journal.read_during()
    assert [r.value for r in series["B:x"]] == [1.0]
    assert len(list(read_records(journal.during_path()))) == 2  # header + first batch


def test_a_failed_flush_keeps_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, rec = _recorder(tmp_path, ["B:x"])
    rec.add("B:x", 1.0, T0, 0, 0, True)

    def full(*_: object) -> int:
        raise OSError(28, "No space left on device")

    real = rec._fh.write
    monkeypatch.setattr(rec, "_fh", _Failing(rec._fh, full))
    with pytest.raises(OSError):
        rec.flush()
    rec.add("B:x", 2.0, T0 + 1, 0, 0, True)
    monkeypatch.setattr(rec._fh, "write", real)
    rec.stop()
    assert [r.value for r in journal.read_during()[0]["B:x"]] == [1.0, 2.0]


class _Failing:
    def __init__(self, fh: object, write: object) -> None:
        self._fh, self.write = fh, write

    def __getattr__(self, name: str) -> object:
        return getattr(self._fh, name)


def test_snapshots_and_frames_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.begin({"experiment_id": "x"})
    snap = RawSnapshot(
        {
            "B:a": (1.25, T0, 0, 0, True),
            "B:b": ("on", T0 + 1, 1, 5, True),
            "B:n": (7, T0 + 2, 2, 3, True),
            "B:w": ([1, 2, 3], T0 + 3, 0, 0, True),
            "B:gone": (None, T0 + 4, 3, 17, False),
        },
        {"B:a": "keV", "B:gone": "mm"},
        {"B:gone": 2.5},
    )
    journal.save_snapshot("pre", snap)
    got = journal.load_snapshot("pre")
    assert got == snap.readings()
    assert got["B:a"] == reading("B:a", 1.25, T0, units="keV")
    assert got["B:b"].value == "on" and int(got["B:b"].severity) == 1 and got["B:b"].status == 5
    assert got["B:n"].value == 7 and got["B:n"].dtype == "int64"
    assert got["B:w"].value == (1, 2, 3) and got["B:w"].shape == (3,)
    gone = got["B:gone"]
    assert not gone.connected and gone.value is None and gone.units == "mm"
    journal.add_frame_file("cam", "/d/a.h5")
    journal.add_frame_file("cam", "/d/b.h5")
    with open(journal.dir / "frames.log", "a") as fh:
        fh.write('{"component": "cam", "pa')  # torn
    assert journal.frame_files() == {"cam": ["/d/a.h5", "/d/b.h5"]}
    journal.discard()
    assert not journal.exists()


def test_a_snapshot_after_a_unit_or_last_value_changed_has_the_new_ones(tmp_path: Path) -> None:
    """The header of PVs, units and last values is encoded once while they stay the same:
    a change is never hidden by it."""
    journal = Journal(tmp_path)
    journal.begin({"experiment_id": "x"})
    raw = {"B:a": (1.0, T0, 0, 0, True), "B:gone": (None, T0, 3, 17, False)}
    journal.save_snapshot("pre", RawSnapshot(raw, {"B:a": "keV"}, {"B:gone": 2.5}))
    journal.save_snapshot("post", RawSnapshot(raw, {"B:a": "eV"}, {"B:gone": 3.5}))
    pre, post = journal.load_snapshot("pre"), journal.load_snapshot("post")
    assert pre["B:a"].units == "keV" and post["B:a"].units == "eV"
    assert read_snapshot_last(journal, "pre") == {"B:gone": 2.5}
    assert read_snapshot_last(journal, "post") == {"B:gone": 3.5}


def _fed(columns: LatestColumns, updates: list[tuple[str, tuple]]) -> dict[str, tuple]:
    latest: dict[str, tuple] = {}
    for pv, raw in updates:
        latest[pv] = raw
        columns.changed_pv(pv)  # as the monitor does: the row is brought up to date at take
    return latest


def test_the_monitors_columns_give_the_same_snapshot_as_its_updates(tmp_path: Path) -> None:
    """The monitor keeps its updates as the journal's columns too (the pre snapshot then
    encodes nothing): every kind of value, a PV whose kind changed, a disconnected PV and
    PVs never heard from come back as the updates themselves give them."""
    pvs = ["B:a", "B:b", "B:n", "B:w", "B:gone", "B:never", "B:flip", "B:big"]
    columns = LatestColumns(pvs)
    first = [
        ("B:flip", ("text", T0, 0, 0, True)),
        ("B:gone", (4.5, T0, 0, 0, True)),
        ("B:a", (1.25, T0, 0, 0, True)),
        ("B:b", ("on", T0 + 1, 1, 5, True)),
    ]
    latest = _fed(columns, first)
    columns.take(latest, 1)  # a snapshot between: the rows changed since are brought up to date
    latest |= _fed(
        columns,
        [
            ("B:n", (7, T0 + 2, 2, 3, True)),
            ("B:w", ([1, 2, 3], T0 + 3, 0, 0, True)),
            ("B:gone", (None, T0 + 4, 3, 17, False)),
            ("B:flip", (2.5, T0 + 5, 0, 0, True)),
            ("B:big", (2**70, T0 + 6, 0, 0, True)),
        ],
    )
    units, last = {"B:a": "keV", "B:gone": "mm"}, {"B:gone": 4.5}
    taken = columns.take(latest, 1)
    assert taken.pvs == [pv for pv in pvs if pv != "B:never"]  # the configuration's order
    journal = Journal(tmp_path)
    journal.begin({"experiment_id": "x"})
    journal.save_snapshot("pre", RawSnapshot(latest, units, last, taken))
    got = journal.load_snapshot("pre")
    assert got == RawSnapshot(latest, units, last).readings()
    assert got["B:flip"].value == 2.5 and got["B:n"].dtype == "int64"
    assert got["B:big"] == reading("B:big", 2**70, T0 + 6, units="")
    assert "B:never" not in got and not got["B:gone"].connected
    assert columns.disconnected() == ["B:gone"]
    # a unit changes: a new layout, so the next snapshot's header has the new unit
    columns.changed()
    journal.save_snapshot(
        "post", RawSnapshot(latest, {**units, "B:a": "eV"}, last, columns.take(latest, 1))
    )
    assert journal.load_snapshot("post")["B:a"].units == "eV"


def test_a_snapshot_carries_the_meta_of_its_step(tmp_path: Path) -> None:
    """A pre snapshot from Idle is one durable write: the experiment's meta goes in the
    snapshot's file; the newest meta saved (there, or in meta.json) is the one read back,
    by a fresh journal too, whose next save is newer still."""
    journal = Journal(tmp_path)
    journal.begin(None)
    assert not journal.exists()
    snap = RawSnapshot({"B:a": (1.0, T0, 0, 0, True)}, {}, {})
    journal.save_snapshot("pre", snap, {"experiment_id": "x", "state": "pre"})
    assert journal.exists() and not (journal.dir / "meta.json").exists()
    assert journal.load_meta()["state"] == "pre"
    journal.save_meta({"experiment_id": "x", "state": "recording"})
    assert journal.load_meta()["state"] == "recording"
    journal.save_snapshot("post", snap, {"experiment_id": "x", "state": "post"})
    again = Journal(tmp_path)
    assert again.load_meta()["state"] == "post"
    again.save_meta({"experiment_id": "x", "state": "writing"})
    assert Journal(tmp_path).load_meta()["state"] == "writing"


def read_snapshot_last(journal: Journal, moment: str) -> dict[str, object]:
    from assonant_ioc.lifecycle.records import read_snapshot

    return dict(read_snapshot(journal.dir / f"{moment}.log").last)


def test_outbox_keeps_order_until_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for n in range(3):
        box.put(f"k{n}", {"event_id": f"{n:032x}", "n": n}, ready=n != 1)
    again = Outbox(tmp_path)  # a restart
    pending = again.pending()
    assert [p.key for p in pending] == ["k0", "k1", "k2"]
    assert [p.ready for p in pending] == [True, False, True]
    again.remove(pending[0])
    assert [p.event["n"] for p in Outbox(tmp_path).pending()] == [1, 2]
    assert json.loads(pending[1].path.read_text())["ready"] is False


def test_the_file_built_from_the_journal_holds_every_recorded_point(tmp_path: Path) -> None:
    import h5py

    from assonant_ioc.config import load_config
    from assonant_ioc.lifecycle.build import BuildJob, build

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "sim.yaml")
    journal = Journal(tmp_path / "state")
    x, ring = "SIM:smp:x:RBV", "SIM:ring:current"
    meta = {
        "experiment_id": "j1",
        "captured": ["pre", "during"],
        "moments": {
            "pre": {"start": T0, "end": T0},
            "during": {
                "start": T0,
                "end": T0 + 10,
                "interrupted": {"down_from": T0 + 9, "up_at": T0 + 20},
            },
        },
    }
    journal.begin(meta)
    journal.save_snapshot("pre", RawSnapshot({x: (1.5, T0, 0, 0, True)}, {x: "mm"}, {}))
    rec = Recorder(journal.during_path(), [x, ring], T0, {x: "mm"}.get, 60.0)
    for i in range(5):
        rec.add(x, 1.5 + i, T0 + i, 0, 0, True)
    rec.add(ring, None, T0 + 2, 3, 17, False)
    rec.add(ring, 100.25, T0 + 3, 1, 4, True)
    rec.stop()
    final = tmp_path / "data" / "j1.nxs"
    tmp, event = build(
        BuildJob(config, str(tmp_path / "state"), str(final), "j1", "s", "", "ab" * 16)
    )
    assert event["event_id"] == "ab" * 16 and event["readings_captured"] > 7
    with h5py.File(tmp, "r") as f:
        assert f["pre_exposure/sample/transformations/x"][()] == 1.5
        log_x = f["during_exposure/sample/x"]
        # the recorded points, then the gap marked at the last durable point
        assert list(log_x["value"][:5]) == [1.5, 2.5, 3.5, 4.5, 5.5]
        assert np.isnan(log_x["value"][5]) and not provenance(log_x)["connected"][5]
        assert list(log_x["time"][:5]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert log_x["value"].attrs["units"] == "mm"
        cur = f["during_exposure/instrument/storage_ring/current"]
        assert np.isnan(cur["value"][0]) and cur["value"][1] == 100.25
        where = provenance(cur)
        assert list(where["connected"][:2]) == [False, True]
        assert list(where["alarm_severity"][:2]) == [3, 1] and where["alarm_status"][1] == 4
        assert "service_interruption" in f["during_exposure"]


def _beamline_second(rec: Recorder, pvs: list[str], second: int, rng: np.random.Generator) -> None:
    """A second of a beamline at 10 Hz: a third of the PVs still, a third moving, a third
    noisy (a current, a temperature), each update stamped by its IOC."""
    for tick in range(10):
        at = T0 + second + tick / 10
        for i, pv in enumerate(pvs):
            kind = i % 3
            value = 100.0 + i if kind == 0 else i + (second * 10 + tick) * 0.01
            if kind == 2:
                value = 100.0 + i + float(rng.normal(0, 0.01))
            rec.add(pv, value, at + float(rng.random()) * 0.01, 0, 0, True)


def test_a_recording_takes_at_most_16_bytes_a_reading_and_reads_back_exactly(
    tmp_path: Path,
) -> None:
    """1,000 PVs at 10 Hz for 5 s, one batch a second as the flush thread makes them: the
    journal's bytes per reading (header records included), and every value and time back."""
    pvs = [f"B:pv{i}" for i in range(1000)]
    journal, rec = _recorder(tmp_path, pvs)
    rng = np.random.default_rng(7)
    sent: dict[str, list[tuple[float, float]]] = {pv: [] for pv in pvs}
    original_add = rec.add

    def add(pv: str, value: float, t: float, sev: int, status: int, conn: bool) -> None:
        sent[pv].append((value, t))
        original_add(pv, value, t, sev, status, conn)

    rec.add = add  # type: ignore[method-assign]
    for second in range(5):
        _beamline_second(rec, pvs, second, rng)
        rec.flush()
    rec.stop()
    readings = 1000 * 10 * 5
    per_reading = journal.during_path().stat().st_size / readings
    assert per_reading <= 16, per_reading  # 34 unpacked
    series, _ = journal.read_during()
    for pv in pvs[::97]:
        got = series[pv]
        values = got.values if hasattr(got, "values") else [r.value for r in got]
        times = got.times if hasattr(got, "times") else [r.timestamp for r in got]
        assert list(values) == [v for v, _ in sent[pv]]
        assert list(times) == [t for _, t in sent[pv]]


def test_a_journal_of_unpacked_batches_still_recovers(tmp_path: Path) -> None:
    """A recording journaled before batches were packed (a service upgraded with an
    experiment in progress) reads back as it was written."""
    from assonant_ioc.lifecycle import records

    journal = Journal(tmp_path)
    journal.begin({"experiment_id": "x"})
    with open(journal.during_path(), "ab", buffering=0) as fh:
        records.append_record(fh, {"pvs": ["B:x", "B:s"], "start": T0})
        values = records.encode_values([1.5, "on", 2.5], [True, True, True])
        header = {"at": T0 + 3, "n": 3, "o": values.pop("o"), "u": {"0": "mm"}}
        header["d"] = {"0": "float64", "1": "str"}
        columns = {"p": [0, 1, 0], "t": [T0, T0 + 1, T0 + 2], "s": [0, 1, 0], "a": [0, 3, 0]}
        records.append_record(fh, header, {**columns, "c": [True] * 3, **values}, packed=False)
    series, last = journal.read_during()
    assert last == T0 + 3
    assert [r.value for r in series["B:s"]] == ["on"]
    x = series["B:x"]
    assert list(x.values if hasattr(x, "values") else [r.value for r in x]) == [1.5, 2.5]
