"""A forwarder's stream as a source, against a bare aiokafka consumer in the same run: N
sources' f144 values sent to one topic at R messages a second for S seconds (keyed by
source, as the forwarder sends them), the service recording every source (``kafka://``
channels) and a bare consumer reading the same topic. A message is (source, value): the
values count up, so each is one message; lost = the bare consumer's messages stamped in
the recording's window that the file lacks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from assonant_ioc.sim import procs

if TYPE_CHECKING:
    from bench.run import Bench

TOPIC = "bench.forwarded"


def _config(n: int) -> str:
    lines = ["beamline: FWD", f"forwarder: {{topics: [{TOPIC}]}}", "kafka: {idempotent: false}"]
    lines += ["instrument:", "  - name: forwarded", "    class: Sensor", "    fields:"]
    lines += [f'      s{i:04d}: {{pv: "kafka://s{i:04d}", moments: [during]}}' for i in range(n)]
    return "\n".join(lines) + "\n"


async def _produce(bootstrap: str, n: int, rate: float, seconds: float, first: int) -> int:
    from aiokafka import AIOKafkaProducer
    from streaming_data_types.logdata_f144 import serialise_f144

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent, t0 = 0, time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            futures = []
            while sent < due:
                source = f"s{sent % n:04d}"
                value = float(first + sent)
                payload = serialise_f144(source, value, time.time_ns())
                futures.append(await producer.send(TOPIC, payload, key=source.encode()))
                sent += 1
            if futures:
                await asyncio.gather(*futures)
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()
    return sent


def _step(
    service: tuple[str, dict[str, str]], kafka: str, n: int, rate: float, seconds: float, first: int
) -> Any:
    prefix, ca = service
    env = dict(os.environ)
    args = [sys.executable, "-m", "bench.forwarder", "--bootstrap", kafka, "--seconds"]
    with subprocess.Popen(
        [*args, str(seconds + 6)], env=env, stdout=subprocess.PIPE, text=True
    ) as p:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.ca_put(f"{prefix}Record:During", 1, ca)
        sent = asyncio.run(_produce(kafka, n, rate, seconds, first))
        time.sleep(1.0)
        procs.ca_put(f"{prefix}Record:During", 0, ca)
        procs.ca_put(f"{prefix}EndOfExperiment", 1, ca, timeout=600)
        path = procs.ca_get(f"{prefix}LastFile", ca)
        bare = json.loads(p.stdout.read().strip().splitlines()[-1])["messages"]
    from bench.run import recorded_updates

    t0, t1, ours = recorded_updates(path)
    theirs = {(f"kafka://{s}", v) for s, ts, v in bare if t0 <= ts <= t1}
    return {"sent": sent, "recorded": len(ours), "bare": len(theirs), "lost": len(theirs - ours)}


def forwarder(bench: Bench) -> None:
    n = 100
    steps = (5_000,) if bench.quick else (5_000, 20_000, 50_000)
    with procs.broker(bench.logs) as kafka:
        asyncio.run(_produce(kafka, n, 1000, 0.5, 10**9))  # the topic, each source's value
        config = bench.work / "forwarder.yaml"
        config.write_text(_config(n))
        prefix = procs.new_prefix("AS")
        extra = ["--data-dir", str(bench.work / "fwd_data"), "--no-validate"]
        extra += ["--kafka-bootstrap", kafka, "--autosave", str(bench.work / "fwd.json")]
        with procs.service(bench.logs, config, prefix, procs.free_port(), extra) as (port, _p):
            ca = procs.ca_client_env(port)
            procs.wait_until(lambda: procs.ca_get(f"{prefix}PVsConnected", ca) == n, 60, "sources")
            best = None
            for k, rate in enumerate(steps):
                r = _step((prefix, ca), kafka, n, rate, 3 if bench.quick else 8, k * 10**8)
                bench.row(
                    f"f144 intake at {rate:,}/s ({n} sources)",
                    "messages recorded / a bare aiokafka consumer's (same topic, same run)",
                    r["recorded"] / max(r["bare"], 1),
                    ">= 0.9",
                    **r,
                )
                if r["lost"] == 0:
                    best = rate
    bench.row("f144 intake", "max messages/s recorded with 0 lost", best, "")


def bare_consumer(bootstrap: str, seconds: float) -> list[tuple[str, float, float]]:
    """Every f144 message of the topic from now on: (source, timestamp, value)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from streaming_data_types.logdata_f144 import deserialise_f144

    async def run() -> list[tuple[str, float, float]]:
        got: list[tuple[str, float, float]] = []
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            ids = cluster.partitions_for_topic(TOPIC) or set()
            parts = [TopicPartition(TOPIC, p) for p in sorted(ids)]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:
                await consumer.position(tp)
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        m = deserialise_f144(r.value)
                        got.append((m.source_name, m.timestamp_unix_ns * 1e-9, float(m.value)))
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    got = bare_consumer(args.bootstrap, args.seconds)
    sys.stdout.write(json.dumps({"messages": got}) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
