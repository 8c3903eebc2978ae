"""Processing scales out on Kafka's consumer groups and on Dask, not on a scheduler of its
own: a burst of 10 files shared by two processors in one group, one of them killed -9 in
the middle of a job, gives each file exactly one result and one ``file_derived`` event; the
same burst handed to a Dask cluster (a ``LocalCluster`` with two worker processes) gives the
same results."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.events.kafka import EventSender, consume_all
from assonant_ioc.processing.jobs import job_for
from assonant_ioc.processing.pipelines import larch
from assonant_ioc.sim import catalog_procs, procs, samples
from tests.system.reduction import all_announced, catalog_records, children, xas_file

pytestmark = pytest.mark.timeout(600)

N = 10


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """10 NXxas files of a copper foil and their file_written events."""
    raw = tmp_path_factory.mktemp("raw")
    return [xas_file(raw / f"SIM_xas_{i:02d}.nxs", seed=i) for i in range(N)]


def _publish(kafka: str, topic: str, events: list[dict[str, Any]]) -> None:
    async def send() -> None:
        sender = EventSender(kafka, topic, idempotent=False)
        try:
            for event in events:
                await sender.send(event["experiment_id"], event)
        finally:
            await sender.close()

    asyncio.run(send())


def _roots(burst: list[dict[str, Any]], tmp_path: Path) -> list[Path]:
    """The directories the processor may read: the burst's and the test's own raw files."""
    return [Path(burst[0]["file_path"]).parent, tmp_path / "raw"]


def _derived_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.nxs")) if root.exists() else []


def _check(
    kafka: str, derived: str, db: str, root: Path, burst: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Exactly one event per job, one whole derived file per raw file, each done in the
    catalog, E0 at the copper edge; returns each raw file's normalised spectrum."""
    jobs = [job_for(e, root) for e in burst]
    events = asyncio.run(consume_all(kafka, derived, at_least=N, timeout=120))
    counts = collections.Counter(e["event_id"] for e in events)
    assert sorted(counts) == sorted(j.event_id for j in jobs if j is not None), counts
    assert set(counts.values()) == {1}, counts
    files = _derived_files(root)
    assert len(files) == N and not list(root.rglob(".*")), [p.name for p in root.rglob("*")]
    out = {}
    records = catalog_records(db, [e["file_path"] for e in burst])
    for event, job, raw in zip(burst, jobs, records, strict=True):
        assert job is not None
        assert raw is not None and raw["results"]["larch"]["status"] == "done", raw
        assert raw["results"]["larch"]["results"]["e0"] == pytest.approx(
            samples.CU_K_EDGE_EV, abs=2.0
        )
        with h5py.File(job.output, "r") as f:
            out[event["file_path"]] = f["normalized/data/norm"][()]
    return out


def test_two_processors_share_a_burst_and_one_killed_mid_job_loses_nothing(
    burst: list[dict[str, Any]], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    topic = f"assonant.burst.{secrets.token_hex(3)}"
    derived = f"assonant.derived.{secrets.token_hex(3)}"
    db, root, group = f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "processed", "g-burst"
    _publish(kafka, topic, burst)
    args, read = (log_dir, kafka, topic, db, root, derived, group), _roots(burst, tmp_path)
    with (
        catalog_procs.processor(*args, name="p-a", read=read) as a,
        catalog_procs.processor(*args, name="p-b", read=read),
    ):
        # halfway: some results written, and processor a in the middle of a job
        procs.wait_until(lambda: len(_derived_files(root)) >= 2, 180, "the first results")
        procs.wait_until(
            lambda: any("processing.runner" in cmd for _, cmd in children(a.popen.pid)),
            120,
            "processor a in the middle of a job",
            a,
        )
        a.popen.kill()
        a.popen.wait()
        done_before = len(_derived_files(root))
        assert done_before < N, "the burst was over before the kill: nothing tested"
        procs.wait_until(lambda: len(_derived_files(root)) >= N, 300, "all 10 results")
        paths = [e["file_path"] for e in burst]
        procs.wait_until(lambda: all_announced(db, paths, "larch"), 120, "every result announced")
    _check(kafka, derived, db, root, burst)


def test_the_same_burst_on_a_dask_cluster_gives_the_same_results(
    burst: list[dict[str, Any]], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    topic = f"assonant.burst.{secrets.token_hex(3)}"
    derived = f"assonant.derived.{secrets.token_hex(3)}"
    db, root = f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "processed"
    _publish(kafka, topic, burst)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        catalog_procs.processor(
            log_dir,
            kafka,
            topic,
            db,
            root,
            derived,
            "g-dask",
            extra=["--dask", cluster.scheduler_address, "--jobs", "2"],
            name="p-dask",
            read=_roots(burst, tmp_path),
        ),
    ):
        paths = [e["file_path"] for e in burst]
        procs.wait_until(lambda: all_announced(db, paths, "larch"), 300, "every result announced")
        workers = cluster.scheduler_info["workers"]
        assert len(workers) == 2
    spectra = _check(kafka, derived, db, root, burst)
    # the same numbers as the program run here, on the same files
    for event in burst:
        local = larch(Path(event["file_path"]), tmp_path, {}, 60)
        assert np.allclose(spectra[event["file_path"]], local.arrays["norm"][0])


def test_a_job_over_its_time_limit_is_stopped_with_its_program(
    burst: list[dict[str, Any]], tmp_path: Path
) -> None:
    from assonant_ioc.processing.runner import run_local

    job = job_for(burst[0], tmp_path / "processed")
    assert job is not None
    started = time.monotonic()
    result = asyncio.run(run_local(job, 0.3))
    assert result == {"error": "larch: over its time limit of 0.3 s"}
    assert time.monotonic() - started < 5
    assert not Path(job.output).exists()


def test_a_failed_job_is_recorded_with_its_reason_and_the_next_file_processed(
    burst: list[dict[str, Any]], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    bad_path = tmp_path / "raw" / "SIM_xas_broken.nxs"
    bad = xas_file(bad_path, seed=99)
    with h5py.File(bad_path, "r+") as f:  # a scan that recorded no counter: nothing to reduce
        del f["during_exposure/instrument/itrans"]
    bad["sha256"] = hashlib.sha256(bad_path.read_bytes()).hexdigest()
    bad["file_size"] = bad_path.stat().st_size
    topic = f"assonant.burst.{secrets.token_hex(3)}"
    derived = f"assonant.derived.{secrets.token_hex(3)}"
    db, root = f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "processed"
    _publish(kafka, topic, [bad, burst[1]])
    with catalog_procs.processor(
        log_dir, kafka, topic, db, root, derived, "g-fail", read=_roots(burst, tmp_path)
    ) as proc:
        procs.wait_until(
            lambda: all_announced(db, [burst[1]["file_path"]], "larch"), 120, "the good file", proc
        )

        def failure() -> dict[str, Any] | None:  # two jobs at once: either may end first
            record = catalog_records(db, [bad["file_path"]])[0] or {}
            result: dict[str, Any] | None = record.get("results", {}).get("larch")
            return result if result and result.get("status") != "running" else None

        procs.wait_until(lambda: failure() is not None, 60, "the job's end recorded", proc)
        assert proc.popen.poll() is None  # the consumer goes on
    result = failure()
    assert result is not None
    assert result["status"] == "failed" and "itrans" in result["reason"], result
    events = asyncio.run(consume_all(kafka, derived, at_least=1))
    assert [e["raw_file_path"] for e in events] == [burst[1]["file_path"]]
    assert [p.name for p in _derived_files(root)] == [Path(job_for(burst[1], root).output).name]


def _derived_once(
    event: dict[str, Any],
    roots: list[Path],
    kafka: str,
    log_dir: Path,
    tmp_path: Path,
    jobs: int,
    repeat_after: bool,
) -> None:
    """``event`` twice to a processor taking ``jobs`` at once: both on the topic before it
    starts, or the repeat once the first is announced. One derived file, one
    ``file_derived`` event, the repeat counted (``assonant_process_duplicate_total``)."""
    from tests.system.monitoring import scrape

    topic = f"assonant.burst.{secrets.token_hex(3)}"
    derived = f"assonant.derived.{secrets.token_hex(3)}"
    db, root = f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "processed"
    port = procs.free_port()
    _publish(kafka, topic, [event] if repeat_after else [event, event])
    extra = ["--status-port", str(port), "--jobs", str(jobs)]
    group = f"g-{secrets.token_hex(3)}"
    with catalog_procs.processor(
        log_dir, kafka, topic, db, root, derived, group, extra=extra, read=roots
    ) as proc:
        procs.wait_until(
            lambda: all_announced(db, [event["file_path"]], "larch"), 120, "announced", proc
        )
        if repeat_after:
            _publish(kafka, topic, [event])  # the repeat: same event, same event_id

        def count(name: str) -> float:
            return scrape(port).get((f"assonant_process_{name}_total", ()), -1.0)

        procs.wait_until(lambda: count("duplicate") == 1, 60, "the repeat counted", proc)
        assert count("done") == 1
    events = asyncio.run(consume_all(kafka, derived, at_least=1))
    assert [e["raw_file_path"] for e in events] == [event["file_path"]]
    assert len(_derived_files(root)) == 1


def test_an_event_sent_twice_is_derived_and_announced_once(
    burst: list[dict[str, Any]], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """The README's duplicate window from the processor's side: the IOC stopped between
    the broker's acknowledgement and the outbox's removal sends one event twice, with one
    event_id. The processor derives the file once, announces it once, and counts the
    repeat."""
    _derived_once(burst[4], _roots(burst, tmp_path), kafka, log_dir, tmp_path, 1, True)


def test_a_repeat_that_arrives_while_the_first_job_runs_is_derived_and_announced_once(
    burst: list[dict[str, Any]], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """The same event twice in one batch of a processor taking two jobs at once: the repeat
    waits for the first job (the dedupe looked only at results already announced: both ran,
    both were announced)."""
    _derived_once(burst[6], _roots(burst, tmp_path), kafka, log_dir, tmp_path, 2, False)
