"""Recording over PVAccess against a bare p4p client, in the same run: the scale database's
counters served over PVA by the C IOC (pvxs' QSRV), the service recording M of them at
10 Hz, a bare p4p client monitoring the same PVs. An update is (PV, counter value): the
counters count up, so each value is one update; lost = the bare client's updates in the
recording's window that the file lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from assonant_ioc.sim import procs, pva_env
from bench.scale import write_scale_config, write_scale_db

if TYPE_CHECKING:
    from bench.run import Bench


@contextmanager
def scale_ioc_pva(bench: Bench, n: int, scan: str) -> Iterator[tuple[str, int, int]]:
    """The C IOC serving ``n`` counters over CA and PVA; yields (prefix, CA port, PVA UDP)."""
    prefix = procs.new_prefix("SP")
    name = write_scale_db(bench.work / "db", n, scan)
    ca, tcp, udp = procs.free_port(), procs.free_port(), procs.free_port()
    args = procs.softioc_args(prefix, bench.work / "db", "--substitutions", name, "--pva")
    env = procs.ca_server_env(ca) | pva_env.pva_server_env(tcp, udp)
    with procs.running(f"scale-pva-{n}", args, env, bench.logs) as proc:
        procs.wait_until(lambda: pva_env.pva_answers(f"{prefix}s00000", udp), 120, "QSRV", proc)
        yield prefix, ca, udp


def _step(bench: Bench, m: int, seconds: float) -> dict[str, Any]:
    with scale_ioc_pva(bench, m, ".1 second") as (prefix, ca, udp):
        config = write_scale_config(bench.work / f"pva_{m}.yaml", f"pva://{prefix}", m, m)
        service_prefix = procs.new_prefix("AS")
        extra = ["--data-dir", str(bench.work / "data"), "--no-validate", "--no-kafka"]
        extra += ["--autosave", str(bench.work / f"{service_prefix[:-1]}.json")]
        with procs.service(
            bench.logs, config, service_prefix, ca, extra, pva_env.pva_client_env(udp)
        ) as (port, proc):
            env = procs.ca_client_env(port)
            procs.wait_until(
                lambda: procs.ca_get(f"{service_prefix}PVsConnected", env) == m,
                300,
                "service connections",
                proc,
            )
            return _record(bench, prefix, udp, service_prefix, port, m, seconds)


def _record(
    bench: Bench, prefix: str, udp: int, service: str, port: int, m: int, seconds: float
) -> dict[str, Any]:
    env = dict(os.environ) | pva_env.pva_client_env(udp)
    args = [sys.executable, "-m", "bench.pva", "--prefix", prefix, "--n", str(m)]
    args += ["--seconds", str(seconds + 3)]
    ca_env = procs.ca_client_env(port)
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        procs.ca_put(f"{service}Record:During", 1, ca_env)
        time.sleep(seconds)
        procs.ca_put(f"{service}Record:During", 0, ca_env)
        procs.ca_put(f"{service}EndOfExperiment", 1, ca_env, timeout=600)
        path = procs.ca_get(f"{service}LastFile", ca_env)
        bare_updates = json.loads(p.stdout.read().strip().splitlines()[-1])["updates"]
    from bench.run import recorded_updates

    t0, t1, ours = recorded_updates(path)
    bare = {(pv, v) for pv, ts, v in bare_updates if t0 <= ts <= t1}
    window = max(t1 - t0, 1e-9)
    return {
        "recorded": len(ours),
        "bare": len(bare),
        "lost": len(bare - ours),
        "bare_lost_vs_sent": 1 - len(bare) / max(m * 10 * window, 1),
        "service_per_s": len(ours) / window,
        "bare_per_s": len(bare) / window,
    }


def during_pva(bench: Bench) -> None:
    seconds = 3 if bench.quick else 8
    steps = (200,) if bench.quick else (1000, 2000, 5000)
    best: dict[str, Any] | None = None
    for m in steps:
        r = _step(bench, m, seconds)
        bench.row(
            f"during over PVA M={m} at 10 Hz",
            "updates recorded / bare p4p client (same PVs, same run)",
            r["recorded"] / max(r["bare"], 1),
            ">= 0.99",
            **r,
        )
        if r["lost"] == 0:
            best = {"m": m, **r}
    bench.row(
        "during over PVA",
        "max updates/s recorded with 0 lost (QSRV counters at 10 Hz, p4p's client)",
        None if best is None else best["service_per_s"],
        "",
        bare_per_s=None if best is None else best["bare_per_s"],
        pvs=None if best is None else best["m"],
    )


def count_bare(prefix: str, n: int, seconds: float) -> dict[str, Any]:
    """A bare p4p client: every (PV, timestamp, value) its monitors receive."""
    from p4p.client.thread import Context

    got: list[tuple[str, float, float]] = []

    def taker(pv: str) -> Any:
        def take(v: Any) -> None:
            if not isinstance(v, Exception):
                stamp = v.timeStamp
                got.append((pv, stamp.secondsPastEpoch + stamp.nanoseconds * 1e-9, float(v.value)))

        return take

    ctx = Context("pva", nt=False)
    names = [f"{prefix}s{i:05d}" for i in range(n)]
    subs = [ctx.monitor(pv, taker(pv)) for pv in names]
    deadline = time.monotonic() + 60
    while len({u[0] for u in got}) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    time.sleep(seconds)
    for sub in subs:
        sub.close()
    ctx.close()
    return {"updates": [list(u) for u in list(got)]}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    out = count_bare(args.prefix, args.n, args.seconds)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
