"""Run control over Kafka as the ESS file writer takes it, with the messages made and read by
``ess-streaming-data-types`` (ESS's own library) through the test's broker: a ``pl72`` runs
an experiment (``answ`` accepted, ``x5f2`` saying the file being written, the file with the
job's name and metadata, a ``wrdn`` naming that file whose metadata is our event); a second
``pl72`` during the job is refused in its ``answ``; an Abort over CA ends a job with a
``wrdn`` whose ``error_encountered`` is set; a file from the PV path gets its ``wrdn`` too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest
from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import ActionOutcome
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from assonant_ioc.sim import procs
from assonant_ioc.sim.run_control import StatusTopic, send
from tests.system.conftest import REPO, start_service

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def run_control(kafka: str, log_dir: Path, tmp_path: Path, sim: tuple[str, int]) -> Iterator[Any]:
    tag = procs.new_prefix("rc").strip(":")
    command, status = f"rc.commands.{tag}", f"rc.status.{tag}"
    text = (
        f"run_control: {{command_topic: {command}, status_topic: {status}, "
        "service_id: sim-writer, status_every_s: 0.5}\n"
    ) + (REPO / "configs" / "sim.yaml").read_text()
    listener = StatusTopic(kafka, status)
    try:
        with start_service(
            log_dir,
            tmp_path,
            sim,
            ["--kafka-bootstrap", kafka, "--no-validate"],
            topic=f"rc.files.{tag}",
            config_text=text,
        ) as (client, P, data_dir, _proc):
            listener.wait("x5f2", what="the service's status (run control up)")
            yield {
                "client": client,
                "P": P,
                "data": data_dir,
                "status": listener,
                "send": lambda payload: send(kafka, command, payload),
            }
    finally:
        listener.close()


def _accepted(answer: Any) -> bool:
    return bool(answer.outcome == ActionOutcome.Success)


def test_a_job_over_kafka_writes_its_file_and_a_second_is_refused(run_control: Any) -> None:
    rc, status, client, P = (
        run_control,
        run_control["status"],
        run_control["client"],
        run_control["P"],
    )
    metadata = json.dumps({"proposal_title": "rc test", "sample_temperature_K": 295})
    rc["send"](
        serialise_pl72(
            "job-1",
            "run_job_1.nxs",
            service_id="sim-writer",
            metadata=metadata,
            nexus_structure='{"children": []}',
        )
    )
    assert _accepted(status.wait("answ", "job-1"))
    procs.wait_until(lambda: client.get(f"{P}State") == "Recording", 30, "the job recording")
    assert client.get(f"{P}ExperimentId") == "job-1"
    # the job is said in the status, the file it is writing with it
    procs.wait_until(
        lambda: any(
            json.loads(s.status_json)["job_id"] == "job-1"
            and json.loads(s.status_json)["file_being_written"].endswith("run_job_1.nxs")
            for s in status.of("x5f2")
        ),
        30,
        "x5f2 with the file being written",
    )
    # a second job while this one runs: refused, the reason in its answer
    rc["send"](serialise_pl72("job-2", "run_job_2.nxs", service_id="sim-writer"))
    refused = status.wait("answ", "job-2")
    assert not _accepted(refused) and "busy: job job-1 is in progress" in refused.message
    time.sleep(0.5)  # a recording of some length
    rc["send"](serialise_6s4t("job-1", service_id="sim-writer", command_id="stop-1"))
    procs.wait_until(
        lambda: any(a.command_id == "stop-1" for a in status.of("answ", "job-1")), 30, "stop's answ"
    )
    (stop,) = [a for a in status.of("answ", "job-1") if a.command_id == "stop-1"]
    assert _accepted(stop)
    done = status.wait("wrdn", "job-1", "the job's wrdn")
    assert not done.error_encountered
    path = Path(done.file_name)
    assert path.name == "run_job_1.nxs" and path.parent == rc["data"].resolve()
    event = json.loads(done.metadata)
    assert event["event_type"] == "file_written" and event["job_id"] == "job-1"
    assert event["file_path"] == str(path) and event["experiment_id"] == "job-1"
    with h5py.File(path, "r") as f:
        assert set(f) == {"pre_exposure", "during_exposure", "post_exposure"}
        note = json.loads(f["during_exposure/run_control/description"][()])
        assert note["job_id"] == "job-1" and json.loads(note["metadata"]) == json.loads(metadata)
        assert note["nexus_structure"] == '{"children": []}'
        assert "run control job job-1" in f["during_exposure/audit/description"][()].decode()
    assert client.get(f"{P}State") == "Idle"


def test_an_abort_over_ca_ends_a_job_with_an_error_and_a_pv_file_has_its_wrdn(
    run_control: Any,
) -> None:
    rc, status, client, P = (
        run_control,
        run_control["status"],
        run_control["client"],
        run_control["P"],
    )
    rc["send"](serialise_pl72("job-a", "aborted.nxs", service_id="sim-writer"))
    assert _accepted(status.wait("answ", "job-a"))
    procs.wait_until(lambda: client.get(f"{P}State") == "Recording", 30, "the job recording")
    client.put(f"{P}Abort", 1)
    ended = status.wait("wrdn", "job-a", "the aborted job's wrdn")
    assert ended.error_encountered and "aborted" in (ended.message or "")
    assert not (rc["data"] / "aborted.nxs").exists()
    # an experiment of the PV path: its file gets a wrdn too (its job: the experiment id)
    client.put(f"{P}ExperimentId", "by-pvs")
    client.put(f"{P}FileName", "by_pvs.nxs")
    client.put(f"{P}Snapshot:Pre", 1)
    client.put(f"{P}EndOfExperiment", 1)
    by_pvs = status.wait("wrdn", "by-pvs", "the PV path's wrdn")
    assert not by_pvs.error_encountered and by_pvs.file_name.endswith("by_pvs.nxs")
    assert json.loads(by_pvs.metadata)["experiment_id"] == "by-pvs"
