"""Measurements run in a fresh process each (one libca context per process).

``python -m bench.probes KIND --prefix P --n N [...]`` prints one JSON line.
The CA environment (address list) comes from the caller.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from bench.scale import pv_names


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.001)
    return False


def connect_bare(pvs: list[str], timeout: float) -> dict[str, Any]:
    """A bare pyepics (libca) client: create every channel, wait for every connection."""
    from epics import ca

    ca.initialize_libca()
    connected: set[str] = set()
    lock = threading.Lock()

    def on_conn(pvname: str = "", conn: bool = False, **_: Any) -> None:
        if conn:
            with lock:
                connected.add(pvname)

    t0 = time.perf_counter()
    chids = [ca.create_channel(pv, connect=False, callback=on_conn, auto_cb=False) for pv in pvs]
    ca.poll()
    ok = _wait(lambda: len(connected) == len(pvs), timeout)
    elapsed = time.perf_counter() - t0
    del chids
    return {"seconds": elapsed, "connected": len(connected), "complete": ok}


def connect_ours(pvs: list[str], timeout: float) -> dict[str, Any]:
    """The service's PV monitor: until every PV is connected, then until every PV has a value."""
    from epics import ca

    from assonant_ioc.monitor import PVMonitor

    ca.initialize_libca()  # as the bare client does before its clock starts
    monitor = PVMonitor(pvs)
    t0 = time.perf_counter()
    monitor.start()
    ok = _wait(lambda: monitor.connected_count == len(pvs), timeout)
    connected_s = time.perf_counter() - t0
    _wait(lambda: len(monitor._latest) == len(pvs), timeout)  # measurement only
    valued_s = time.perf_counter() - t0
    n = monitor.connected_count
    monitor.stop()
    return {"seconds": connected_s, "first_values_s": valued_s, "connected": n, "complete": ok}


def count_updates_bare(pvs: list[str], seconds: float) -> dict[str, Any]:
    """Subscribe like any client and keep every (PV, EPICS timestamp, value) received."""
    from epics import ca, dbr

    ca.initialize_libca()
    got: list[tuple[str, float, float]] = []

    def on_value(pvname: str = "", timestamp: float = 0.0, value: Any = None, **_: Any) -> None:
        got.append((pvname, timestamp, float(value)))

    chids = [ca.create_channel(pv, connect=False, auto_cb=False) for pv in pvs]
    for chid in chids:
        ca.connect_channel(chid, timeout=10)
    subs = [
        ca.create_subscription(
            c, use_time=True, mask=dbr.DBE_VALUE | dbr.DBE_ALARM, callback=on_value
        )
        for c in chids
    ]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    time.sleep(seconds)
    for sub in subs:
        ca.clear_subscription(sub[2])
    return {"updates": [list(u) for u in list(got)]}


def roundtrip(prefix: str, reps: int) -> dict[str, Any]:
    """``caput -c`` round trips: Snapshot:Pre (then Abort, untimed) vs Comment (does nothing).

    caproto's threading client: pyepics' ``put(wait=True)`` polls with 50 ms pend_io
    steps, which would hide everything under its own granularity.
    """
    from caproto import ChannelType
    from caproto.threading.client import Context

    ctx = Context()
    pre, abort, comment = ctx.get_pvs(
        *(f"{prefix}{n}" for n in ("Snapshot:Pre", "Abort", "Comment")), timeout=10
    )
    for pv in (pre, abort, comment):
        pv.wait_for_connection(timeout=10)
    pre_s, noop_s = [], []
    for i in range(reps + 2):
        note = [*f"note {i}".encode(), 0]
        t = time.perf_counter()
        comment.write(note, wait=True, data_type=ChannelType.CHAR)
        dn = time.perf_counter() - t
        t = time.perf_counter()
        pre.write([1], wait=True)
        dp = time.perf_counter() - t
        abort.write([1], wait=True)
        if i >= 2:  # the first two warm up
            noop_s.append(dn)
            pre_s.append(dp)
    ctx.disconnect()
    return {"pre_s": pre_s, "noop_s": noop_s}


def end_of_experiment(prefix: str) -> dict[str, Any]:
    """Pre, Post, then the timed ``caput -c EndOfExperiment``."""
    from caproto.threading.client import Context

    ctx = Context()
    pre, post, eoe = ctx.get_pvs(
        *(f"{prefix}{n}" for n in ("Snapshot:Pre", "Snapshot:Post", "EndOfExperiment")), timeout=10
    )
    for pv in (pre, post, eoe):
        pv.wait_for_connection(timeout=10)
    pre.write([1], wait=True, timeout=60)
    post.write([1], wait=True, timeout=60)
    t = time.perf_counter()
    eoe.write([1], wait=True, timeout=600)
    out = {"eoe_s": time.perf_counter() - t, "done_at": time.time()}
    ctx.disconnect()
    return out


def back_to_back(prefix: str) -> dict[str, Any]:
    """Two experiments (Pre, Post, EndOfExperiment) right after each other: the timed
    EndOfExperiment of each (the second starts while the first file is validated)."""
    from caproto.threading.client import Context

    ctx = Context()
    pre, post, eoe = ctx.get_pvs(
        *(f"{prefix}{n}" for n in ("Snapshot:Pre", "Snapshot:Post", "EndOfExperiment")), timeout=10
    )
    for pv in (pre, post, eoe):
        pv.wait_for_connection(timeout=10)
    times = []
    for _ in range(2):
        pre.write([1], wait=True, timeout=60)
        post.write([1], wait=True, timeout=60)
        t = time.perf_counter()
        eoe.write([1], wait=True, timeout=600)
        times.append(time.perf_counter() - t)
    ctx.disconnect()
    return {"first_s": times[0], "second_s": times[1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "kind",
        choices=["connect-bare", "connect-ours", "count-bare", "roundtrip", "eoe", "eoe2"],
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    pvs = pv_names(args.prefix, args.n)
    if args.kind == "connect-bare":
        out = connect_bare(pvs, args.timeout)
    elif args.kind == "connect-ours":
        out = connect_ours(pvs, args.timeout)
    elif args.kind == "count-bare":
        out = count_updates_bare(pvs, args.seconds)
    elif args.kind == "roundtrip":
        out = roundtrip(args.prefix, args.reps)
    elif args.kind == "eoe2":
        out = back_to_back(args.prefix)
    else:
        out = end_of_experiment(args.prefix)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no libca teardown racing late callbacks


if __name__ == "__main__":
    main()
