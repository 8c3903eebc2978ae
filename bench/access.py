"""Who sees what, its cost: one person's search over 10,000 records in 100 proposals with
tiled's access policy on (multi-user, PAM login, the person in one proposal's group) against
the same catalog served with no policy (one API key), both servers up at once and the
requests interleaved; and a logged-in person's first list (login, whoami, search), as the
page makes it."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assonant_ioc.catalog.record import Record
from assonant_ioc.catalog.store import Catalog
from assonant_ioc.sim import catalog_procs

if TYPE_CHECKING:
    from bench.run import Bench

PERSON, PASSWORD, GROUP = "bench-reader", "bench-pw-7", "2026-BENCH-07"


async def _fill(uri: str, n: int, proposals: int) -> None:
    catalog = await Catalog.open(uri)
    try:
        for i in range(n):
            p = i % proposals
            path = Path(f"/data/bench/{p:03d}/file_{i:05d}.nxs")
            meta = {
                "beamline": "BENCH",
                "proposal": f"2026-BENCH-{p:02d}",
                "sample": f"sample {i}",
                "experiment_id": f"exp-{i}",
                "file_path": str(path),
                "status": "missing",  # no file behind: the search reads metadata only
                "origin": "event",
                "event_id": f"e{i}",
                "start_epoch": 1.7e9 + i,
            }
            await catalog.register(Record(path, meta))
    finally:
        await catalog.close()


def _get(url: str, headers: dict[str, str]) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    t = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as reply:
        body = json.loads(reply.read())
    return time.perf_counter() - t, body


def _search(base: str, **equal: str) -> str:
    params = [("page[limit]", "100"), ("fields", "metadata")]
    for key, value in equal.items():
        params += [("filter[eq][condition][key]", key)]
        params += [("filter[eq][condition][value]", json.dumps(value))]
    return f"{base}/api/v1/search/?{urllib.parse.urlencode(params)}"


def _token(base: str) -> tuple[float, str]:
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": PERSON, "password": PASSWORD}
    ).encode()
    t = time.perf_counter()
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/v1/auth/provider/pam/token", data=form), timeout=60
    ) as reply:
        token = json.loads(reply.read())["access_token"]
    return time.perf_counter() - t, str(token)


def run(bench: Bench) -> None:
    n, proposals = (2000, 20) if bench.quick else (10000, 100)
    work = bench.work / "access"
    work.mkdir(parents=True)
    db = work / "catalog.db"
    uri = f"sqlite:///{db}"
    t0 = time.perf_counter()
    asyncio.run(_fill(uri, n, proposals))
    fill_s = time.perf_counter() - t0
    access = work / "access.yaml"
    access.write_text(json.dumps({"provider": "pam", "admins": [], "recompile_every_s": 60}))
    api_key = secrets.token_hex(16)
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", GROUP, PERSON], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{PERSON}:{PASSWORD}\n", text=True, check=True)
        with (
            catalog_procs.catalog_server(bench.logs, uri, [work], "", access=access) as on,
            catalog_procs.catalog_server(bench.logs, uri, [work], api_key) as off,
        ):
            _measure(bench, on, off, api_key, n, proposals, fill_s)
    finally:
        subprocess.run(["userdel", PERSON], capture_output=True)
        subprocess.run(["groupdel", GROUP], capture_output=True)


def _measure(
    bench: Bench, on: str, off: str, api_key: str, n: int, proposals: int, fill_s: float
) -> None:
    login_s, token = _token(on)
    who = {"Authorization": f"Bearer {token}"}
    key = {"Authorization": f"Apikey {api_key}"}
    mine = n // proposals
    # hers: a sample in her proposal (07); the unfiltered search finds the same one record
    sample = f"sample {7 + proposals * 3}"
    rounds = 10 if bench.quick else 30
    times: dict[str, list[float]] = {"on": [], "off": [], "on_list": [], "off_list": []}
    for _ in range(rounds):
        for name, base, headers in (("on", on, who), ("off", off, key)):
            took, found = _get(_search(base, sample=sample), headers)
            assert len(found["data"]) == 1, (name, found["meta"])
            times[name].append(took)
            took, found = _get(_search(base), headers)  # the first page of a listing
            times[f"{name}_list"].append(took)
            # hers only with the policy (all of them fit one page); anyone's without
            assert len(found["data"]) == (mine if name == "on" else 100), (name, found["meta"])
            if name == "on":
                assert {i["attributes"]["metadata"]["proposal"] for i in found["data"]} == {
                    "2026-BENCH-07"
                }
    med = {k: statistics.median(v) for k, v in times.items()}
    scenario = f"access: {n} records in {proposals} proposals"
    for what, key, target, more in (
        ("search by sample", "", "<= 1.5", {"rounds": rounds, "fill_s": fill_s}),
        ("first 100 of a listing", "_list", "", {"her_records": mine}),
    ):
        on_s, off_s = med[f"on{key}"], med[f"off{key}"]
        figure = f"{what}, policy on / off (median)"
        bench.row(
            scenario, figure, on_s / off_s, target, on_ms=on_s * 1e3, off_ms=off_s * 1e3, **more
        )
    # the page's first list: login, whoami, the search with no filter
    firsts = []
    for _ in range(3 if bench.quick else 5):
        took_login, token = _token(on)
        headers = {"Authorization": f"Bearer {token}"}
        took_who, _ = _get(f"{on}/api/v1/auth/whoami", headers)
        took_list, _ = _get(_search(on), headers)
        firsts.append(took_login + took_who + took_list)
    bench.row(
        scenario,
        "ms from login to a person's first list (median)",
        statistics.median(firsts) * 1e3,
        "",
        all_ms=[x * 1e3 for x in firsts],
        first_login_ms=login_s * 1e3,
    )
