"""From file to result: the phantom's NXtomo experiment, written by the IOC over CA, is
reconstructed by ``assonant-ioc process`` through nabu on the CPU; the result is the one
nabu run by hand gives, it correlates with the phantom, the catalog lists it under its raw
file, its ``file_derived`` event arrives once (also after the processor is killed -9
mid-job), and the scientists' page, in headless Chromium, finds the file and shows its frame
and the reconstructed slice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
import pytest

from assonant_ioc.catalog.record import record_key
from assonant_ioc.events.kafka import consume_all, consume_event
from assonant_ioc.processing.jobs import job_for
from assonant_ioc.sim import catalog_procs, phantom, procs
from tests.system.browser import page_over_catalog
from tests.system.reduction import ARTIFACTS, catalog_get, descendants, nabu_by_hand
from tests.system.test_nexus_standard import _run

# one worker runs the module (its IOC experiment once): CI runs with --dist loadfile
pytestmark = pytest.mark.timeout(600)

DERIVED_SCHEMA = Path(__file__).resolve().parents[2] / "assonant_ioc/events/derived.schema.json"
ROWS = (4, 8, 11)  # slices through the phantom's discs


def _correlations(volume: np.ndarray) -> list[float]:
    """Each slice against the phantom (nabu's image rows run opposite to its y-up)."""
    return [
        float(np.corrcoef(np.flipud(volume[r]).ravel(), phantom.slice_image(r).ravel())[0, 1])
        for r in ROWS
    ]


def _nabu_by_hand(master: Path, work: Path) -> np.ndarray:
    """nabu as a scientist runs it on a copy of the file: ``nabu-config --dataset``, then
    ``nabu``, nothing changed."""
    volume_file = nabu_by_hand(master, work)
    with h5py.File(volume_file, "r") as f:
        return np.asarray(f["during_exposure/reconstruction/results/data"][()])


@pytest.fixture(scope="session")  # kept across the other modules this worker runs
def tomo(kafka: str, log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A half turn of the phantom (60 projections, darks and flats) written by the IOC; its
    event on a topic of its own."""
    tmp = tmp_path_factory.mktemp("tomo")
    topic = f"assonant.test.{procs.new_prefix('r').strip(':')}"
    prefix = procs.new_prefix("BL")
    with procs.sim_beamline(log_dir, prefix) as port:
        master, event, *_ = _run(
            (prefix, port),
            kafka,
            log_dir,
            tmp,
            "sim_tomo.yaml",
            dark_and_flat=True,
            turn=180.0,
            images=60,
            topic=topic,
        )
    return {"master": master, "event": event, "topic": topic, "tmp": tmp}


@contextlib.contextmanager
def _processing(
    tomo: dict[str, Any], kafka: str, log_dir: Path, work: Path
) -> Iterator[tuple[str, Path, str, Any]]:
    """A processor on the tomography topic with a catalog and processed root of its own;
    yields (catalog, processed root, derived topic, the job)."""
    db = f"sqlite:///{work / 'catalog.db'}"
    root = work / "processed"
    derived = f"assonant.derived.{procs.new_prefix('d').strip(':')}"
    job = job_for(tomo["event"], root)
    assert job is not None and job.pipeline == "nabu"
    yield db, root, derived, job


def _derived_event(kafka: str, topic: str, job: Any) -> dict[str, Any]:
    return asyncio.run(consume_event(kafka, topic, job.event_id, timeout=300))


@pytest.fixture(scope="session")  # kept across the other modules this worker runs
def processed(tomo: dict[str, Any], kafka: str, log_dir: Path) -> dict[str, Any]:
    work = tomo["tmp"] / "processing"
    with _processing(tomo, kafka, log_dir, work) as (db, root, derived, job):
        group = f"g-{secrets.token_hex(3)}"
        with catalog_procs.processor(
            log_dir, kafka, tomo["topic"], db, root, derived, group=group, read=[tomo["tmp"]]
        ) as proc:
            event = _derived_event(kafka, derived, job)
            assert proc.popen.poll() is None, proc.tail()
            # the raw record says done once the event is out
            procs.wait_until(
                lambda: (
                    (catalog_get(db, tomo["master"]) or {})
                    .get("results", {})
                    .get("nabu", {})
                    .get("announced")
                ),
                30,
                "the raw record marked announced",
            )
    return {"db": db, "root": root, "derived": derived, "job": job, "event": event}


def test_nabu_through_the_processor_gives_nabus_own_reconstruction(
    tomo: dict[str, Any], processed: dict[str, Any], kafka: str, tmp_path: Path
) -> None:
    job, event = processed["job"], processed["event"]
    jsonschema.validate(event, json.loads(DERIVED_SCHEMA.read_text()))
    assert event["raw_sha256"] == tomo["event"]["sha256"] and event["program"] == "nabu"
    assert event["file_path"] == job.output and Path(job.output).is_file()
    with h5py.File(job.output, "r") as f:
        entry = f["reconstruction"]
        volume = entry["data/data"][()]
        process = entry["process"]
        assert process["program"][()] == b"nabu"
        assert process["input_file"][()].decode() == str(tomo["master"])
        assert process["input_sha256"][()].decode() == tomo["event"]["sha256"]
        assert float(process["duration"][()]) > 0
        assert process["parameters/nabu_conf/reconstruction/method"][()] == b"FBP"
        voxel = entry["data/x"][1] - entry["data/x"][0]
        assert voxel == pytest.approx(0.0065)  # the camera's 6.5 um pixel, in mm
    assert volume.shape == (16, 16, 16)
    found = _correlations(volume)
    assert min(found) >= 0.95, found
    by_hand = _nabu_by_hand(tomo["master"], tmp_path / "by_hand")
    assert _correlations(by_hand) == pytest.approx(found, abs=1e-4)
    assert np.allclose(volume, by_hand, rtol=1e-4, atol=1e-6)
    # the catalog lists the result under its raw file, and the result points back
    raw = catalog_get(processed["db"], tomo["master"])
    assert raw is not None
    nabu = raw["results"]["nabu"]
    assert nabu["status"] == "done" and nabu["key"] == record_key(Path(job.output))
    assert nabu["results"]["centre_of_rotation"] == pytest.approx(7.5, abs=0.5)
    derived = catalog_get(processed["db"], job.output)
    assert derived is not None and derived["derived_from"] == record_key(tomo["master"])
    assert derived["sha256"] == event["sha256"]
    # the event arrived once
    events = asyncio.run(consume_all(kafka, processed["derived"], at_least=1))
    assert [e["event_id"] for e in events] == [job.event_id]
    # nothing was written beside the raw file
    assert sorted(p.name for p in tomo["master"].parent.iterdir()) == [
        tomo["master"].name,
        "detector",
    ]


def test_a_processor_killed_mid_job_gives_one_result_and_one_event(
    tomo: dict[str, Any], kafka: str, log_dir: Path
) -> None:
    work = tomo["tmp"] / "killed"
    with _processing(tomo, kafka, log_dir, work) as (db, root, derived, job):
        group = f"g-{secrets.token_hex(3)}"
        args = (log_dir, kafka, tomo["topic"], db, root, derived, group)
        with catalog_procs.processor(*args, name="proc-kill", read=[tomo["tmp"]]) as proc:
            procs.wait_until(
                lambda: any("nabu" in cmd for _, cmd in descendants(proc.popen.pid)),
                120,
                "nabu running under the processor",
                proc,
            )
            below = [pid for pid, _ in descendants(proc.popen.pid)]
            proc.popen.kill()
            proc.popen.wait()
            # its job and nabu go with it (nothing left running on a result)
            procs.wait_until(
                lambda: (
                    not [
                        p
                        for p in below
                        if Path(f"/proc/{p}").exists()
                        and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]
                    ]
                ),
                20,
                "the killed processor's job to go",
            )
            assert not Path(job.output).exists()
            # the catalog still says what it knew: the job was running
            raw = catalog_get(db, tomo["master"]) or {}
            assert raw["results"]["nabu"]["status"] == "running", raw
        with catalog_procs.processor(*args, name="proc-again", read=[tomo["tmp"]]) as proc:
            event = _derived_event(kafka, derived, job)
            assert event["event_id"] == job.event_id
            procs.wait_until(
                lambda: (catalog_get(db, tomo["master"]) or {})["results"]["nabu"].get("announced"),
                30,
                "announced",
            )
        events = asyncio.run(consume_all(kafka, derived, at_least=1))
        assert [e["event_id"] for e in events] == [job.event_id]
        assert [p.name for p in Path(job.output).parent.iterdir()] == [Path(job.output).name]
        with h5py.File(job.output, "r") as f:
            assert min(_correlations(f["reconstruction/data/data"][()])) >= 0.95


def _pixels(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def test_the_page_finds_the_file_and_shows_its_frame_and_slice(
    tomo: dict[str, Any], processed: dict[str, Any], log_dir: Path
) -> None:
    key = secrets.token_hex(16)
    roots = [tomo["master"].parent, processed["root"]]
    with page_over_catalog(log_dir, processed["db"], roots, key, 1100) as (page, page_url):
        page.goto(page_url)
        # a wrong key: a clear refusal, no table
        page.fill("#api-key", "not-the-key")
        page.fill("#sample", tomo["event"]["sample_name"])
        page.click("#search")
        page.wait_for_selector("#message.refused")
        said = page.inner_text("#message")
        assert "Refused: the catalog did not accept this API key" in said, said
        assert page.is_hidden("#results")
        page.screenshot(path=str(ARTIFACTS / "page_refused.png"))
        # the right key: the file, its frame and its reconstructed slice
        page.fill("#api-key", key)
        page.select_option("#technique", "NXtomo")
        page.click("#search")
        row = page.wait_for_selector(f"tr.file[data-key='{record_key(tomo['master'])}']")
        assert row is not None
        assert "nabu: done" in row.inner_text()
        assert page.locator("tr.file").count() == 1  # the derived file is not a raw file
        row.click()
        page.wait_for_selector("#plot-default[data-drawn='yes']", timeout=30000)
        page.wait_for_selector(".result[data-pipeline='nabu'][data-drawn='yes']", timeout=30000)
        title = page.inner_text("#file-title")
        assert tomo["master"].name in title and "NXtomo" in title
        assert page.inner_text("#default-caption") == "The first projection"
        page.click("#metadata summary")
        assert tomo["event"]["sha256"] in page.inner_text("#metadata-table")
        page.click(".result[data-pipeline='nabu'] .provenance summary")
        how = page.inner_text(".result[data-pipeline='nabu'] .provenance")
        assert "nabu" in how and tomo["event"]["sha256"] in how
        page.screenshot(path=str(ARTIFACTS / "page_file.png"), full_page=True)
        frame = _pixels(page.locator("#plot-default .heatmaplayer").screenshot())
        slice_ = _pixels(page.locator(".result[data-pipeline='nabu'] .heatmaplayer").screenshot())
        (ARTIFACTS / "page_slice.png").write_bytes(
            page.locator(".result[data-pipeline='nabu'] .result-plot").screenshot()
        )
    # what a person sees: the frame and the slice are images, not blank boxes; the slice
    # holds the phantom's discs (darker where it absorbs, on a lighter ground)
    # the projection: the object (rows 4-11) absorbs, so its middle differs from the open
    # beam above and below it; the slice: the discs on a ground of nothing
    for image in (frame, slice_):
        assert image.std() > 20, image.std()
        assert abs(_band(image, 6, 10) - (_band(image, 0, 2) + _band(image, 14, 16)) / 2) > 30


def _band(image: np.ndarray, first: int, last: int) -> float:
    """The mean of rows ``first``..``last`` (of 16) in the middle columns of a plot's image."""
    h, w = image.shape
    return float(image[first * h // 16 : last * h // 16, 6 * w // 16 : 10 * w // 16].mean())
