"""Bluesky runs in, measured: how many documents per second ``assonant-ioc bluesky`` takes
from Kafka against a bare bluesky-kafka consumer reading the same topic in the same run,
and the file's write time from a run's documents against the PV path's build from its
journal, for the same content (1,000 data keys at 10 Hz in the primary stream, each also in
the baseline stream at start and stop).

    python -m bench.bluesky [--keys 1000] [--events 600] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from assonant_ioc.config.loader import load_config
from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.documents.consumer import DocumentConsumer
from assonant_ioc.documents.writer import RunWriter
from assonant_ioc.events.consuming import Subscription
from assonant_ioc.lifecycle import build as pv_build
from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.model.readings import RawSnapshot
from assonant_ioc.sim import procs
from bench.scale import write_scale_config

Doc = tuple[str, dict[str, Any]]
PREFIX = "BENCH:"


def documents(keys: int, events: int, rate: float = 10.0) -> list[Doc]:
    """A run: ``keys`` PVs (``PV:`` sources) at start and stop (baseline) and ``events``
    primary events of all of them at ``rate`` Hz."""
    from event_model import compose_run

    t0 = time.time() - events / rate - 2
    pvs = [f"{PREFIX}s{i:05d}" for i in range(keys)]
    data_keys = {
        pv.replace(":", "_"): {
            "source": f"PV:{pv}",
            "dtype": "number",
            "shape": [],
            "units": "counts",
        }
        for pv in pvs
    }
    run = compose_run(metadata={"experiment_id": "bench-bluesky"}, time=t0)
    docs: list[Doc] = [("start", dict(run.start_doc))]
    base = run.compose_descriptor(name="baseline", data_keys=data_keys, configuration={})
    primary = run.compose_descriptor(name="primary", data_keys=data_keys, configuration={})
    docs += [
        ("descriptor", dict(base.descriptor_doc)),
        ("descriptor", dict(primary.descriptor_doc)),
    ]

    def event(desc: Any, t: float, i: int) -> Doc:
        data = {k: float(i + n) for n, k in enumerate(data_keys)}
        return "event", dict(
            desc.compose_event(data=data, timestamps=dict.fromkeys(data, t), time=t)
        )

    docs.append(event(base, t0 + 0.5, 0))
    docs += [event(primary, t0 + 1 + i / rate, i) for i in range(events)]
    docs.append(event(base, t0 + 1.5 + events / rate, events))
    docs.append(("stop", dict(run.compose_stop(time=t0 + 2 + events / rate))))
    return docs


def pv_path_job(
    config: BeamlineConfig, state: Path, data: Path, docs: list[Doc]
) -> pv_build.BuildJob:
    """The same readings in the PV path's journal (snapshots and a recording), as the IOC
    would have made them; returns the build job of its EndOfExperiment."""
    journal = Journal(state)
    events = [d for n, d in docs if n == "event"]
    start_doc = docs[0][1]
    base_uid = next(d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "baseline")
    baseline = [e for e in events if e["descriptor"] == base_uid]
    primary = [e for e in events if e["descriptor"] != base_uid]

    def pv(key: str) -> str:
        return key.replace("_", ":", 1)

    def snap(e: dict[str, Any]) -> RawSnapshot:
        raw = {pv(k): (v, e["timestamps"][k], 0, 0, True) for k, v in e["data"].items()}
        return RawSnapshot(raw, dict.fromkeys(raw, "counts"), {})

    t_start, t_end = float(primary[0]["time"]), float(primary[-1]["time"])
    meta: dict[str, Any] = {
        "version": 1,
        "experiment_id": "bench-bluesky",
        "sample": "",
        "started": float(start_doc["time"]),
        "state": "Collecting",
        "captured": ["pre", "during", "post"],
        "moments": {
            "pre": {"start": baseline[0]["time"], "end": baseline[0]["time"]},
            "during": {"start": t_start, "end": t_end},
            "post": {"start": baseline[-1]["time"], "end": baseline[-1]["time"]},
        },
        "writing": None,
    }
    journal.begin(meta)
    journal.save_snapshot("pre", snap(baseline[0]))
    journal.save_snapshot("post", snap(baseline[-1]))
    pvs = [pv(k) for k in primary[0]["data"]]
    recorder = Recorder(journal.during_path(), pvs, t_start - 0.1, lambda _: "counts", 3600)
    for e in primary:
        for k, v in e["data"].items():
            recorder.add(pv(k), v, e["timestamps"][k], 0, 0, True)
    recorder.close(t_end + 1)
    recorder.stop()
    return pv_build.BuildJob(
        config, str(state), str(data / "pv-path.nxs"), "bench-bluesky", "", "", "0" * 32
    )


def write_times(config: BeamlineConfig, docs: list[Doc], work: Path) -> dict[str, float]:
    writer = RunWriter(config, work / "bs-state", str(work / "bs-data"))
    done: list[str] = []
    for name, doc in docs:
        done += writer.add(name, doc)
    t = time.perf_counter()
    writer.write(done[0])
    ours = time.perf_counter() - t
    writer.close()
    job = pv_path_job(config, work / "pv-state", work / "pv-data", docs)
    t = time.perf_counter()
    tmp, _ = pv_build.build(job)
    pv = time.perf_counter() - t
    Path(tmp).unlink()
    return {"documents_s": ours, "pv_path_s": pv}


def bare_rate(kafka: str, topic: str, total: int) -> float:
    """Documents per second a bare bluesky-kafka consumer reads the topic at (from its
    first document to the stop)."""
    from bluesky_kafka import BlueskyConsumer

    seen: list[float] = []

    def take(consumer: Any, topic: str, name: str, doc: Any) -> bool:
        seen.append(time.perf_counter())
        return name != "stop"

    consumer = BlueskyConsumer(
        [topic],
        kafka,
        f"bench-bare-{secrets.token_hex(4)}",
        consumer_config={"auto.offset.reset": "earliest", "session.timeout.ms": 6000},
        process_document=take,
    )
    # its loop goes on after a stop document (and its stop() fails in 0.10: no
    # stop_polling): it polls while told to
    consumer.start(continue_polling=lambda: len(seen) < total)
    return (len(seen) - 1) / (seen[-1] - seen[0])


def our_rate(config: BeamlineConfig, kafka: str, topic: str, work: Path) -> float:
    """Documents per second ``assonant-ioc bluesky``'s consumer takes (checked, journaled,
    durable) from its first document to the stop, the file's write aside."""
    writer = RunWriter(config, work / "ours-state", str(work / "ours-data"))
    seen: list[float] = []

    class Timed(DocumentConsumer):
        def _take(self, tp: Any, offset: int, value: bytes | None) -> list[str]:
            done = super()._take(tp, offset, value)
            seen.append(time.perf_counter())
            return done

        async def write(self, uid: str, timed_out: bool = False) -> None:
            seen.append(time.perf_counter())  # the stop taken: the keep-up measure ends
            stop.set()

    consumer = Timed(writer, Subscription(kafka, (topic,), f"bench-ours-{secrets.token_hex(4)}"))
    stop = asyncio.Event()

    async def go() -> None:
        try:
            await consumer.run(stop)
        finally:
            await consumer.close()

    asyncio.run(go())
    return (len(seen) - 2) / (seen[-1] - seen[0])


def main(argv: list[str] | None = None) -> None:
    from bluesky_kafka import Publisher

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--events", type=int, default=600, help="primary events (10 Hz)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = load_config(write_scale_config(work / "bench.yaml", PREFIX, args.keys, args.keys))
        config = dataclasses.replace(config, validate=False)
        docs = documents(args.keys, args.events)
        times = write_times(config, docs, work)
        with procs.broker(work) as kafka:
            topic = f"bench-docs-{secrets.token_hex(4)}"
            publisher = Publisher(topic=topic, bootstrap_servers=kafka, key="bench")
            for name, doc in docs:
                publisher(name, doc)
            publisher.flush()
            bare = bare_rate(kafka, topic, len(docs))
            ours = our_rate(config, kafka, topic, work)
    rows = {
        "keys": args.keys,
        "events": args.events,
        "documents": len(docs),
        "bare_docs_per_s": round(bare, 1),
        "ours_docs_per_s": round(ours, 1),
        "ours_over_bare": round(ours / bare, 3),
        "needed_docs_per_s": 10.0,
        "write_documents_s": round(times["documents_s"], 3),
        "write_pv_path_s": round(times["pv_path_s"], 3),
        "write_ratio": round(times["documents_s"] / times["pv_path_s"], 3),
    }
    for key, value in rows.items():
        print(f"{key:20} {value}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
