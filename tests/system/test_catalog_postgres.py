"""The catalog in PostgreSQL, as a facility gives it: the consumer of two beamlines' topics
and tiled's server over one PostgreSQL database (a server of the test's own), searched
over HTTP by field, time range and full text, with a dataset read back.

The IOC's own path into the catalog is tests/system/test_catalog.py's; here the events
are those the IOC sends, for files the writer wrote."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from assonant_ioc.events import file_written_event
from assonant_ioc.nexus import write_experiment
from assonant_ioc.sim import catalog_procs, procs
from tests.system.tiled_http import Tiled
from tests.unit.factories import T0, experiment


@pytest.fixture(scope="module")
def postgres(log_dir: Path) -> Iterator[str]:
    if catalog_procs.postgres_bin() is None:
        if os.environ.get("CI"):  # .ci/run installs it: here it must run, never skip
            pytest.fail("no PostgreSQL server in CI (.ci/run installs Debian's postgresql)")
        pytest.skip("no PostgreSQL server installed (Debian: apt-get install postgresql)")
    with catalog_procs.postgres(log_dir) as uri:
        yield uri


async def _send(kafka: str, sent: list[tuple[str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for topic, event in sent:
            key = event["experiment_id"].encode()
            await producer.send_and_wait(topic, json.dumps(event).encode(), key=key)
    finally:
        await producer.stop()


@pytest.mark.timeout(300)  # its time on a loaded 2-core machine, with room
def test_a_postgresql_catalog_of_two_beamlines(
    postgres: str, kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    run = procs.new_prefix("p").strip(":")
    topics = [f"assonant.{run}.bl1", f"assonant.{run}.bl2"]
    sent: list[tuple[str, dict[str, Any]]] = []
    for n, (beamline, sample) in enumerate(
        [("MOGNO", "basalt core"), ("MOGNO", "lysozyme"), ("MANACA", "lysozyme crystal")]
    ):
        x = dataclasses.replace(
            experiment(),
            beamline=beamline,
            experiment_id=f"{run}-{n}",
            sample_name=sample,
            start_time=T0 + 3600 * n,
            end_time=T0 + 3600 * n + 600,
        )
        path = write_experiment(x, data / f"{beamline}_{n}.nxs")
        raw = path.read_bytes()
        event = file_written_event(x, path, len(raw), hashlib.sha256(raw).hexdigest(), T0)
        sent.append((topics[beamline == "MANACA"], event))
    asyncio.run(_send(kafka, sent))
    api_key = secrets.token_hex(16)
    with catalog_procs.catalog_server(log_dir, postgres, [data], api_key) as url:
        tiled = Tiled(url, api_key)
        for attempt in range(2):  # the second consumer finds each event registered already
            with catalog_procs.catalog_consumer(log_dir, kafka, topics, postgres, [data]) as (
                consumer,
                port,
            ):
                procs.wait_until(
                    lambda: (
                        catalog_procs.consumer_status(port)["lag"] == 0
                        and catalog_procs.consumer_status(port)["assigned"] > 0
                    ),
                    60,
                    "every event consumed",
                )
                counts = catalog_procs.consumer_status(port)
                assert counts["registered"] == (3 if attempt == 0 else 0), counts
                assert counts["catalog_errors"] == 0 and counts["invalid_events"] == 0
                if attempt == 0:
                    consumer.popen.send_signal(signal.SIGKILL)
                    consumer.popen.wait(10)

        def ids(*conditions: tuple[str, str, Any]) -> list[str]:
            return sorted(m["experiment_id"] for m in tiled.search(*conditions).values())

        assert ids(("beamline", "eq", "MOGNO")) == [f"{run}-0", f"{run}-1"]
        assert ids(("sample", "eq", "lysozyme")) == [f"{run}-1"]
        assert ids(("text", "text", "lysozyme")) == [f"{run}-1", f"{run}-2"]  # PostgreSQL's
        # the second hour: started before its end, ended after its start
        assert ids(("start_epoch", "le", T0 + 3600 + 1), ("end_epoch", "ge", T0 + 3600 + 1)) == [
            f"{run}-1"
        ]
        assert ids(("start_time", "ge", sent[2][1]["start_time"])) == [f"{run}-2"]
        (key,) = tiled.search(("experiment_id", "eq", f"{run}-2"))
        path = sent[2][1]["file_path"]
        with h5py.File(path) as f:
            dataset = next(
                name
                for name in ("pre_exposure/sample/temperature", "pre_exposure/sample/x")
                if name in f
            )
            want = np.asarray(f[dataset][()])
        got = tiled.array(key, dataset, want.dtype, want.shape)
        np.testing.assert_array_equal(got, want)
