"""The journal's size and cost: a minute of 1,000 PVs at 10 Hz (600,000 readings) appended
through the Recorder as the flush thread does (a batch a second, each made durable), packed
(the format the service writes) against unpacked (the columns as they are, the format before),
in the same process. Reported: bytes per reading, the time a batch's append and fsync
take, and the time the build takes to read the recording back, packed / unpacked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assonant_ioc.lifecycle import records
from assonant_ioc.lifecycle.journal import Journal, Recorder
from assonant_ioc.lifecycle.records import read_columns

if TYPE_CHECKING:
    from bench.run import Bench

T0 = 1_764_000_000.0


def _minute(folder: Path, packed: bool, n_pvs: int, seconds: int) -> tuple[float, float]:
    """(bytes per reading, seconds spent in the batches' flushes) for one recording, in
    ``folder/experiment/during.log``."""
    journal = Journal(folder)
    journal.begin({"experiment_id": "bench"})
    pvs = [f"BENCH:pv{i}" for i in range(n_pvs)]
    rec = Recorder(journal.during_path(), pvs, T0, lambda _pv: "mm", 3600.0)
    rng = np.random.default_rng(1)
    base = np.arange(n_pvs, dtype=np.float64)
    flushing = 0.0
    append = records.append_record
    records_append = (lambda *a, **k: append(*a, **k, packed=packed)) if not packed else append
    import assonant_ioc.lifecycle.journal as journal_module

    journal_module.append_record = records_append  # type: ignore[assignment]
    try:
        for second in range(seconds):
            for tick in range(10):
                at = T0 + second + tick / 10
                noise = rng.normal(0, 0.01, n_pvs)
                jitter = rng.random(n_pvs) * 0.01
                for i, pv in enumerate(pvs):  # still, moving and noisy PVs, a third each
                    kind = i % 3
                    value = base[i] + (0.0 if kind == 0 else (second * 10 + tick) * 0.01)
                    if kind == 2:
                        value = 100.0 + base[i] + noise[i]
                    rec.add(pv, float(value), at + float(jitter[i]), 0, 0, True)
            started = time.perf_counter()
            rec.flush()
            flushing += time.perf_counter() - started
        rec.stop()
    finally:
        journal_module.append_record = append  # type: ignore[assignment]
    readings = n_pvs * 10 * seconds
    return journal.during_path().stat().st_size / readings, flushing


def _read_back(folder: Path) -> float:
    """The best of 3 reads of the recording as the build reads it (seconds)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        read_columns(folder / "experiment" / "during.log")
        best = min(best, time.perf_counter() - started)
    return best


def run(bench: Bench) -> None:
    n_pvs, seconds = (1000, 10) if bench.quick else (1000, 60)
    unpacked_s = packed_s = float("inf")
    for attempt in range(2):  # alternated, the best of two each: this machine is noisy
        unpacked = bench.work / f"journal-unpacked-{attempt}"
        packed = bench.work / f"journal-packed-{attempt}"
        unpacked_bytes, took = _minute(unpacked, False, n_pvs, seconds)
        unpacked_s = min(unpacked_s, took)
        packed_bytes, took = _minute(packed, True, n_pvs, seconds)
        packed_s = min(packed_s, took)
    read_unpacked, read_packed = _read_back(unpacked), _read_back(packed)
    scenario = f"journal: {n_pvs} PVs at 10 Hz for {seconds} s"
    bench.row(
        scenario,
        "journal bytes per scalar reading (packed; unpacked in the same run)",
        packed_bytes,
        "<= 16",
        unpacked_bytes_per_reading=unpacked_bytes,
    )
    bench.row(
        scenario,
        "a batch's append and fsync, packed / unpacked",
        packed_s / unpacked_s,
        "<= 1.5",
        packed_s=packed_s,
        unpacked_s=unpacked_s,
    )
    bench.row(
        scenario,
        "the build's read of the recording, packed / unpacked",
        read_packed / read_unpacked,
        "<= 1.2",
        packed_s=read_packed,
        unpacked_s=read_unpacked,
    )
