"""Run control over Kafka, timed in one run: from a ``pl72`` sent to the recording started
(State Recording: its first readings, the latest of each PV, are in the journal), and from
a ``6s4t`` sent to the file's ``wrdn`` consumed (recording stopped, post snapshot, file
written, event and wrdn acknowledged). 100 PVs updating at 10 Hz, each job recording 1 s."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from assonant_ioc.sim import procs
from assonant_ioc.sim.run_control import StatusTopic, send

if TYPE_CHECKING:
    from bench.run import Bench


def run_control(bench: Bench) -> None:
    from streaming_data_types.run_start_pl72 import serialise_pl72
    from streaming_data_types.run_stop_6s4t import serialise_6s4t

    from bench.scale import write_scale_config

    starts, stops = [], []
    with procs.broker(bench.logs) as kafka, bench.scale_ioc(100, ".1 second") as bl:
        config = write_scale_config(bench.work / "run_control.yaml", bl[0], 100, 100)
        config.write_text(
            "run_control: {command_topic: rc.cmd, status_topic: rc.status, "
            "service_id: bench, status_every_s: 1}\n" + config.read_text()
        )
        prefix = procs.new_prefix("AS")
        extra = ["--data-dir", str(bench.work / "rc_data"), "--no-validate"]
        extra += ["--kafka-bootstrap", kafka, "--autosave", str(bench.work / "rc.json")]
        listener = StatusTopic(kafka, "rc.status")
        try:
            with procs.service(bench.logs, config, prefix, bl[1], extra) as (port, _proc):
                env = procs.ca_client_env(port)
                listener.wait("x5f2", what="run control up")
                for i in range(3 if bench.quick else 10):
                    job = f"bench-{i}"
                    t0 = time.monotonic()
                    send(kafka, "rc.cmd", serialise_pl72(job, f"{job}.nxs", service_id="bench"))
                    procs.wait_until(
                        lambda: procs.ca_get(f"{prefix}State", env) == "Recording", 30, "job"
                    )
                    starts.append(time.monotonic() - t0)
                    time.sleep(1.0)
                    t0 = time.monotonic()
                    send(kafka, "rc.cmd", serialise_6s4t(job, service_id="bench"))
                    listener.wait("wrdn", job)
                    stops.append(time.monotonic() - t0)
        finally:
            listener.close()
    for name, figure, times in (
        ("pl72 to recording", "ms from a pl72 sent to State Recording (100 PVs)", starts),
        ("6s4t to wrdn", "ms from a 6s4t sent to its file's wrdn consumed (1 s, 100 PVs)", stops),
    ):
        ms = [x * 1e3 for x in times]
        bench.row(f"run control: {name}", figure, statistics.median(ms), "", all_ms=ms)
