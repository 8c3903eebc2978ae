"""Settings that survive a power cut: durable writes and a backup of the last good file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from assonant_ioc.ioc.autosave import Autosave


def test_an_unreadable_file_is_restored_from_its_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = Autosave(tmp_path / "ioc.json")
    saved.save({"ExperimentId": "p-1"})
    saved.save({"ExperimentId": "p-2", "SampleName": "Ti"})
    assert Autosave(saved.path).load() == {"ExperimentId": "p-2", "SampleName": "Ti"}
    saved.path.write_bytes(b"")  # a power cut in the middle of a write, without the fsync
    with caplog.at_level(logging.ERROR):
        assert Autosave(saved.path).load() == {"ExperimentId": "p-1"}
    assert "restored from its backup" in caplog.text and str(saved.path) in caplog.text


def test_a_save_after_a_corrupt_file_keeps_the_last_good_backup(tmp_path: Path) -> None:
    saved = Autosave(tmp_path / "ioc.json")
    saved.save({"ExperimentId": "good"})
    saved.save({"ExperimentId": "newer"})
    saved.path.write_text("{not json")
    saved.save({"ExperimentId": "after"})  # the corrupt file is not taken as the backup
    saved.path.write_text("[]")
    assert Autosave(saved.path).load() == {"ExperimentId": "good"}


def test_nothing_saved_is_nothing_restored_and_both_unreadable_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert Autosave(tmp_path / "none.json").load() == {}
    saved = Autosave(tmp_path / "ioc.json")
    saved.path.write_text("{")
    saved.backup.write_text("{")
    with caplog.at_level(logging.ERROR):
        assert saved.load() == {}
    assert "nor from its backup" in caplog.text
