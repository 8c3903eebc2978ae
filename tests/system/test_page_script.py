"""Stored script on the page, tried as an attacker would: a sample name that is HTML with a
script in it, written through the IOC's SampleName PV over CA, goes through the file, the
event and the catalog to the page. In headless Chromium the page shows the name as typed,
as text, in the table, the title and the metadata, and runs nothing of it; the page's
Content-Security-Policy refuses inline script; the API key typed is kept in no storage."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from assonant_ioc.catalog.record import record_key
from assonant_ioc.sim import catalog_procs, procs
from tests.system.browser import page_over_catalog
from tests.system.conftest import start_service
from tests.system.reduction import ARTIFACTS

pytestmark = pytest.mark.timeout(300)

SAMPLE = "<img src=x onerror=\"window.__pwned=1;console.log('pwned')\">"


def test_a_sample_name_with_script_shows_as_typed_and_runs_nothing(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, kafka: str
) -> None:
    topic = f"assonant.page.{secrets.token_hex(4)}"
    args = ["--kafka-bootstrap", kafka, "--no-validate"]
    with start_service(log_dir, tmp_path, sim, args, topic=topic) as (client, P, data_dir, _p):
        client.put(f"{P}ExperimentId", "xss")
        client.put(f"{P}SampleName", SAMPLE)
        assert client.get(f"{P}SampleName") == SAMPLE  # the IOC takes it: it is only text
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        written = Path(client.get(f"{P}LastFile"))
    db = f"sqlite:///{tmp_path / 'catalog.db'}"
    with catalog_procs.catalog_consumer(log_dir, kafka, topic, db, [data_dir]) as (proc, port):
        procs.wait_until(
            lambda: catalog_procs.consumer_status(port)["registered"] == 1, 60, "registered", proc
        )
    key = secrets.token_hex(16)
    said: list[str] = []
    with page_over_catalog(log_dir, db, [data_dir], key) as (page, page_url):
        page.on("console", lambda m: said.append(m.text))
        page.on("pageerror", lambda e: said.append(str(e)))
        page.on("dialog", lambda d: (said.append(f"dialog {d.message}"), d.dismiss()))
        reply = page.goto(page_url)
        assert reply is not None
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
        page.fill("#api-key", key)
        page.fill("#sample", SAMPLE)  # the search by the name as typed finds it
        page.click("#search")
        row = page.wait_for_selector(f"tr.file[data-key='{record_key(written)}']")
        assert row is not None
        assert page.inner_text("tr.file td:nth-child(3)") == SAMPLE
        assert page.locator("#results img").count() == 0
        row.click()
        page.wait_for_selector("#file:not([hidden])")
        assert SAMPLE in page.inner_text("#file-title")
        page.click("#metadata summary")
        cells = page.locator("#metadata-table td").all_inner_texts()
        assert SAMPLE in cells and page.locator("#file img").count() == 0
        # an inline script put into the page (as an injection would) does not run
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__inline = 1'; document.body.append(s); }"
        )
        page.screenshot(path=str(ARTIFACTS / "page_sample_script.png"), full_page=True)
        pwned = page.evaluate("() => [window.__pwned, window.__inline]")
        storage = page.evaluate(
            "() => JSON.stringify([{...sessionStorage}, {...localStorage}, document.cookie])"
        )
    assert pwned == [None, None], pwned
    assert not [m for m in said if "pwned" in m or m.startswith("dialog")], said
    assert any("Content Security Policy" in m for m in said), said  # the inline one, refused
    assert key not in storage, storage


def test_a_failed_reduction_says_what_to_do_and_folds_the_programs_words(
    log_dir: Path, tmp_path: Path
) -> None:
    """A job the processor recorded as failed (the raw record's results, as it writes them):
    the page says what a person can do about it, the program's traceback folded away."""
    import asyncio

    from assonant_ioc.catalog.record import check_file, from_event
    from assonant_ioc.catalog.store import Catalog
    from tests.system.reduction import xas_file

    data = tmp_path / "data"
    event = xas_file(data / "SIM_xas_failed.nxs", seed=5)
    db = f"sqlite:///{tmp_path / 'catalog.db'}"
    reason = "Traceback (most recent call last):\nValueError: x and y arrays must be equal"

    async def register() -> str:
        catalog = await Catalog.open(db)
        try:
            record = check_file(from_event(event, 0.0), [data])
            await catalog.register(record)
            failed = {"larch": {"status": "failed", "reason": reason, "updated_at": "now"}}
            await catalog.update(record.key, {"results": failed})
            return record.key
        finally:
            await catalog.close()

    key = asyncio.run(register())
    api_key = secrets.token_hex(16)
    with page_over_catalog(log_dir, db, [data], api_key) as (page, page_url):
        page.goto(page_url)
        page.fill("#api-key", api_key)
        page.click("#search")
        row = page.wait_for_selector(f"tr.file[data-key='{key}']")
        assert row is not None and "larch: failed" in row.inner_text()
        row.click()
        box = ".result[data-pipeline='larch']"
        page.wait_for_selector(f"{box} .remedy")
        said = page.inner_text(f"{box} .status")
        assert "What to do: mu(E) is ln(I0/It)" in said, said
        assert "Traceback" not in said  # folded away, one click from view
        page.click(f"{box} .reason summary")
        assert page.inner_text(f"{box} .reason pre") == reason
        page.screenshot(path=str(ARTIFACTS / "page_failed_reduction.png"), full_page=True)
