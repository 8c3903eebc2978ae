"""The data catalog fed by the events, as a facility runs it: broker, simulated beamline, the
IOC, the catalog consumer and tiled's server, each a real process on loopback.

Files are found over tiled's HTTP API (plain HTTP, the API key in the header) by sample,
beamline and time range; datasets (a recorded series, a detector frame through the
NXtomo's links) read over HTTP equal the file's. The consumer killed with SIGKILL, the
broker stopped and restarted, and a backfill of the same directory: each file stays one
record.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from assonant_ioc.events.kafka import consume_event, consume_record
from assonant_ioc.sim import catalog_procs, procs
from tests.system.camera import acquire, scan
from tests.system.conftest import CA, REPO, start_service
from tests.system.tcp_proxy import Proxy
from tests.system.tiled_http import Tiled


def _experiment(client: CA, BL: str, P: str, exp_id: str, sample: str, turn: float) -> None:
    """Pre, (dark, flat,) recording while the sample turns and the camera takes
    projections, post, end: one NXtomo file."""
    client.put(f"{P}ExperimentId", exp_id)
    client.put(f"{P}SampleName", sample)
    client.put(f"{P}Snapshot:Pre", 1)
    acquire(client, BL, 2)  # dark
    acquire(client, BL, 1)  # flat
    scan(client, BL, P, turn)
    client.put(f"{P}Snapshot:Post", 1)
    client.put(f"{P}EndOfExperiment", 1)


def _found_within(
    tiled: Tiled, event: dict[str, Any], timeout: float, sent: float | None = None
) -> float:
    """Wait until the event's file is found by sample, beamline and time range; returns
    the seconds from ``sent`` (the event's record on the broker; else from now) to found:
    the consumer's and the catalog's share, not the IOC's validation before it sent it."""
    began = time.time() if sent is None else sent
    start = datetime.fromisoformat(event["start_time"]).timestamp()
    end = datetime.fromisoformat(event["end_time"]).timestamp()
    searches = [
        [("sample", "eq", event["sample_name"])],
        [("beamline", "eq", event["beamline"]), ("experiment_id", "eq", event["experiment_id"])],
        [("end_epoch", "ge", start - 0.5), ("start_epoch", "le", end + 0.5)],
    ]

    def found() -> bool:
        return all(
            any(m["event_id"] == event["event_id"] for m in tiled.search(*s).values())
            for s in searches
        )

    procs.wait_until(found, timeout, f"{event['file_path']} in the catalog")
    return time.time() - began


async def _send_raw(kafka: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"hand-made")
    finally:
        await producer.stop()


@pytest.mark.timeout(400)  # its time on a loaded 2-core machine, with room
def test_catalog_finds_and_serves_every_file_once(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    BL = sim[0]
    topic = f"assonant.test.{procs.new_prefix('c').strip(':')}"
    catalog = f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"
    api_key = secrets.token_hex(16)
    broker_port = procs.free_port()
    config = (REPO / "configs" / "sim_tomo.yaml").read_text()
    samples = ["phantom A", "phantom B", "phantom C", "phantom D", "phantom E"]
    events: list[dict[str, Any]] = []
    latencies: list[float] = []
    with Proxy(broker_port) as proxy, procs.broker(log_dir, broker_port, proxy.port) as _:
        kafka = f"127.0.0.1:{proxy.port}"  # every client goes through the proxy
        with start_service(
            log_dir, tmp_path, sim, ["--kafka-bootstrap", kafka], topic, config_text=config
        ) as (client, P, data_dir, _ioc):
            client.put(f"{BL}det:HDF1:FilePath", str(data_dir / "detector"))
            with catalog_procs.catalog_server(log_dir, catalog, [data_dir], api_key) as url:
                tiled = Tiled(url, api_key)

                def run(n: int) -> tuple[dict[str, Any], float]:
                    exp_id = f"cat-{n}-{int(time.time())}"
                    _experiment(client, BL, P, exp_id, samples[n], turn=(n + 1) * 15.0)
                    event, sent = asyncio.run(consume_record(kafka, topic, exp_id, timeout=60))
                    events.append(event)
                    return event, sent

                with catalog_procs.catalog_consumer(log_dir, kafka, topic, catalog, [data_dir]) as (
                    consumer,
                    st,
                ):
                    for n in (0, 1, 2):  # from the event's send to found in a search
                        event, sent = run(n)
                        latencies.append(_found_within(tiled, event, 5, sent))
                    consumer.popen.send_signal(signal.SIGKILL)  # between two events
                    consumer.popen.wait(10)
                # a file written while no consumer runs is registered when one starts again
                unseen, _ = run(3)
                with catalog_procs.catalog_consumer(log_dir, kafka, topic, catalog, [data_dir]) as (
                    consumer,
                    st,
                ):
                    _found_within(tiled, unseen, 30)
                    # a broker outage: the IOC keeps its event, the consumer waits it out
                    proxy.cut()
                    exp_id = f"cat-4-{int(time.time())}"
                    _experiment(client, BL, P, exp_id, samples[4], turn=30.0)
                    procs.wait_until(
                        lambda: not catalog_procs.consumer_status(st)["broker_connected"],
                        30,
                        "outage seen",
                    )
                    proxy.restore()
                    late = asyncio.run(consume_event(kafka, topic, exp_id, timeout=60))
                    events.append(late)
                    _found_within(tiled, late, 60)
                    # what is not a file: a missing file is recorded, garbage is counted
                    missing = dict(unseen, event_id="f" * 32, sample_name="gone")
                    missing["file_path"] = str(data_dir / "never_written.nx")
                    asyncio.run(_send_raw(kafka, topic, json.dumps(missing).encode(), b"{not json"))
                    procs.wait_until(
                        lambda: catalog_procs.consumer_status(st)["invalid_events"] == 1,
                        30,
                        "invalid",
                    )
                    gone = tiled.search(("sample", "eq", "gone"))
                    assert [m["status"] for m in gone.values()] == ["missing"]
                    procs.wait_until(
                        lambda: catalog_procs.consumer_status(st)["lag"] == 0, 30, "no lag"
                    )
                    counts = catalog_procs.consumer_status(st)
                    assert counts["missing"] == 1 and counts["catalog_errors"] == 0

                every = tiled.search(("beamline", "eq", "SIM"))
                by_event = sorted(m["event_id"] for m in every.values())
                assert by_event == sorted([e["event_id"] for e in events] + ["f" * 32])
                for event in events:
                    mine = [m for m in every.values() if m["event_id"] == event["event_id"]]
                    assert len(mine) == 1
                    meta = mine[0]
                    assert meta["status"] == "ok"
                    assert meta["sha256"] == event["sha256"]
                    assert meta["file_size"] == Path(event["file_path"]).stat().st_size
                    assert meta["definition"] == "NXtomo"
                    assert meta["validation"] == event["validation"]
                    assert meta["moments"] == event["moments"]
                    assert meta["ended_by"] == event["ended_by"]

                # every field of the event is a search
                first = events[0]
                for query in [
                    ("ended_by", "eq", first["ended_by"]),
                    ("sha256", "eq", first["sha256"]),
                    ("event_id", "eq", first["event_id"]),
                    ("file_path", "eq", first["file_path"]),
                    ("experiment_id", "eq", first["experiment_id"]),
                    ("validation.errors", "eq", first["validation"]["errors"]),
                    ("moments", "contains", "post_exposure"),
                    ("text", "text", "phantom"),
                ]:
                    hits = tiled.search(query, ("definition", "eq", "NXtomo"))
                    assert first["event_id"] in [m["event_id"] for m in hits.values()], query

                # datasets over HTTP equal the file's: a recorded series, a detector frame
                key = next(k for k, m in every.items() if m["event_id"] == events[0]["event_id"])
                with h5py.File(events[0]["file_path"]) as f:
                    rx = f["during_exposure/sample/rx/value"][()]
                    frames = f["during_exposure/data/data"]
                    frame = frames[frames.shape[0] - 1]
                    n_frames = frames.shape[0]
                    keys = f["during_exposure/data/image_key"][()]
                assert rx.size > 2 and np.any(keys == 0)
                got = tiled.array(key, "during_exposure/sample/rx/value", rx.dtype, rx.shape)
                np.testing.assert_array_equal(got, rx)
                got = tiled.array(
                    key, "during_exposure/data/data", frame.dtype, frame.shape, str(n_frames - 1)
                )
                np.testing.assert_array_equal(got, frame)
                assert frame.std() > 0  # a projection of the phantom, not a blank

                # the command line's search (tiled's Python client)
                since = events[0]["start_time"]
                found = catalog_procs.search_command(
                    url, api_key, "--sample", samples[0], "--since", since
                )
                (line,) = found.stdout.splitlines()
                assert json.loads(line)["file_path"] == events[0]["file_path"]
                assert found.stderr == "1 file(s)\n"  # nothing else: no client library's logs
                keyless = catalog_procs.search_command(url, None, check=False)
                assert keyless.returncode == 2 and "set TILED_API_KEY" in keyless.stderr

                # without the API key, nothing
                try:
                    Tiled(url, "wrong").search(("beamline", "eq", "SIM"))
                    raise AssertionError("a wrong API key was let in")
                except urllib.error.HTTPError as err:
                    assert err.code == 401
                # the server's banner printed its URL, with the key masked
                served = "".join(p.read_text() for p in log_dir.glob("catalog-server*.log"))
                assert "api_key=***" in served and api_key not in served

                # a backfill of the same directory adds nothing
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "assonant_ioc.cli",
                        "catalog",
                        "backfill",
                        str(data_dir),
                        "--catalog",
                        catalog,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=True,
                )
                assert f"duplicate={len(events)}" in out.stdout and "registered" not in out.stdout
                assert len(tiled.search(("beamline", "eq", "SIM"))) == len(events) + 1
    assert max(latencies) < 5
