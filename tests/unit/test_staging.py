"""The during entry staged while recording: the file EndOfExperiment writes from it holds
exactly what the file built from the journal holds; anything irregular falls back to the
journal; a staging file this process did not build is never read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assonant_ioc.config import load_config
from assonant_ioc.config.spec import BeamlineConfig, CompressionSpec
from assonant_ioc.lifecycle import staging
from assonant_ioc.lifecycle.build import BuildJob, build
from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.model.components import Moment
from assonant_ioc.model.readings import RawSnapshot
from tests.unit.factories import T0

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim.yaml"
RING, ENERGY, COUNTER, TEMP, ACQUIRE, RX, X = (
    "SIM:ring:current",
    "SIM:mono:energy:RBV",
    "SIM:det:ArrayCounter_RBV",
    "SIM:det:Temperature",
    "SIM:det:Acquire",
    "SIM:smp:rx:RBV",
    "SIM:smp:x:RBV",
)


@pytest.fixture(autouse=True)
def _no_stage_left() -> Any:
    """Each test starts as a new worker process would: nothing staged."""
    staging._STAGE = None
    yield
    if staging._STAGE is not None and staging._STAGE.file is not None:
        staging._STAGE.file.close()
    staging._STAGE = None


def _begin(state: Path, config: BeamlineConfig) -> tuple[Journal, Recorder]:
    journal = Journal(state)
    journal.begin(
        {
            "experiment_id": "s1",
            "captured": ["pre", "during"],
            "moments": {"pre": {"start": T0, "end": T0}, "during": {"start": T0, "end": None}},
        }
    )
    snap = {pv: (1.0, T0, 0, 0, True) for pv in config.pvs(Moment.PRE)}
    journal.save_snapshot("pre", RawSnapshot(snap, {}, {}))
    pvs = config.pvs(Moment.DURING)
    units = {X: "mm", RX: "deg", RING: "mA"}
    return journal, Recorder(journal.during_path(), pvs, T0, units.get, 60.0)


def _second(rec: Recorder, s: int) -> None:
    """A second at 10 Hz: floats moving, an integer counter (disconnected once, at s == 3),
    a string PV (the detector's Acquire as text)."""
    for tick in range(10):
        at = T0 + s + tick / 10
        rec.add(RING, 100.0 - 0.01 * (s * 10 + tick), at, 0, 0, True)
        rec.add(ENERGY, 12.0, at, 0, 0, True)
        rec.add(TEMP, 21.5 + 0.001 * tick, at, 1 if tick == 5 else 0, 4 if tick == 5 else 0, True)
        rec.add(RX, 1.8 * (s * 10 + tick), at, 0, 0, True)
        rec.add(X, 0.5, at, 0, 0, True)
        if s == 3 and tick == 4:
            rec.add(COUNTER, None, at, 3, 17, False)
        else:
            rec.add(COUNTER, s * 10 + tick, at, 0, 0, True)
        rec.add(ACQUIRE, "Acquire" if tick % 2 else "Done", at, 0, 0, True)


def _finish(journal: Journal, rec: Recorder) -> None:
    rec.stop()
    meta = journal.load_meta()
    meta["moments"]["during"]["end"] = T0 + 10
    journal.save_meta(meta)


def _plain(value: Any) -> Any:
    """An attribute's value to compare: text as text, arrays as lists."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [x.decode() if isinstance(x, bytes) else x for x in value.ravel()]
    return value


def _datasets(path: Path) -> dict[str, tuple[Any, str, dict[str, Any]]]:
    import h5py

    out: dict[str, tuple[Any, str, dict[str, Any]]] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                data = item[()]
                if item.dtype.kind == "O":
                    data = [x.decode() if isinstance(x, bytes) else x for x in np.ravel(data)]
                out[name] = (data, str(item.dtype), dict(item.attrs))

        f.visititems(visit)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else a == b


def _build(config: BeamlineConfig, state: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    tmp, event = build(BuildJob(config, str(state), str(out / "s1.nxs"), "s1", "s", "", "e" * 32))
    return Path(tmp), event


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_file_from_the_staged_recording_equals_the_file_from_the_journal(
    tmp_path: Path, compression: str
) -> None:
    config = replace(load_config(CONFIG), compression=CompressionSpec(compression, 4, 10))
    state = tmp_path / "state"
    journal, rec = _begin(state, config)
    for s in range(6):
        _second(rec, s)
        rec.flush()
        if s % 2:  # a round every two seconds, as the service does
            done = staging.stage(str(state), T0, config.compression)
            assert done["given_up"] == "" and done["rows"] == 70 * (s + 1)
    _second(rec, 6)  # the last second is staged at EndOfExperiment
    _finish(journal, rec)
    staged, event_a = _build(config, state, tmp_path / "a")
    assert not (journal.dir / staging.STAGING).exists()  # moved: it is the file
    journal_built, event_b = _build(config, state, tmp_path / "b")  # nothing staged now

    a, b = _datasets(staged), _datasets(journal_built)
    assert sorted(a) == sorted(b)
    for name in b:
        (va, ta, attrs_a), (vb, tb, attrs_b) = a[name], b[name]
        assert ta == tb, name
        assert _same(va, vb), name
        assert attrs_a.keys() == attrs_b.keys(), name
        for key, value in attrs_b.items():  # units, start, NX_class...: the values too
            assert _same(_plain(attrs_a[key]), _plain(value)), (name, key)
    for key in ("readings_captured", "readings_disconnected", "moments", "definition"):
        assert event_a[key] == event_b[key], key
    import h5py

    with h5py.File(staged, "r") as f:
        counter = f["during_exposure/instrument/detector/frame_count"]
        value = counter["value"]
        assert value.maxshape == (None,)  # the staged dataset, linked in: not rewritten
        assert value.dtype == np.float64 and np.isnan(value[34])  # widened at s == 3
        assert value[35] == 35.0 and len(value) == 70
        assert "staging" not in f
        if compression == "gzip":
            assert value.compression == "gzip"


def _staged_then(tmp_path: Path, extra: Any) -> tuple[BeamlineConfig, Path, Path]:
    """Stage two seconds, apply ``extra(rec)``, finish and build; returns the built file."""
    config = load_config(CONFIG)
    state = tmp_path / "state"
    journal, rec = _begin(state, config)
    for s in range(2):
        _second(rec, s)
        rec.flush()
    assert staging.stage(str(state), T0, config.compression)["given_up"] == ""
    extra(rec)
    _finish(journal, rec)
    tmp, _ = _build(config, state, tmp_path / "out")
    return config, state, tmp


def test_a_waveform_in_the_recording_gives_staging_up_and_the_journal_builds_it(
    tmp_path: Path,
) -> None:
    import h5py

    def waveform(rec: Recorder) -> None:
        rec.add(TEMP, np.array([1.0, 2.0, 3.0]), T0 + 2.5, 0, 0, True)

    _, state, tmp = _staged_then(tmp_path, waveform)
    with h5py.File(tmp, "r") as f:
        temp = f["during_exposure/instrument/detector/temperature"]
        assert temp["value"].maxshape != (None,)  # written from the journal
        assert "staging" not in f
    assert not (state / "experiment" / staging.STAGING).exists()


def test_a_staging_file_not_built_by_this_process_is_never_read(tmp_path: Path) -> None:
    """A restart or a replaced worker: what is on disk may be cut short by the kill."""
    import h5py

    def new_process(rec: Recorder) -> None:
        _second(rec, 2)
        staging._STAGE.file.close()  # type: ignore[union-attr]
        staging._STAGE = None  # the worker died; its staging file stays, half written
        path = Path(rec.path).parent / staging.STAGING
        with open(path, "r+b") as fh:
            fh.seek(path.stat().st_size // 2)
            fh.write(b"\xff" * 64)

    _, _, tmp = _staged_then(tmp_path, new_process)
    with h5py.File(tmp, "r") as f:
        ring = f["during_exposure/instrument/storage_ring/current/value"]
        assert ring.maxshape != (None,) and len(ring) == 30
        assert ring[29] == pytest.approx(100.0 - 0.29)


def test_a_short_recording_of_many_pvs_is_built_from_the_journal_not_from_empty_chunks(
    tmp_path: Path,
) -> None:
    """3 s of 2,000 PVs at 10 Hz staged in chunks of a minute each: 41 MB of chunks for
    1.2 MB of readings. The build takes the journal instead, and the staging file is gone."""
    journal = Journal(tmp_path / "state")
    journal.begin({"experiment_id": "many"})
    pvs = [f"B:pv{i}" for i in range(2000)]
    rec = Recorder(journal.during_path(), pvs, T0, lambda _pv: "", 60.0)
    for s in range(3):
        for tick in range(10):
            for i, pv in enumerate(pvs):
                rec.add(pv, float(i), T0 + s + tick / 10, 0, 0, True)
        rec.flush()
        staging.stage(str(tmp_path / "state"), T0, CompressionSpec())
    rec.stop()
    assert staging._STAGE is not None and staging._STAGE.chunk == 1024
    assert staging.take(journal, T0, CompressionSpec(), tmp_path / "out" / ".f.partial") is None
    assert not (journal.dir / staging.STAGING).exists()
    assert not (tmp_path / "out" / ".f.partial").exists()


def test_the_validators_never_open_a_staged_file_for_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nexusformat's validator reads inside ``with nxopen(...)``, which opens ``r+``. A
    staged file has HDF5 1.10's superblock: a write open marks it on disk, and a reader
    beside the validator (a scientist's program, the catalog) was refused with "file is
    already open for write" (found by the demo's test under load)."""
    import h5py

    from assonant_ioc.nexus.validate import validate

    _, _, tmp = _staged_then(tmp_path, lambda rec: None)
    with h5py.File(tmp, "r") as f:  # the staged dataset is the file's: HDF5 1.10's superblock
        assert f["during_exposure/instrument/storage_ring/current/value"].maxshape == (None,)
    modes: list[str] = []
    real = h5py.File

    def spy(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        modes.append(mode)
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", spy)
    report = validate(tmp)
    assert modes and set(modes) == {"r"}, modes
    ran = report.as_event()["validators"]
    assert {"pynxtools", "nexusformat"} <= set(ran), ran  # the validators ran
    with real(tmp, "r", locking=False) as f:  # and the file opens as before
        assert "during_exposure" in f
