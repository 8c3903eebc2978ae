"""Who sees what, tried with real people: alice in proposal 2026-0001, bob in 2026-0002 and
carol on the beamline's staff, as Unix accounts (PAM) and as an LDAP directory (slapd).

The IOC writes one experiment for each proposal over CA (alice's an XAS scan, reduced by
the processor with xraylarch), the catalog consumer registers both, and the catalog server
runs in multi-user mode. Alice logs in on the page in headless Chromium and sees her file
and its result, not bob's; bob's requests for her node, its asset bytes, its array and a
search by her sample answer as a missing key would (404, the same body); carol sees both;
the API key alice makes on the page reads hers only and stops at its expiry; bob out of his
group is out within a minute, without a restart; the release command makes alice's data
readable without login."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.catalog.record import record_key
from assonant_ioc.events.kafka import consume_event
from assonant_ioc.sim import catalog_procs, procs, scans
from tests.system import people
from tests.system.browser import chromium as _chromium
from tests.system.conftest import REPO, start_service
from tests.system.people import PEOPLE, call, log_in, visible
from tests.system.reduction import ARTIFACTS, all_announced, catalog_get

pytestmark = pytest.mark.timeout(600)

ALICE_SAMPLE = "Cu foil of alice"
#: the page's access token lives this long: the page refreshes it within the test
ACCESS_TOKEN_S = 15
BOB_SAMPLE = "bob's secret sample"


@dataclass
class Written:
    db: Path  # the catalog, records and alice's result in it (copy it for each server)
    data: Path
    processed: Path  # the results
    alice: str  # her raw file's key
    alice_result: str  # her xraylarch result's key
    bob: str


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, kafka: str, log_dir: Path
) -> Iterator[Written]:
    """Both proposals' experiments written over CA by the IOC, registered, alice's reduced."""
    tmp = tmp_path_factory.mktemp("proposals")
    topic = f"assonant.who.{secrets.token_hex(4)}"
    config = (REPO / "configs" / "sim_xas.yaml").read_text()
    bl_prefix = procs.new_prefix("BL")
    with procs.sim_beamline(log_dir, bl_prefix) as bl_port:
        sim = (bl_prefix, bl_port)
        args = ["--kafka-bootstrap", kafka, "--no-validate"]
        service = start_service(log_dir, tmp, sim, args, topic, config_text=config)
        with service as (client, P, data, _proc):
            client.put(f"{P}Proposal", "2026-0001")
            client.put(f"{P}ExperimentId", "alice-xas")
            client.put(f"{P}SampleName", ALICE_SAMPLE)
            alice_path = scans.xas(P, bl_prefix, client.put, client.get)
            client.put(f"{P}Proposal", "2026-0002")
            client.put(f"{P}ExperimentId", "bob-pre")
            client.put(f"{P}SampleName", BOB_SAMPLE)
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}EndOfExperiment", 1)
            bob_event = asyncio.run(consume_event(kafka, topic, "bob-pre", timeout=60))
    db = tmp / "catalog.db"
    uri = f"sqlite:///{db}"
    paths = [alice_path, Path(bob_event["file_path"])]
    with (
        catalog_procs.catalog_consumer(log_dir, kafka, topic, uri, [data]) as (proc, port),
        catalog_procs.processor(
            log_dir, kafka, topic, uri, tmp / "processed", f"{topic}.derived", read=[data]
        ) as processor,
    ):
        procs.wait_until(
            lambda: catalog_procs.consumer_status(port)["registered"] >= 2, 90, "both", proc
        )
        procs.wait_until(
            lambda: all_announced(uri, [alice_path], "larch"), 240, "alice's result", processor
        )
    alice = catalog_get(uri, alice_path) or {}
    assert alice["proposal"] == "2026-0001" and alice["sample"] == ALICE_SAMPLE
    assert (catalog_get(uri, paths[1]) or {})["access_tags"] == [
        "beamline:SIM",
        "proposal:2026-0002",
    ]
    yield Written(
        db,
        data,
        tmp / "processed",
        record_key(alice_path),
        alice["results"]["larch"]["key"],
        record_key(paths[1]),
    )


def _access(tmp: Path, provider: str, **extra: Any) -> Path:
    path = tmp / "access.yaml"
    path.write_text(
        json.dumps(
            {"provider": provider, "admins": ["nobody-admin"], "recompile_every_s": 5, **extra}
        )
    )
    return path


def _serve(written: Written, tmp: Path, log_dir: Path, access: Path, origin: str = "") -> Any:
    db = tmp / "catalog.db"
    shutil.copy(written.db, db)  # each server compiles its own people into its catalog
    return catalog_procs.catalog_server(
        log_dir,
        f"sqlite:///{db}",
        [written.data, written.processed],
        "",
        allow_origin=origin,
        access=access,
    )


def _not_there(
    base: str, path: str, key: str, token: str | None = None, apikey: str | None = None
) -> None:
    """``path`` (naming the node ``key``) answers as for a key that does not exist: 404,
    the same body but for the key."""
    status, body = call(f"{base}{path}", token=token, apikey=apikey)
    missing = "nosuchfile-0123456789"
    status_missing, body_missing = call(
        f"{base}{path.replace(key, missing)}", token=token, apikey=apikey
    )
    assert (status, status_missing) == (404, 404), (path, status, body[:200])
    assert body.replace(key.encode(), b"K") == body_missing.replace(missing.encode(), b"K"), (
        body,
        body_missing,
    )


def _bob_sees_nothing_of_alice(base: str, written: Written, bob: str) -> None:
    for path, key in (
        (f"/api/v1/metadata/{written.alice}", written.alice),
        (f"/api/v1/metadata/{written.alice_result}", written.alice_result),
        (f"/api/v1/asset/bytes/{written.alice}?id=1", written.alice),
        (f"/api/v1/array/full/{written.alice}/during_exposure/energy", written.alice),
        (f"/api/v1/search/{written.alice}", written.alice),
    ):
        _not_there(base, path, key, token=bob)
    assert visible(base, bob, sample=ALICE_SAMPLE) == []
    assert visible(base, bob) == [written.bob]
    status, metrics = call(f"{base}/api/v1/metrics", token=bob)
    assert ALICE_SAMPLE.encode() not in metrics and written.alice.encode() not in metrics, status


def test_pam_people_see_their_proposals_only(
    written: Written, log_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    page_port = procs.free_port()
    page_url = f"http://127.0.0.1:{page_port}"
    access = _access(tmp_path, "pam", access_token_max_age_s=ACCESS_TOKEN_S)
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        people.unix_people(),
        _serve(written, tmp_path, log_dir, access, origin=page_url) as base,
        catalog_procs.page_server(log_dir, base, page_port),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            said: list[str] = []
            page.on("console", lambda m: said.append(m.text))
            page.on("pageerror", lambda e: said.append(str(e)))
            refreshed: list[str] = []
            page.on(
                "request",
                lambda r: refreshed.append(r.url) if "/auth/session/refresh" in r.url else None,
            )
            page.goto(page_url)
            page.wait_for_selector("#login-form:not([hidden])")
            assert page.is_hidden("#search-form")  # nothing to search before a login
            page.fill("#username", "alice")
            page.fill("#password", "not her password")
            page.click("#login")
            page.wait_for_selector("#message.refused")
            page.fill("#username", "alice")
            page.fill("#password", PEOPLE["alice"][0])
            page.click("#login")
            page.wait_for_selector("#person:not([hidden])")
            logged_in = time.monotonic()
            assert page.inner_text("#whoami") == "Logged in as alice"
            page.wait_for_selector("tr.file")
            rows = page.locator("tr.file").evaluate_all("rs => rs.map(r => r.dataset.key)")
            assert rows == [written.alice], rows  # hers, not bob's
            assert BOB_SAMPLE not in page.inner_text("body")
            page.click(f"tr.file[data-key='{written.alice}']")
            page.wait_for_selector(
                ".result[data-pipeline='larch'][data-drawn='yes']", timeout=60000
            )
            assert page.inner_text(".result[data-pipeline='larch'] .status") == "done"
            page.screenshot(path=str(ARTIFACTS / "page_alice_logged_in.png"), full_page=True)
            # an API key for her scripts: her tags only, expiring in a minute
            page.fill("#key-expiry", "1")
            page.select_option("#key-unit", "60")
            page.click("#make-key")
            page.wait_for_selector("#new-key:not([hidden])")
            alice_key = page.input_value("#key-secret")
            says = page.inner_text("#key-says")
            assert "proposal:2026-0001" in says and "2026-0002" not in says, says
            # her access token expires: the page's next search refreshes it, unseen
            procs.wait_until(
                lambda: time.monotonic() - logged_in > ACCESS_TOKEN_S + 1, 60, "token's expiry"
            )
            page.click("#search")
            page.wait_for_selector("#message:has-text('1 file(s) found')")
            assert refreshed, "the page did not refresh its session"
            assert page.locator("tr.file").count() == 1
            page.click("#logout")
            page.wait_for_selector("#login-form:not([hidden])")
            assert page.locator("tr.file").count() == 0 or page.is_hidden("#results")
            storage = page.evaluate(
                "() => JSON.stringify([{...sessionStorage}, {...localStorage}, document.cookie])"
            )
            page.screenshot(path=str(ARTIFACTS / "page_logged_out.png"), full_page=True)
        finally:
            page.screenshot(path=str(ARTIFACTS / "page_who_sees_what_last.png"), full_page=True)
            print("\n".join(said))
            browser.close()
        assert alice_key not in storage and "eyJ" not in storage, storage

        bob = log_in(base, "pam", "bob", PEOPLE["bob"][0])
        _bob_sees_nothing_of_alice(base, written, bob)
        carol = log_in(base, "pam", "carol", PEOPLE["carol"][0])
        assert visible(base, carol, sample=ALICE_SAMPLE) == sorted(
            [written.alice, written.alice_result]
        )
        assert set(visible(base, carol)) == {written.alice, written.alice_result, written.bob}
        # the key alice made reads hers only, and nothing after its expiry
        assert visible(base, apikey=alice_key) == sorted([written.alice, written.alice_result])
        _not_there(base, f"/api/v1/metadata/{written.bob}", written.bob, apikey=alice_key)
        # bob out of his proposal's group: out within a minute, the server not restarted
        subprocess.run(["gpasswd", "-d", "bob", "2026-0002"], check=True, capture_output=True)
        t0 = time.monotonic()
        procs.wait_until(lambda: visible(base, bob) == [], 60, "bob's removal in force")
        took = time.monotonic() - t0
        subprocess.run(["usermod", "-aG", "2026-0002", "bob"], check=True)
        # released: alice's data without login (bob's stays closed)
        assert visible(base) == []
        released = subprocess.run(
            [
                sys.executable,
                "-m",
                "assonant_ioc.cli",
                "catalog",
                "release",
                "2026-0001",
                "--by",
                "carol",
                "--catalog",
                f"sqlite:///{tmp_path / 'catalog.db'}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert released.returncode == 0, released.stderr
        assert "audit: carol released proposal 2026-0001: 2 record(s)" in released.stderr
        assert visible(base) == sorted([written.alice, written.alice_result])
        status, _body = call(f"{base}/api/v1/array/full/{written.alice}/during_exposure/energy")
        assert status == 200
        _not_there(base, f"/api/v1/metadata/{written.bob}", written.bob)
        procs.wait_until(
            lambda: visible(base, apikey=alice_key) == ["HTTP 401"], 90, "the key's expiry"
        )
    print(f"bob's removal in force after {took:.1f} s")
    # the server's log (among the session's other catalog servers': catalog-server.N.log)
    audit = "".join(p.read_text() for p in log_dir.glob("catalog-server*.log"))
    assert re.search(rf"audit: bob GET /api/v1/metadata/{written.alice}: refused \(404\)", audit)
    assert re.search(rf"audit: alice GET /api/v1/metadata/{written.alice}: allowed", audit)


def test_ldap_people_see_their_proposals_only(
    written: Written, log_dir: Path, tmp_path: Path
) -> None:
    with people.ldap_directory(log_dir, tmp_path / "ldap") as uri:
        ldap = {
            "uri": uri,
            "use_tls": False,
            "bind_dn_template": [f"uid={{username}},ou=people,{people.BASE}"],
            "group_base": f"ou=groups,{people.BASE}",
        }
        access = _access(tmp_path, "ldap", ldap=ldap)
        with _serve(written, tmp_path, log_dir, access) as base:
            status, _ = call(
                f"{base}/api/v1/auth/provider/ldap/token",
                form={"grant_type": "password", "username": "alice", "password": "wrong"},
            )
            assert status == 401
            alice = log_in(base, "ldap", "alice", PEOPLE["alice"][0])
            bob = log_in(base, "ldap", "bob", PEOPLE["bob"][0])
            carol = log_in(base, "ldap", "carol", PEOPLE["carol"][0])
            assert visible(base, alice) == sorted([written.alice, written.alice_result])
            _bob_sees_nothing_of_alice(base, written, bob)
            assert set(visible(base, carol)) == {written.alice, written.alice_result, written.bob}
            people.remove_from_ldap_group(uri, "2026-0001", "alice")
            procs.wait_until(lambda: visible(base, alice) == [], 60, "alice's removal in force")
            assert visible(base, carol, sample=ALICE_SAMPLE) == sorted(
                [written.alice, written.alice_result]
            )
