"""The catalog: events registered per second, event-to-searchable latency, backfill rate.

The consumer is the real ``assonant-ioc catalog consume`` process; its baseline is a bare
aiokafka consumer group reading (and JSON-decoding) the same events in this process.
Latency is from the event's send to the file found by tiled's HTTP search.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from assonant_ioc.catalog.backfill import backfill
from assonant_ioc.catalog.store import Catalog
from assonant_ioc.events import file_written_event
from assonant_ioc.nexus import write_experiment
from assonant_ioc.sim import catalog_procs, procs
from bench.writes import synthetic_experiment

if TYPE_CHECKING:
    from bench.run import Bench


def _files(folder: Path, n: int) -> list[tuple[Path, dict[str, Any]]]:
    """``n`` experiment files (copies of one written file) and the event of each."""
    x = synthetic_experiment(50, 2, 100)
    first = write_experiment(x, folder / "template.nxs")
    data = first.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    out = []
    for i in range(n):
        path = folder / f"BENCH_{i:05d}.nxs"
        shutil.copyfile(first, path)
        event = file_written_event(x, path, len(data), sha, time.time(), event_id=uuid.uuid4().hex)
        event["sample_name"] = f"bench sample {i}"
        out.append((path, event))
    first.unlink()
    return out


def _real_files(folder: Path, n: int) -> list[Path]:
    """``n`` files the size a beamline's are: 10,000 PVs in the pre and post snapshots, 100
    of them recorded during (600 points each), a detector's 100 frames linked (one detector
    file beside them); copies of one written file, each a file of its own."""
    import dataclasses

    import h5py
    import numpy as np

    from assonant_ioc.model.components import Component, ComponentClass, LinkedData, Moment

    frames = folder / "detector" / "frames_000.h5"
    frames.parent.mkdir(parents=True)
    with h5py.File(frames, "w") as f:
        rng = np.random.default_rng(0)
        f["/entry/data/data"] = rng.integers(0, 4000, (100, 256, 256), dtype=np.uint16)
    x = synthetic_experiment(10000, 100, 600)
    det = Component("detector", ComponentClass.DETECTOR, data=LinkedData((str(frames),)))
    entries = tuple(
        dataclasses.replace(e, instrument=(*e.instrument, det)) if e.moment is Moment.DURING else e
        for e in x.entries
    )
    first = write_experiment(dataclasses.replace(x, entries=entries), folder / "template.nxs")
    out = []
    for i in range(n):
        path = folder / f"REAL_{i:04d}.nxs"
        shutil.copyfile(first, path)
        out.append(path)
    first.unlink()
    return out


async def _produce(kafka: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send(
                topic, json.dumps(event).encode(), key=event["experiment_id"].encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _bare(kafka: str, topic: str, n: int, events: list[dict[str, Any]]) -> float:
    """Seconds for a bare consumer group to read ``n`` events sent after it joined."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=f"bare-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        for tp in consumer.assignment():
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
        t0 = time.perf_counter()
        await _produce(kafka, topic, events)
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batch.items():
                got += sum(1 for r in records if json.loads(r.value or b"{}"))
                await consumer.commit({tp: records[-1].offset + 1})
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


def _found(url: str, api_key: str, sample: str) -> bool:
    return bool(catalog_procs.search(catalog_procs.search_request(url, api_key, "sample", sample)))


async def _latencies(
    kafka: str, topic: str, events: list[dict[str, Any]], url: str, api_key: str
) -> list[float]:
    """Seconds from each event's send (acknowledged) to its file found by an HTTP search."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    out = []
    try:
        for event in events:
            t = time.perf_counter()
            await producer.send_and_wait(topic, json.dumps(event).encode())
            while not await asyncio.to_thread(_found, url, api_key, event["sample_name"]):
                if time.perf_counter() - t > 30:
                    raise TimeoutError(f"{event['file_path']} not searchable after 30 s")
            out.append(time.perf_counter() - t)
    finally:
        await producer.stop()
    return out


async def _backfill(data: Path, catalog: str) -> tuple[float, int]:
    """Seconds to backfill ``data`` into a new catalog (in this process), and files registered."""
    store = await Catalog.open(catalog)
    try:
        t0 = time.perf_counter()
        counts = await backfill(store, data, io.StringIO())
        return time.perf_counter() - t0, counts["registered"]
    finally:
        await store.close()


#: The same search as one plain HTTP request from a new Python process: the baseline.
_BARE_SEARCH = """
import json, sys, urllib.parse, urllib.request
url, key, beamline = sys.argv[1:]
q = urllib.parse.urlencode([("filter[eq][condition][key]", "beamline"),
                            ("filter[eq][condition][value]", json.dumps(beamline))])
auth = {"Authorization": "Apikey " + key}
req = urllib.request.Request(url + "/api/v1/search/?" + q, headers=auth)
assert len(json.loads(urllib.request.urlopen(req).read())["data"]) == 1
"""


def run(bench: Bench) -> None:
    n = 200 if bench.quick else 2000
    n_latency = 20 if bench.quick else 100
    work = bench.work / "catalog"
    data = work / "data"
    data.mkdir(parents=True)
    files = _files(data, n + n_latency)
    events = [e for _, e in files]
    catalog = f"sqlite:///{work / 'catalog.db'}"
    api_key = secrets.token_hex(16)
    topic = "bench.catalog"
    with procs.broker(bench.logs) as kafka:
        for t in (topic, f"{topic}.bare"):  # the producer's metadata request makes each topic
            asyncio.run(_produce(kafka, t, []))
        bare_s = asyncio.run(_bare(kafka, f"{topic}.bare", n, events[:n]))
        with catalog_procs.catalog_consumer(bench.logs, kafka, topic, catalog, [data]) as (_, port):
            procs.wait_until(
                lambda: catalog_procs.consumer_status(port)["assigned"] > 0, 60, "group joined"
            )
            t0 = time.perf_counter()
            asyncio.run(_produce(kafka, topic, events[:n]))
            procs.wait_until(
                lambda: catalog_procs.consumer_status(port)["registered"] >= n, 300, "registration"
            )
            ours_s = time.perf_counter() - t0
            with catalog_procs.catalog_server(bench.logs, catalog, [data], api_key) as url:
                latencies = asyncio.run(_latencies(kafka, topic, events[n:], url, api_key))
    bench.row(
        f"catalog: {n} events",
        "events registered per second",
        n / ours_s,
        ">= 50",
        seconds=ours_s,
        bare_consumer_per_s=n / bare_s,
        ratio_to_bare=(n / ours_s) / (n / bare_s),
    )
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    bench.row(
        f"catalog: {n_latency} events one by one",
        "ms from event sent to found by HTTP search (median)",
        statistics.median(latencies) * 1e3,
        "",
        p99_ms=p99 * 1e3,
        all_ms=[x * 1e3 for x in latencies],
    )
    bench.row(f"catalog: {n_latency} events one by one", "p99 ms", p99 * 1e3, "")
    # the command line's search of a one-file catalog, against a bare HTTP request in the
    # same run (a new Python process each, as a user runs it)
    one = work / "one"
    one.mkdir()
    shutil.copy(files[0][0], one / files[0][0].name)
    one_db = f"sqlite:///{work / 'one.db'}"
    asyncio.run(_backfill(one, one_db))
    beamline = str(events[0]["beamline"])  # the file's own metadata (backfilled)
    with catalog_procs.catalog_server(bench.logs, one_db, [one], api_key) as url:
        ours, bare = [], []
        for _ in range(3 if bench.quick else 5):
            t = time.perf_counter()
            done = catalog_procs.search_command(url, api_key, "--beamline", beamline)
            ours.append(time.perf_counter() - t)
            assert done.stdout.count("\n") == 1, (done.stdout, done.stderr)
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", _BARE_SEARCH, url, api_key, beamline],
                check=True,
                timeout=60,
                capture_output=True,
            )
            bare.append(time.perf_counter() - t)
    bench.row(
        "catalog: search of a one-file catalog",
        "assonant-ioc catalog search, seconds (median)",
        statistics.median(ours),
        "<= 1",
        bare_http_s=statistics.median(bare),
        ratio_to_bare=statistics.median(ours) / statistics.median(bare),
    )
    # backfill into an empty catalog: files the size a beamline's are
    real = work / "real"
    files_real = _real_files(real, 20 if bench.quick else 200)
    size_mb = files_real[0].stat().st_size / 1e6
    backfill_s, registered = asyncio.run(_backfill(real, f"sqlite:///{work / 'backfill.db'}"))
    bench.row(
        f"catalog: backfill {registered} files of {size_mb:.1f} MB (10,000 PVs, frames linked)",
        "files per second",
        registered / backfill_s,
        ">= 50",
        seconds=backfill_s,
        file_mb=size_mb,
        mb_per_s=registered * size_mb / backfill_s,
    )
