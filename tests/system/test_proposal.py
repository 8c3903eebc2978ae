"""A proposal on every file: the Proposal PV (strict, autosaved) or the config's default,
written where NeXus puts it (``experiment_identifier``; the experiment's own id then in
``entry_identifier``), carried by the event, and in the catalog record with its access tags
(the beamline's and the proposal's)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import h5py
import pytest

from assonant_ioc.events.kafka import consume_event
from assonant_ioc.sim import catalog_procs, procs
from tests.system.conftest import REPO, start_service
from tests.system.reduction import catalog_get

pytestmark = pytest.mark.timeout(300)


def test_the_proposal_goes_into_the_file_the_event_and_the_catalog(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    topic = f"assonant.prop.{secrets.token_hex(4)}"
    config = "proposal: '2026-0000'\n" + (REPO / "configs" / "sim.yaml").read_text()
    args = ["--kafka-bootstrap", kafka, "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args, topic, config_text=config) as (
        client,
        P,
        data,
        _proc,
    ):
        for bad in ("2026-0001/../x", "../2026", "a b", "<script>", "x" * 65):
            with pytest.raises(procs.PutFailed):
                client.put(f"{P}Proposal", bad)
            assert client.get(f"{P}LastError").startswith("Proposal refused: "), bad
        assert client.get(f"{P}Proposal") == ""
        events = {}
        for exp_id, proposal in (("prop-1", "2026-0001"), ("prop-2", "")):
            client.put(f"{P}Proposal", proposal)
            client.put(f"{P}ExperimentId", exp_id)
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}EndOfExperiment", 1)
            events[exp_id] = asyncio.run(consume_event(kafka, topic, exp_id, timeout=60))
        db = f"sqlite:///{tmp_path / 'catalog.db'}"
        with catalog_procs.catalog_consumer(log_dir, kafka, topic, db, [data]) as (proc, port):
            procs.wait_until(
                lambda: catalog_procs.consumer_status(port)["registered"] == 2, 60, "both", proc
            )
    # the PV's proposal, else the config's: in the file, the event and the record
    for exp_id, proposal in (("prop-1", "2026-0001"), ("prop-2", "2026-0000")):
        event = events[exp_id]
        assert event["proposal"] == proposal and event["experiment_id"] == exp_id
        with h5py.File(event["file_path"], "r") as f:
            for entry in ("pre_exposure",):
                assert f[f"{entry}/experiment_identifier"].asstr()[()] == proposal
                assert f[f"{entry}/entry_identifier"].asstr()[()] == exp_id
        record = catalog_get(db, event["file_path"]) or {}
        assert record["proposal"] == proposal and record["experiment_id"] == exp_id
        assert record["access_tags"] == ["beamline:SIM", f"proposal:{proposal}"]
