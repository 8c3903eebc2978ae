"""The one rule for what arrives from outside (paths, files, the texts of a start document),
and the Bluesky writer refusing documents that could never be written or must not be read."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from event_model import compose_run

from assonant_ioc.config.loader import load_config
from assonant_ioc.documents.run import MalformedDocument
from assonant_ioc.documents.writer import DEAD_LETTER, RunWriter
from assonant_ioc.events.message import EVENT_SCHEMA_PATH
from assonant_ioc.trust import Refused, digest_regular, read_checked, roots_of

FAILED_SCHEMA = EVENT_SCHEMA_PATH.with_name("failed.schema.json")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.nx").write_bytes(b"x" * 3000)
    (tmp_path / "outside.nx").write_bytes(b"secret")
    (root / "out").symlink_to(tmp_path / "outside.nx")
    (root / "in").symlink_to(root / "sub" / "a.nx")
    os.mkfifo(root / "fifo")
    return tmp_path, root


def _reason(text: object, roots: tuple[Path, ...]) -> str:
    with pytest.raises(Refused) as refused:
        read_checked(text, roots)
    return refused.value.reason


def test_a_path_is_taken_only_resolved_under_a_root_and_regular(tree: tuple[Path, Path]) -> None:
    tmp, root = tree
    roots = roots_of([root])
    found = read_checked(str(root / "sub" / "a.nx"), roots)
    assert found.size == 3000 and found.path == root / "sub" / "a.nx"
    assert read_checked(str(root / "in"), roots).sha256 == found.sha256  # a link inside: fine
    assert _reason(str(tmp / "outside.nx"), roots) == "outside_roots"
    assert _reason(str(root / "out"), roots) == "outside_roots"  # a link out of the root
    assert _reason(f"{root}/../outside.nx", roots) == "traversal"
    assert _reason(f"{root}/sub/../sub/a.nx", roots) == "traversal"  # '..' even when inside
    assert _reason("sub/a.nx", roots) == "relative"
    assert _reason("/dev/zero", roots) == "outside_roots"
    assert _reason("/etc/passwd", roots) == "outside_roots"
    assert _reason(str(root / "fifo"), roots) == "not_regular"  # and the open did not hang
    assert _reason(str(root / "sub"), roots) == "not_regular"
    assert _reason(str(root / "gone.nx"), roots) == "missing"
    for bad in (f"{root}/a\0b", f"{root}/a\u202egpj.exe", f"{root}/a\x1b[2J", f"{root}/\x85"):
        assert _reason(bad, roots) == "bad_text", repr(bad)
    assert _reason(None, roots) == "bad_text" and _reason("", roots) == "bad_text"
    assert _reason("/" + "a" * 5000, roots) == "bad_text"
    assert _reason(str(root / "sub" / "a.nx"), ()) == "outside_roots"  # no root: nothing


def test_a_device_is_refused_and_reads_are_bounded_in_size_and_time(
    tree: tuple[Path, Path],
) -> None:
    _, root = tree
    file = root / "sub" / "a.nx"
    with pytest.raises(Refused) as zero:
        digest_regular(Path("/dev/zero"))  # even with no root check before it
    assert zero.value.reason == "not_regular" and "a device" in str(zero.value)
    with pytest.raises(Refused) as big:
        digest_regular(file, max_bytes=100)
    assert big.value.reason == "too_big" and "3000 bytes, at most 100" in str(big.value)
    with pytest.raises(Refused) as slow:
        digest_regular(file, max_seconds=-1)
    assert slow.value.reason == "too_slow"


def test_a_fifo_with_no_writer_never_blocks_the_reader(tree: tuple[Path, Path]) -> None:
    _, root = tree
    said: list[str] = []
    reader = threading.Thread(
        target=lambda: said.append(_reason(str(root / "fifo"), roots_of([root]))), daemon=True
    )
    reader.start()
    reader.join(5)
    assert not reader.is_alive() and said == ["not_regular"]


# -- the Bluesky writer --------------------------------------------------------------------


def _writer(tmp_path: Path) -> RunWriter:
    config = load_config("sim_tomo", {"BL": "SIM:"})
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    config = dataclasses.replace(config, validate=False, detector_dirs=(str(frames),))
    return RunWriter(config, tmp_path / "state", str(tmp_path / "data"))


def _docs(**md: Any) -> list[tuple[str, dict[str, Any]]]:
    run = compose_run(metadata=md, time=1_800_000_000.0)
    desc = run.compose_descriptor(
        name="primary",
        data_keys={"x": {"source": "PV:X", "dtype": "number", "shape": []}},
    )
    event = desc.compose_event(data={"x": 1.0}, timestamps={"x": 1_800_000_000.5}, seq_num=1)
    return [
        ("start", dict(run.start_doc)),
        ("descriptor", dict(desc.descriptor_doc)),
        ("event", dict(event)),
        ("stop", dict(run.compose_stop())),
    ]


@pytest.mark.parametrize(
    "md",
    [
        {"experiment_id": "../../../tmp/escape"},
        {"experiment_id": "a/b"},
        {"experiment_id": ".."},
        {"sample": "Ti\0foil"},
        {"experiment_id": "abc\u202egpj.exe"},
        {"sample": {"name": "x\x9b31m"}},
        {"experiment_id": "x" * 300},
        {"comment": "fine id, but \x07 in the comment"},
    ],
)
def test_a_start_that_could_never_be_written_is_refused_as_it_arrives(
    tmp_path: Path, md: dict[str, Any]
) -> None:
    writer = _writer(tmp_path)
    docs = _docs(**md)
    with pytest.raises(MalformedDocument, match=r"refused \(bad_text\)"):
        writer.add(*docs[0])
    for name, doc in docs[1:]:  # the rest of the run: dropped, counted, never a file
        assert writer.add(name, doc) == []
    assert writer.refused == {"bad_text": 1, "run_refused": 3}
    assert writer.runs == {} and not (tmp_path / "state" / "runs" / docs[0][1]["uid"]).exists()
    # the next good run is taken and written
    good = _docs(experiment_id="good", sample="Ti")
    done = [uid for name, doc in good for uid in writer.add(name, doc)]
    assert writer.write(done[0]).path.name.startswith("SIM_good")
    writer.close()


def test_a_run_uid_that_is_not_one_path_component_is_refused(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    name, start = _docs()[0]
    with pytest.raises(MalformedDocument, match="bad_text"):
        writer.add(name, dict(start, uid="../../escape"))
    writer.close()


@pytest.mark.parametrize(
    ("name", "doc", "reason"),
    [
        ("resource", {"root": "/etc", "resource_path": "passwd"}, "outside_roots"),
        ("resource", {"root": "", "resource_path": "/dev/zero"}, "outside_roots"),
        ("resource", {"root": "{frames}", "resource_path": "../../x.h5"}, "traversal"),
        ("resource", {"root": "", "resource_path": "relative.h5"}, "relative"),
        ("stream_resource", {"uri": "file://localhost/dev/zero"}, "outside_roots"),
        ("stream_resource", {"uri": "file://localhost/etc/passwd"}, "outside_roots"),
        ("stream_resource", {"uri": "http://evil.example/x.h5"}, "relative"),
    ],
)
def test_a_detector_file_outside_the_detector_dirs_is_refused(
    tmp_path: Path, name: str, doc: dict[str, Any], reason: str
) -> None:
    writer = _writer(tmp_path)
    start = _docs()[0][1]
    writer.add("start", start)
    frames = str(tmp_path / "frames")
    full = {k: v.replace("{frames}", frames) for k, v in doc.items()}
    if name == "resource":
        full |= {"uid": "r1", "spec": "AD_HDF5", "run_start": start["uid"]}
    else:
        full |= {"uid": "s1", "data_key": "det", "parameters": {}, "run_start": start["uid"]}
    with pytest.raises(MalformedDocument, match=rf"refused \({reason}\)"):
        writer.add(name, full)
    assert writer.refused == {reason: 1}
    inside = dict(full, uid="ok")
    if name == "resource":
        inside |= {"root": frames, "resource_path": "cam.h5"}
    else:
        inside["uri"] = f"file://localhost{frames}/cam.h5"
    writer.add(name, inside)  # a file in the detector directory is taken
    writer.close()


def test_a_run_without_start_is_closed_as_failed_once_and_never_again(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    docs = _docs(experiment_id="headless")
    uid = docs[0][1]["uid"]
    done = [u for name, doc in docs[1:] for u in writer.add(name, doc)]  # no start
    assert done == [uid]
    with pytest.raises(ValueError, match="no start document"):
        writer.write(uid)
    pending = writer.dead_letter(uid, "NoStart: no start document")
    jsonschema.validate(pending.event, json.loads(FAILED_SCHEMA.read_text()))
    assert pending.event["run_uid"] == uid and writer.dead == 1
    kept = tmp_path / "state" / DEAD_LETTER / uid
    assert json.loads((kept / "reason.json").read_text())["reason"].startswith("NoStart")
    assert (kept / "documents.log").stat().st_size > 0  # the documents, as they came
    assert [p.event["event_type"] for p in writer.outbox.pending()] == ["file_failed"]
    writer.close()
    again = _writer(tmp_path)  # a restart: nothing to recover, nothing written again
    assert again.recover() == [] and again.runs == {}
    assert again.add(*docs[-1]) == []  # a redelivered stop: a run already done
    again.close()


def test_a_detector_file_a_pv_names_outside_the_detector_dirs_is_left_out(
    tmp_path: Path,
) -> None:
    from assonant_ioc.lifecycle.build import confined

    config = load_config("sim_tomo", {"BL": "SIM:"})
    frames = {"detector": [str(tmp_path / "frames" / "a.h5"), "/etc/passwd"]}
    assert confined(config, frames) == (frames, [])  # no detector_dirs named: as before
    config = dataclasses.replace(config, detector_dirs=(str(tmp_path / "frames"),))
    kept, refused = confined(config, frames)
    assert kept == {"detector": [str(tmp_path / "frames" / "a.h5")]}
    assert len(refused) == 1 and "'/etc/passwd' is outside the data roots" in refused[0]


def test_a_runs_proposal_comes_from_its_start_else_the_config_and_is_checked(
    tmp_path: Path,
) -> None:
    import h5py

    writer = _writer(tmp_path)
    writer.config = dataclasses.replace(writer.config, proposal="2026-0000")
    for md, proposal in (({"proposal_id": "2026-0042"}, "2026-0042"), ({}, "2026-0000")):
        docs = _docs(experiment_id=f"run-{proposal}", **md)
        done = [uid for name, doc in docs for uid in writer.add(name, doc)]
        with h5py.File(writer.write(done[0]).path, "r") as f:
            assert f["during_exposure/experiment_identifier"].asstr()[()] == proposal
    with pytest.raises(MalformedDocument, match="proposal_id"):
        writer.add(*_docs(experiment_id="fine", proposal_id="2026/../x")[0])
    writer.close()


def test_a_configs_proposal_is_checked_as_it_loads(tmp_path: Path) -> None:
    from assonant_ioc.errors import ConfigError

    text = (Path(__file__).resolve().parents[2] / "configs" / "sim.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text("proposal: 2026-0007\n" + text)
    assert load_config(good).proposal == "2026-0007"
    bad = tmp_path / "bad.yaml"
    bad.write_text("proposal: '2026 0007'\n" + text)
    with pytest.raises(ConfigError, match="proposal"):
        load_config(bad)


def test_documents_of_no_run_are_kept_waiting_up_to_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assonant_ioc.documents import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_ORPHANS", 5)
    writer = _writer(tmp_path)
    for i in range(8):  # events of a descriptor that never comes
        event = {"uid": f"e{i}", "descriptor": "nowhere", "seq_num": i + 1, "time": 1.0}
        assert writer.add("event", event | {"data": {}, "timestamps": {}}) == []
    assert len(writer._orphans) == 5 and writer.refused == {"orphan_dropped": 3}
    writer.close()
