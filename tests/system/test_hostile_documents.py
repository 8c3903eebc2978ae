"""Hostile Bluesky documents, published with bluesky-kafka as anyone on the network could:
start documents whose id or sample would escape the data directory, hold a NUL or spoof a
file name with U+202E; a StreamResource naming ``/dev/zero``; a Resource naming
``/etc/passwd``; a run with no start. ``assonant-ioc bluesky`` (a real process) refuses
each as it arrives (counted by reason on its /metrics), closes the run without a start as
failed (dead-letter directory, ``file_failed`` event), links nothing outside the detector
directory, writes the good run after them, and a restart is clean: nothing retried, nothing
sent twice. The in-process callback does the same with the same documents."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import pytest
from event_model import compose_run

from assonant_ioc.documents.callback import NexusCallback
from assonant_ioc.events.kafka import consume_all
from assonant_ioc.events.message import EVENT_SCHEMA_PATH
from assonant_ioc.sim import procs
from tests.system.monitoring import health, scrape
from tests.system.test_bluesky import _config, _publish, consumer

pytestmark = pytest.mark.timeout(300)

Doc = tuple[str, dict[str, Any]]
T0 = 1_800_000_000.0


def _run(**md: Any) -> tuple[list[Doc], Any, Any]:
    run = compose_run(metadata=md, time=T0)
    desc = run.compose_descriptor(
        name="primary",
        data_keys={"x": {"source": "PV:SIM:x", "dtype": "number", "shape": []}},
    )
    return [("start", dict(run.start_doc)), ("descriptor", dict(desc.descriptor_doc))], run, desc


def _end(run: Any, desc: Any) -> list[Doc]:
    event = desc.compose_event(data={"x": 1.5}, timestamps={"x": T0 + 1}, seq_num=1)
    return [("event", dict(event)), ("stop", dict(run.compose_stop()))]


def _simple(**md: Any) -> list[Doc]:
    head, run, desc = _run(**md)
    return head + _end(run, desc)


def _hostile() -> dict[str, list[Doc]]:
    out = {
        "escape": _simple(experiment_id="../../../tmp/escape"),
        "nul": _simple(experiment_id="nul", sample="Ti\0foil"),
        "bidi": _simple(experiment_id="abc\u202egpj.exe"),
    }
    head, run, desc = _run(experiment_id="zero")
    start, d = head[0][1]["uid"], desc.descriptor_doc["uid"]
    stream = {
        "uid": f"sr-{start}",
        "run_start": start,
        "data_key": "det",
        "mimetype": "application/x-hdf5",
        "uri": "file://localhost/dev/zero",
        "parameters": {"dataset": "/entry/data/data"},
    }
    datum = {
        "uid": f"sr-{start}/0",
        "stream_resource": stream["uid"],
        "descriptor": d,
        "indices": {"start": 0, "stop": 1},
        "seq_nums": {"start": 1, "stop": 2},
    }
    out["zero"] = [*head, ("stream_resource", stream), ("stream_datum", datum), *_end(run, desc)]
    head, run, desc = _run(experiment_id="passwd")
    start = head[0][1]["uid"]
    resource = {
        "uid": f"r-{start}",
        "run_start": start,
        "spec": "AD_HDF5",
        "root": "/etc",
        "resource_path": "passwd",
        "resource_kwargs": {"frame_per_point": 1},
        "path_semantics": "posix",
    }
    datum = {"datum_id": f"r-{start}/0", "resource": resource["uid"], "datum_kwargs": {}}
    out["passwd"] = [*head, ("resource", resource), ("datum", datum), *_end(run, desc)]
    out["no_start"] = _simple(experiment_id="headless")[1:]
    return out


def _links(path: Path) -> list[str]:
    """Every file an external link or a virtual dataset of ``path`` points to."""
    found: list[str] = []

    def walk(group: h5py.Group) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                found.append(link.filename)
                continue
            item = group.get(name)
            if isinstance(item, h5py.Group):
                walk(item)
            elif isinstance(item, h5py.Dataset) and item.is_virtual:
                found.extend(s.file_name for s in item.virtual_sources())

    with h5py.File(path, "r") as f:
        walk(f)
    return found


def test_hostile_documents_are_refused_and_the_next_run_written_and_a_restart_is_clean(
    log_dir: Path, kafka: str, tmp_path: Path
) -> None:
    hostile = _hostile()
    good, later = _simple(experiment_id="good", sample="Ti"), _simple(experiment_id="later")
    headless = hostile["no_start"][0][1]["run_start"]
    doc_topic, event_topic = f"docs-{secrets.token_hex(4)}", f"files-{secrets.token_hex(4)}"
    config = _config(tmp_path, event_topic, validate=False)
    data, state = tmp_path / "data", tmp_path / "state"
    port = procs.free_port()
    status = ["--status-port", str(port)]
    with consumer(log_dir, kafka, config, doc_topic, state, data, extra=status) as proc:
        _publish(kafka, doc_topic, [d for docs in hostile.values() for d in docs] + good)
        events = asyncio.run(consume_all(kafka, event_topic, 4, 90))
        procs.wait_until(lambda: "failed=1" in proc.tail(50), 30, "said", proc)
        metrics = scrape(port)
        assert health(port) == (200, "ok")
        log = proc.tail(400)
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(30)
    refused = {
        dict(labels)["reason"]: v
        for (name, labels), v in metrics.items()
        if name == "assonant_bluesky_refused_total"
    }
    # three starts, the two files; the 3 x 3 other documents of the refused runs and the two
    # datums of the refused files dropped with them
    assert refused == {"bad_text": 3, "outside_roots": 2, "run_refused": 9, "parent_refused": 2}
    assert metrics[("assonant_bluesky_failed_runs_total", ())] == 1
    assert log.count("refused (bad_text)") == 3 and log.count("refused (outside_roots)") == 2
    assert "'/etc/passwd' is outside the data roots" in log
    kinds = sorted((e["event_type"], e.get("experiment_id")) for e in events)
    assert kinds == [
        ("file_failed", ""),
        ("file_written", "good"),
        ("file_written", "passwd"),
        ("file_written", "zero"),
    ]
    failed = next(e for e in events if e["event_type"] == "file_failed")
    schema = json.loads(EVENT_SCHEMA_PATH.with_name("failed.schema.json").read_text())
    jsonschema.validate(failed, schema)
    assert failed["run_uid"] == headless and "no start document" in failed["reason"]
    kept = state / "dead-letter" / headless
    assert json.loads((kept / "reason.json").read_text())["event_id"] == failed["event_id"]
    # the files: in the data directory, plain names, no link to /dev or /etc
    files = sorted(data.iterdir())
    assert sorted(Path(e["file_path"]) for e in events if "file_path" in e) == files
    for path in files:
        assert path.name.isascii() and _links(path) == [], (path, _links(path))
    # a restart: nothing recovered, retried or sent again; the next run written
    with consumer(log_dir, kafka, config, doc_topic, state, data, extra=status) as proc:
        _publish(kafka, doc_topic, later)
        after = asyncio.run(consume_all(kafka, event_topic, 5, 90))
        procs.wait_until(lambda: "files=1" in proc.tail(50), 30, "the later run said", proc)
        again = proc.tail(400)
    assert [e.get("experiment_id") for e in after[4:]] == ["later"] and len(after) == 5
    assert "closed as failed" not in again and "file not written" not in again
    assert "run(s) recovered" not in again


def test_the_callback_takes_the_same_hostile_documents_without_raising(tmp_path: Path) -> None:
    config = _config(tmp_path, "unused", validate=False)
    cb = NexusCallback(
        config, state_dir=tmp_path / "cb-state", data_dir=str(tmp_path / "cb"), send=False
    )
    for docs in [*_hostile().values(), _simple(experiment_id="good", sample="Ti")]:
        for name, doc in docs:
            cb(name, doc)  # never raises into the RunEngine
    names = sorted(w.path.name.split("_")[1] for w in cb.written)
    assert names == ["good", "passwd", "zero"] and cb.writer.dead == 1
    assert sum(cb.writer.refused.values()) == 16
    cb.close()
