"""The catalog's records and its tiled store (a real SQLite catalog in a temporary directory;
no Kafka: the consumer's path is tested in tests/system/test_catalog.py)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest

from assonant_ioc.catalog import nexus_meta
from assonant_ioc.catalog.backfill import backfill
from assonant_ioc.catalog.record import (
    BadEvent,
    FileStatus,
    check_file,
    from_event,
    record_key,
    utc,
)
from assonant_ioc.catalog.store import Catalog, Outcome
from assonant_ioc.events import file_written_event
from assonant_ioc.nexus import write_experiment
from tests.unit.factories import T0, experiment

NOTES = {"during_exposure": {"audit": "2026-01-01T00:00:00+00:00 EndOfExperiment by alice@bl-ws1"}}


def _written(tmp_path: Path, name: str = "exp.nxs") -> tuple[Path, dict[str, Any]]:
    """A file written by the writer, and the event the IOC would send for it."""
    x = experiment()
    path = write_experiment(x, tmp_path / "data" / name)
    data = path.read_bytes()
    event = file_written_event(x, path, len(data), hashlib.sha256(data).hexdigest(), T0 + 9)
    event["ended_by"] = "alice@bl-ws1"
    return path, event


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    loop = asyncio.new_event_loop()
    opened = loop.run_until_complete(Catalog.open(str(tmp_path / "state" / "catalog.db")))
    opened.loop = loop  # type: ignore[attr-defined]
    yield opened
    loop.run_until_complete(opened.close())
    loop.close()


def _run(catalog: Catalog, coro: Any) -> Any:
    return catalog.loop.run_until_complete(coro)  # type: ignore[attr-defined]


def test_a_bad_event_says_what_is_wrong() -> None:
    good = {
        "schema_version": 1,
        "event_type": "file_written",
        "sample_name": "",
        "moments": ["pre_exposure"],
        "readings_captured": 1,
        "readings_disconnected": 0,
        "written_at": "2026-11-27T11:00:00+00:00",
        "event_id": "a" * 32,
        "beamline": "SIM",
        "experiment_id": "e1",
        "file_path": "/data/e1.nxs",
        "file_size": 10,
        "sha256": "b" * 64,
        "start_time": "2026-11-27T10:00:00+00:00",
        "end_time": "2026-11-27T11:00:00+01:00",
    }
    record = from_event(good, T0)
    assert record.metadata["end_time"] == "2026-11-27T10:00:00.000000+00:00"  # in UTC
    assert record.metadata["end_epoch"] - record.metadata["start_epoch"] == 0
    for bad, why in [
        ([1, 2], "not a file_written event"),
        (dict(good, event_type="other"), "not a file_written event"),
        ({k: v for k, v in good.items() if k != "sha256"}, "'sha256' is a required property"),
        (dict(good, beamline="", experiment_id=""), "beamline: '' should be non-empty"),
        (dict(good, schema_version=2), "schema_version 2: this catalog reads version 1"),
        (dict(good, surprise=1), r"\(event\): Additional properties are not allowed"),
        (dict(good, file_size=-1), "file_size: -1 is less than the minimum of 0"),
        (dict(good, file_path="e1.nxs"), "is not absolute"),
        (dict(good, start_time="2026-11-27T10:00:00"), "has no time zone"),
        (dict(good, end_time="yesterday"), "bad time"),
    ]:
        with pytest.raises(BadEvent, match=why):
            from_event(bad, T0)


def test_times_compare_as_text_and_as_numbers() -> None:
    early, late = utc("2026-11-27T10:00:00Z"), utc("2026-11-27T10:00:00.5+00:00")
    assert early[0] < late[0] and early[1] < late[1]
    assert early[0] == "2026-11-27T10:00:00.000000+00:00"


def test_the_key_follows_the_path_not_the_content(tmp_path: Path) -> None:
    a, b = tmp_path / "x" / "run 1.nxs", tmp_path / "y" / "run 1.nxs"
    assert record_key(a) == record_key(a) != record_key(b)
    assert record_key(a).startswith("run_1-")


def test_the_file_is_checked_against_its_event(tmp_path: Path) -> None:
    path, event = _written(tmp_path)
    assert check_file(from_event(event, T0)).status is FileStatus.OK
    missing = check_file(from_event(dict(event, file_path=str(path) + ".gone"), T0))
    assert missing.status is FileStatus.MISSING
    with open(path, "r+b") as fh:  # one byte changed after the event was sent
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    changed = check_file(from_event(event, T0))
    assert changed.status is FileStatus.CHECKSUM_MISMATCH
    # what the file holds is never said (an oracle of any file's sum), only that it differs
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    assert real not in json.dumps(changed.metadata) and "file_sha256" not in changed.metadata
    assert changed.metadata["problem"] == "the file's size or sha256 is not the event's"


def test_the_file_says_what_its_event_says(tmp_path: Path) -> None:
    x = experiment()
    path = write_experiment(x, tmp_path / "exp.nxs", notes=NOTES)
    found = nexus_meta.read(path)
    event = file_written_event(x, path, 1, "c" * 64, T0 + 9)
    from_ev = from_event(event, T0).metadata
    assert found["beamline"] == event["beamline"]
    assert found["experiment_id"] == event["experiment_id"]
    assert found["sample"] == event["sample_name"]
    assert found["moments"] == event["moments"]
    assert found["ended_by"] == "alice@bl-ws1"
    assert utc(found["start_time"])[0] == from_ev["start_time"]
    frames = tmp_path / "frames.h5"
    with h5py.File(frames, "w") as f:
        f["data"] = [1, 2, 3]
    with pytest.raises(nexus_meta.NotAnExperimentFile):
        nexus_meta.read(frames)


def test_a_file_registered_twice_is_one_record(tmp_path: Path, catalog: Catalog) -> None:
    _, event = _written(tmp_path)
    record = check_file(from_event(event, T0))
    assert _run(catalog, catalog.register(record)) is Outcome.REGISTERED
    assert _run(catalog, catalog.register(record)) is Outcome.DUPLICATE  # redelivered
    again = check_file(from_event(dict(event, event_id="d" * 32), T0))
    assert _run(catalog, catalog.register(again)) is Outcome.DUPLICATE  # same bytes
    out = io.StringIO()
    counts = _run(catalog, backfill(catalog, tmp_path / "data", out))
    assert counts == {"duplicate": 1}
    assert "1/1" in out.getvalue()
    assert _run(catalog, catalog.count()) == 1
    stored = _run(catalog, catalog.get(record.key))
    assert stored["event_id"] == event["event_id"] and stored["ended_by"] == "alice@bl-ws1"
    assert _run(catalog, catalog.search(sample=event["sample_name"])) == [record.key]


def test_a_backfilled_file_takes_its_event_later(tmp_path: Path, catalog: Catalog) -> None:
    path, event = _written(tmp_path)
    (tmp_path / "data" / "broken.nxs").write_bytes(b"not HDF5 at all")
    with h5py.File(tmp_path / "data" / "frames.h5", "w") as f:
        f["data"] = [1, 2, 3]
    counts = _run(catalog, backfill(catalog, tmp_path / "data", io.StringIO()))
    assert counts == {"registered": 2, "skipped": 1, "unreadable": 1}
    key = record_key(path)
    stored = _run(catalog, catalog.get(key))
    assert stored["origin"] == "backfill" and stored["event_id"] == ""
    assert stored["sha256"] == event["sha256"] and stored["status"] == "ok"
    broken = _run(catalog, catalog.search(status="unreadable"))
    assert broken == [record_key(tmp_path / "data" / "broken.nxs")]
    record = check_file(from_event(event, T0))
    assert _run(catalog, catalog.register(record)) is Outcome.UPDATED
    stored = _run(catalog, catalog.get(key))
    assert stored["event_id"] == event["event_id"] and stored["origin"] == "event"
    assert _run(catalog, catalog.count()) == 2


def test_a_missing_file_is_recorded_not_dropped(tmp_path: Path, catalog: Catalog) -> None:
    _, event = _written(tmp_path)
    record = check_file(from_event(dict(event, file_path=str(tmp_path / "gone.nxs")), T0))
    assert _run(catalog, catalog.register(record)) is Outcome.REGISTERED
    assert _run(catalog, catalog.search(status="missing")) == [record.key]


def test_a_file_through_a_symbolic_link_is_the_same_record(tmp_path: Path) -> None:
    path, _ = _written(tmp_path)
    (tmp_path / "link").symlink_to(path.parent, target_is_directory=True)
    assert record_key(tmp_path / "link" / path.name) == record_key(path)


def test_a_password_never_shows() -> None:
    from assonant_ioc.catalog.store import redacted

    shown = redacted("postgresql://assonant:s3cret@db.facility:5432/catalog")
    assert "s3cret" not in shown and shown.startswith("postgresql://assonant:***@db.facility")
    assert redacted("sqlite:////state/catalog.db") == "sqlite:////state/catalog.db"


_OPEN = """
import asyncio, sys
from assonant_ioc.catalog.store import Catalog

async def main():
    catalog = await Catalog.open(sys.argv[1])
    await catalog.close()

asyncio.run(main())
"""


def test_processes_opening_one_new_catalog_at_once_all_open_it(tmp_path: Path) -> None:
    """Two processors and a consumer started together on a new SQLite catalog: none of
    them fails on the others' creating it (the race CI found: 'cannot change into wal
    mode from within a transaction')."""
    import subprocess
    import sys

    db = str(tmp_path / "state" / "catalog.db")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, db],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(err.strip()[-1500:])
    assert failures == []
    loop = asyncio.new_event_loop()
    try:
        opened = loop.run_until_complete(Catalog.open(db))
        loop.run_until_complete(opened.close())
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [("sample_name", "Ti\ud800"), ("experiment_id", "a\0b"), ("moments", ["pre", "\udfff"])],
)
def test_an_event_no_catalog_can_store_is_refused_not_retried_forever(
    tmp_path: Path, field: str, value: Any
) -> None:
    """Found by the bench's fuzz loop: a lone surrogate in a sample name made every catalog
    write fail (TypeError in SQLite's driver), retried for ever: the consumer wedged."""
    _, event = _written(tmp_path)
    with pytest.raises(BadEvent, match=f"{field}.*not storable text"):
        from_event(dict(event, **{field: value}), T0)


def test_a_proposal_is_where_nexus_puts_it_in_the_event_and_in_the_record(
    tmp_path: Path,
) -> None:
    import dataclasses

    import jsonschema

    from assonant_ioc.catalog.record import access_tags
    from assonant_ioc.events.message import EVENT_SCHEMA_PATH

    x = dataclasses.replace(experiment(), proposal="2026-0001")
    path = write_experiment(x, tmp_path / "data" / "p.nxs")
    with h5py.File(path, "r") as f:
        for entry in x.entries:
            group = f[entry.moment.entry_name]
            assert group["experiment_identifier"].asstr()[()] == "2026-0001"
            assert group["entry_identifier"].asstr()[()] == x.experiment_id
    data = path.read_bytes()
    event = file_written_event(x, path, len(data), hashlib.sha256(data).hexdigest(), T0 + 9)
    jsonschema.validate(event, json.loads(EVENT_SCHEMA_PATH.read_text()))
    assert event["proposal"] == "2026-0001" and event["experiment_id"] == x.experiment_id
    record = from_event(event, T0)
    assert record.metadata["proposal"] == "2026-0001"
    assert access_tags(record.metadata) == ["beamline:BL", "proposal:2026-0001"]
    # a backfill reads both back from the file, as the event said them
    found = nexus_meta.read(path)
    assert (found["proposal"], found["experiment_id"]) == ("2026-0001", x.experiment_id)
    # without a proposal: as before, and the beamline's staff tag only (never public)
    plain, _ = _written(tmp_path)
    assert nexus_meta.read(plain)["proposal"] == ""
    assert access_tags({"beamline": "BL", "proposal": ""}) == ["beamline:BL"]
    bad = dict(event, proposal="../2026")
    with pytest.raises(BadEvent, match="proposal"):
        from_event(bad, T0)
