"""The config's ``run_control:`` read and checked (each bad entry named with its line), and
the run-control messages as ESS's library reads them back; a message that is not a command
is refused with what it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streaming_data_types.action_response_answ import deserialise_answ
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.status_x5f2 import deserialise_x5f2

from assonant_ioc.config.loader import load_config
from assonant_ioc.errors import ConfigError
from assonant_ioc.events import ess

HEAD = (
    "beamline: T\ninstrument:\n  - {name: ring, class: StorageRing, fields: {current: {pv: X}}}\n"
)


def test_run_control_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "run_control: {command_topic: cmd, status_topic: st, service_id: w}\n")
    rc = load_config(path).run_control
    assert (rc.command_topic, rc.status_topic, rc.service_id, rc.status_every_s) == (
        "cmd",
        "st",
        "w",
        5.0,
    )


def test_bad_run_control_entries_are_each_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        HEAD + "run_control:\n  command_topic: 'bad topic'\n  status_every_s: 0\n  colour: blue\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for said in (
        "'bad topic' is not a legal topic name",
        "status_topic '' is not a legal",
        "status_every_s must be seconds",
        "unknown run_control setting 'colour'",
    ):
        assert said in text, text


def test_messages_read_back_by_ess_library() -> None:
    event = {"event_type": "file_written", "experiment_id": "e1", "file_path": "/d/f.nxs"}
    finished = deserialise_wrdn(ess.wrdn_of_event("svc", event) or b"")
    assert (finished.job_id, finished.file_name, finished.error_encountered) == (
        "e1",
        "/d/f.nxs",
        False,
    )
    assert json.loads(finished.metadata or "") == event
    assert ess.wrdn_of_event("svc", {"event_type": "file_failed"}) is None
    answer = deserialise_answ(ess.answ("svc", "j", "c", True, False, "busy"))
    assert (answer.job_id, answer.message, answer.outcome) == ("j", "busy", 1)
    status = deserialise_x5f2(ess.x5f2("svc", 2.0, {"job_id": "j"}))
    assert json.loads(status.status_json) == {"job_id": "j"} and status.update_interval == 2000
    kind, start = ess.command(serialise_pl72("j", "f.nxs"))
    assert kind == "pl72" and start.filename == "f.nxs"
    with pytest.raises(ValueError, match="not a run-control command"):
        ess.command(b"\x00" * 4 + b"f144" + b"\x00" * 8)
