"""The hostile-input suite as a fuzz loop: random ``file_written`` events and Bluesky
documents, drawn from one seed, sent for a bounded time to the real services (the catalog
consumer and the processor with ``--read`` the data root, ``assonant-ioc bluesky`` with its
detector directory), each round followed by canaries (a good file's event, a good run)
that must get through within their bound.

Counted: hangs (a canary not through in time, or a /health that says 503), crashes (a
service that exited), and messages not accounted for (every event a consumer took is in
exactly one of its counts: registered, duplicate, updated, refused, invalid, or for the
processor done, not processed, failed...). Each must be 0.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
from aiokafka import AIOKafkaProducer
from event_model import compose_run

from assonant_ioc.sim import catalog_procs, procs
from assonant_ioc.sim.records import all_announced, catalog_get, xas_file

#: strings an attacker puts where a name or a path goes
NASTY = [
    "../../../tmp/escape",
    "/etc/passwd",
    "a\0b",
    "abc\u202egpj.exe",
    "<img src=x onerror=alert(1)>",
    "\x1b[2J\x9b31m",
    "..",
    "/",
    "",
    "x" * 5000,
    "\ud800",
    "C:\\Windows\\win.ini",
    "file:///dev/zero",
]
CANARY_BOUND_S = 120.0


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
        found: dict[str, Any] = json.loads(reply.read())
        return found


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


class Fuzz:
    def __init__(self, rng: random.Random, data: Path, good: dict[str, Any]) -> None:
        self.rng = rng
        self.data = data
        self.good = good
        self.paths = [
            "/etc/passwd",
            "/dev/zero",
            "/dev/urandom",
            "/proc/self/environ",
            str(data / "fifo.nxs"),
            str(data / "link_out.nxs"),
            str(data / "link_zero.nxs"),
            f"{data}/../outside.nxs",
            "relative.nxs",
            str(data),
            str(data / "gone.nxs"),
            good["file_path"],
        ]

    def value(self) -> Any:
        r = self.rng
        return r.choice(
            [
                r.choice(NASTY),
                r.randint(-(2**63), 2**63),
                None,
                [r.choice(NASTY)],
                {"a": r.choice(NASTY)},
                r.random(),
                True,
            ]
        )

    def event(self) -> bytes:
        r = self.rng
        kind = r.random()
        if kind < 0.05:
            return r.randbytes(r.randint(0, 300))
        if kind < 0.08:
            return json.dumps(self.value()).encode()
        event = copy.deepcopy(self.good)
        event["event_id"] = uuid.uuid4().hex
        for _ in range(r.randint(1, 3)):
            what = r.random()
            if what < 0.45:
                event["file_path"] = r.choice(self.paths)
            elif what < 0.55:
                event["sha256"] = secrets.token_hex(32)
            elif what < 0.65:
                event.pop(r.choice(list(event)), None)
            elif what < 0.8:
                event[r.choice(list(event) or ["x"])] = self.value()
            elif what < 0.9:
                event[r.choice(["sample_name", "experiment_id", "beamline"])] = r.choice(NASTY)
            else:
                event["event_type"] = r.choice(["file_derived", "", 5, None, "file_written"])
        return json.dumps(event, default=str).encode()

    def run(self) -> list[bytes]:
        """One run's documents, mutated (packed as bluesky-kafka sends them)."""
        r = self.rng
        run = compose_run(metadata={"experiment_id": f"fz-{r.randint(0, 10**6)}"}, time=1.8e9)
        desc = run.compose_descriptor(
            name="primary", data_keys={"x": {"source": "PV:X", "dtype": "number", "shape": []}}
        )
        start, d = run.start_doc["uid"], desc.descriptor_doc["uid"]
        first = dict(run.start_doc)
        if r.random() < 0.5:  # after event-model's own check: what a hand-made one sends
            first[r.choice(["experiment_id", "sample", "comment", "proposal_id"])] = self.value()
        docs: list[tuple[str, Any]] = [
            ("start", first),
            ("descriptor", dict(desc.descriptor_doc)),
        ]
        if r.random() < 0.4:
            path = r.choice(self.paths)
            if r.random() < 0.5:
                docs.append(
                    (
                        "stream_resource",
                        {
                            "uid": f"sr-{start}",
                            "run_start": start,
                            "data_key": "det",
                            "mimetype": "application/x-hdf5",
                            "uri": f"file://localhost{path}",
                            "parameters": {"dataset": "/entry/data/data"},
                        },
                    )
                )
                docs.append(
                    (
                        "stream_datum",
                        {
                            "uid": f"sr-{start}/0",
                            "stream_resource": f"sr-{start}",
                            "descriptor": d,
                            "indices": {"start": 0, "stop": 1},
                            "seq_nums": {"start": 1, "stop": 2},
                        },
                    )
                )
            else:
                docs.append(
                    (
                        "resource",
                        {
                            "uid": f"r-{start}",
                            "run_start": start,
                            "spec": "AD_HDF5",
                            "root": "",
                            "resource_path": path,
                            "resource_kwargs": {},
                        },
                    )
                )
        event = desc.compose_event(data={"x": 1.0}, timestamps={"x": 1.8e9 + 1}, seq_num=1)
        docs += [("event", dict(event)), ("stop", dict(run.compose_stop()))]
        if r.random() < 0.15:
            docs = docs[1:]  # no start
        if r.random() < 0.3:  # a field gone, or of another type
            _, doc = r.choice(docs)
            key = r.choice(list(doc))
            if r.random() < 0.5:
                doc.pop(key)
            else:
                doc[key] = self.value()
        if r.random() < 0.1:
            r.shuffle(docs)
        out = [
            msgpack.packb([n, doc], default=str, unicode_errors="surrogatepass") for n, doc in docs
        ]
        if r.random() < 0.05:
            out.append(r.randbytes(r.randint(0, 200)))
        return out


async def _send(kafka: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", max_request_size=8 << 20)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=b"fuzz")
        await producer.flush()
    finally:
        await producer.stop()


def _good_run(n: int) -> list[bytes]:
    run = compose_run(metadata={"experiment_id": f"canary-{n}", "sample": "Ti"}, time=1.8e9)
    desc = run.compose_descriptor(
        name="primary", data_keys={"x": {"source": "PV:X", "dtype": "number", "shape": []}}
    )
    event = desc.compose_event(data={"x": 2.0}, timestamps={"x": 1.8e9 + 1}, seq_num=1)
    docs = [
        ("start", run.start_doc),
        ("descriptor", desc.descriptor_doc),
        ("event", event),
        ("stop", run.compose_stop()),
    ]
    return [msgpack.packb([name, dict(doc)], default=str) for name, doc in docs]


def run(bench: Any, seed: int = 20261207) -> None:
    seconds = 40.0 if bench.quick else 300.0
    work = bench.work / "fuzz"
    data = work / "data"
    data.mkdir(parents=True)
    (work / "outside.nxs").write_bytes(b"secret")
    (data / "link_out.nxs").symlink_to("/etc/passwd")
    (data / "link_zero.nxs").symlink_to("/dev/zero")
    os.mkfifo(data / "fifo.nxs")
    template = xas_file(work / "template.nxs", seed=1)
    rng = random.Random(seed)
    fuzz = Fuzz(rng, data, xas_file(data / "good.nxs", seed=2))
    events_topic, docs_topic = "fuzz.files", "fuzz.docs"
    config = work / "bluesky.yaml"
    config.write_text(
        (Path(__file__).resolve().parents[1] / "assonant_ioc/configs/sim_bluesky.yaml")
        .read_text()
        .replace("topic: assonant.files", "topic: fuzz.bluesky.files")
        + f"validate: false\ndetector_dirs: [{data}]\n"
    )
    c_db, p_db = f"sqlite:///{work / 'c.db'}", f"sqlite:///{work / 'p.db'}"
    p_port, b_port = procs.free_port(), procs.free_port()
    sent_events = 0
    sent_docs = 0
    hangs = crashes = 0
    latencies: list[float] = []
    with procs.broker(bench.logs) as kafka:
        asyncio.run(_send(kafka, events_topic, []))
        asyncio.run(_send(kafka, docs_topic, []))
        bluesky = [
            sys.executable, "-m", "assonant_ioc.cli", "bluesky", "--config", str(config),
            "--bootstrap", kafka, "--topic", docs_topic, "--state-dir", str(work / "state"),
            "--data-dir", str(work / "bs-data"), "--status-port", str(b_port),
            "--run-timeout", "30",
        ]  # fmt: skip
        with (
            catalog_procs.catalog_consumer(bench.logs, kafka, events_topic, c_db, [data]) as (
                catalog,
                c_port,
            ),
            catalog_procs.processor(
                bench.logs, kafka, events_topic, p_db, work / "processed", "fuzz.derived",
                "fuzz", extra=["--status-port", str(p_port)], read=[data],
            ) as processor,
            procs.running("fuzz-bluesky", bluesky, {}, bench.logs) as consumer,
        ):  # fmt: skip
            procs.wait_until(lambda: _healthy(b_port) and _healthy(p_port), 60, "services up")
            t_end = time.monotonic() + seconds
            n = 0
            while time.monotonic() < t_end:
                n += 1
                events = [fuzz.event() for _ in range(100)]
                docs = [v for _ in range(30) for v in fuzz.run()]
                canary = data / f"canary_{n:04d}.nxs"
                shutil.copyfile(template["file_path"], canary)
                good = dict(template, file_path=str(canary), event_id=uuid.uuid4().hex)
                good["experiment_id"] = canary.stem
                asyncio.run(_send(kafka, events_topic, [*events, json.dumps(good).encode()]))
                files_before = _metric(b_port, "assonant_bluesky_files_total")
                asyncio.run(_send(kafka, docs_topic, [*docs, *_good_run(n)]))
                sent_events += len(events) + 1
                sent_docs += len(docs) + 4
                t0 = time.monotonic()
                try:
                    procs.wait_until(
                        lambda c=canary, before=files_before: (
                            (catalog_get(c_db, c) or {}).get("status") == "ok"
                            and all_announced(p_db, [c], "larch")
                            and _metric(b_port, "assonant_bluesky_files_total") > before
                        ),
                        CANARY_BOUND_S,
                        "the round's canaries",
                    )
                    latencies.append(time.monotonic() - t0)
                except TimeoutError:
                    hangs += 1
                for port in (c_port, p_port, b_port):
                    hangs += 0 if _healthy(port) else 1
                for proc in (catalog, processor, consumer):
                    crashes += proc.popen.poll() is not None
                if crashes:
                    break
            procs.wait_until(
                lambda: catalog_procs.consumer_status(c_port)["lag"] == 0, 120, "catalog caught up"
            )
            c = catalog_procs.consumer_status(c_port)
            p = _status(p_port)
            with urllib.request.urlopen(f"http://127.0.0.1:{b_port}/metrics", timeout=5) as r:
                said = r.read().decode().splitlines()
            b_refused = sum(
                float(line.split()[-1])
                for line in said
                if line.startswith("assonant_bluesky_refused_total{")
            )
    taken_c = sum(c[k] for k in ("registered", "duplicate", "updated", "refused", "invalid_events"))
    taken_p = sum(
        p[k]
        for k in (
            "done",
            "reused",
            "duplicate",
            "failed",
            "not_processed",
            "invalid_events",
            "refused",
        )
    )
    scenario = f"fuzz: {sent_events} events, {sent_docs} documents, seed {seed}, {seconds:.0f} s"
    bench.row(scenario, "hangs (a canary not through in 120 s, or /health 503)", hangs, "<= 0")
    bench.row(scenario, "crashes (a service exited)", crashes, "<= 0")
    bench.row(
        scenario, "catalog: events not accounted for", sent_events - taken_c, "<= 0", counts=c
    )
    bench.row(
        scenario, "processor: events not accounted for", sent_events - taken_p, "<= 0", counts=p
    )
    bench.row(scenario, "catalog: refused (outside, not regular, checksum...)", c["refused"], "")
    bench.row(scenario, "processor: refused", p["refused"], "")
    bench.row(scenario, "bluesky: documents refused", b_refused, "")
    bench.row(
        scenario,
        "s from a round's send to its canaries through (median)",
        statistics.median(latencies) if latencies else None,
        "",
        max_s=max(latencies, default=None),
    )
