"""A 2-hour scan without waiting 2 hours, and the same against a 1-minute one.

1,000 PVs at 10 Hz (a third still, a third moving, a third noisy), appended through the
Recorder a batch a simulated second, as the monitor and the flush thread do, as fast as
this machine takes them: 72 million readings for 2 hours. Beside it the worker process
stages the recording on the service's own schedule (``lifecycle.staging``: a round, then
max(staging_every_s, 4 x that round's seconds) of recording before the next); what the
last round did not take is left to EndOfExperiment, as in the service. Then
EndOfExperiment's build in that worker (the file at its hidden name,
summed and fsynced). Reported: the build's seconds after 2 hours and after 1 minute, the
worker's peak RSS in each (a fresh worker each), and the journal's bytes per reading.

    python -m bench.long_scan [--minutes 120] [--pvs 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assonant_ioc.config import load_config
from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.lifecycle import staging
from assonant_ioc.lifecycle.build import BuildJob, build, init_worker
from assonant_ioc.lifecycle.journal import Journal, Recorder
from bench.scale import pv_names, write_scale_config

if TYPE_CHECKING:
    from bench.run import Bench

T0 = 1_764_000_000.0
PREFIX = "BENCH:"


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e3
    raise RuntimeError("no VmHWM")


def _scan(work: Path, seconds: int, n_pvs: int) -> dict[str, Any]:
    """Record ``seconds`` simulated seconds, staging beside; then build. One fresh worker."""
    state = work / f"state_{seconds}"
    config_path = write_scale_config(work / f"long_{n_pvs}.yaml", PREFIX, n_pvs, n_pvs)
    config = load_config(config_path)
    journal = Journal(state)
    journal.begin(
        {
            "experiment_id": f"scan{seconds}",
            "captured": ["during"],
            "moments": {"during": {"start": T0, "end": None}},
        }
    )
    pvs = pv_names(PREFIX, n_pvs)
    rec = Recorder(journal.during_path(), pvs, T0, lambda _pv: "counts", 3600.0)
    rng = np.random.default_rng(1)
    base = np.arange(n_pvs, dtype=np.float64)
    kinds = [i % 3 for i in range(n_pvs)]
    rounds = 0
    every = config.staging_every_s
    next_round = every  # the service's schedule (Lifecycle._stage_while_recording): a
    # round, then a wait of max(every, 4 x that round's seconds) of recording
    began = time.perf_counter()
    with ProcessPoolExecutor(1, initializer=init_worker) as pool:
        for second in range(seconds):
            for tick in range(10):
                at = T0 + second + tick / 10
                step = (second * 10 + tick) * 0.01
                noise = (100.0 + base + rng.normal(0, 0.01, n_pvs)).tolist()
                jitter = (at + rng.random(n_pvs) * 0.01).tolist()
                add = rec.add
                for i, pv in enumerate(pvs):
                    kind = kinds[i]
                    value = noise[i] if kind == 2 else base[i] + (step if kind else 0.0)
                    add(pv, float(value), jitter[i], 0, 0, True)
            rec.flush()  # a batch a second, made durable, as the flush thread does
            if second + 1 >= next_round:
                # the round's own seconds pass on the simulated clock too: the recording made
                # meanwhile is the next second's batches (the same journal, a faster clock)
                done = pool.submit(staging.stage, str(state), T0, CompressionSpec()).result()
                next_round = second + 1 + max(every, 4 * float(done["seconds"]))
                rounds += 1
        rec.stop()
        recorded = time.perf_counter() - began
        meta = journal.load_meta()
        meta["moments"]["during"]["end"] = T0 + seconds
        journal.save_meta(meta)
        readings = seconds * 10 * n_pvs
        journal_bytes = journal.during_path().stat().st_size
        job = BuildJob(
            config, str(state), str(work / "data" / f"scan{seconds}.nxs"), "s", "s", "", "e" * 32
        )
        t = time.perf_counter()
        tmp, event = pool.submit(build, job).result()
        build_s = time.perf_counter() - t
        rss = pool.submit(_peak_rss_mb).result()
    Path(tmp).unlink()
    journal.discard()
    return {
        "seconds": seconds,
        "readings": readings,
        "recorded_s": recorded,
        "rounds": rounds,
        "build_s": build_s,
        "worker_peak_rss_mb": rss,
        "journal_bytes_per_reading": journal_bytes / readings,
        "file_bytes": event["file_size"] if "file_size" in event else None,
    }


def measure(work: Path, minutes: int, n_pvs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    short = _scan(work, 60, n_pvs)
    long_ = _scan(work, minutes * 60, n_pvs)
    return short, long_


def run(bench: Bench) -> None:
    minutes = 10 if bench.quick else 120
    short, long_ = measure(bench.work, minutes, 1000)
    scenario = f"long scan: 1,000 PVs at 10 Hz, {minutes} minutes simulated"
    bench.row(
        scenario,
        f"EndOfExperiment's build after {minutes} minutes ({long_['readings']:,} readings), s",
        long_["build_s"],
        "<= 5",
        short_s=short["build_s"],
        staging_rounds=long_["rounds"],
        ratio=long_["build_s"] / short["build_s"],
    )
    bench.row(
        scenario,
        f"worker's peak RSS, {minutes} minutes / 1 minute",
        long_["worker_peak_rss_mb"] / short["worker_peak_rss_mb"],
        "<= 1.1",
        long_mb=long_["worker_peak_rss_mb"],
        short_mb=short["worker_peak_rss_mb"],
    )
    bench.row(
        scenario,
        "journal bytes per reading",
        long_["journal_bytes_per_reading"],
        "<= 16",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--pvs", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assonant-long-") as tmp:
        short, long_ = measure(Path(tmp), args.minutes, args.pvs)
    json.dump({"short": short, "long": long_}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
