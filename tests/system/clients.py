"""CA clients that hold one libca context per process (pyepics' libca, aioca, a Bluesky
RunEngine with ophyd-async), run as ``python -m tests.system.clients KIND ...`` so that each
test gets a context searching its own servers. Prints one JSON line: what the client saw.

- ``libca PV VALUE``: ``ca_array_put_callback`` (what ``caput -c`` does), the callback's status
- ``aioca PV VALUE``: ``aioca.caput(wait=True)``
- ``bluesky PREFIX``: plans on the RunEngine: a whole experiment, then a refused step
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any


def libca_put(pv: str, value: int) -> dict[str, Any]:
    import ctypes

    from epics import ca, dbr

    ca.initialize_libca()
    chid = ca.create_channel(pv, connect=False, auto_cb=False)
    if not ca.connect_channel(chid, timeout=10):
        return {"error": f"{pv} did not connect"}
    done = threading.Event()
    seen: dict[str, Any] = {}

    def on_put(args: Any) -> None:
        seen["status"] = int(args.status)
        done.set()

    callback = dbr.make_callback(on_put, dbr.event_handler_args)
    data = ctypes.c_int32(value)
    start = time.monotonic()
    queued = ca.libca.ca_array_put_callback(dbr.LONG, 1, chid, ctypes.byref(data), callback, None)
    ca.flush_io()
    if queued != dbr.ECA_NORMAL:
        return {"queued": int(queued)}
    if not done.wait(30):
        return {"error": "no put callback within 30 s"}
    message = ca.libca.ca_message(seen["status"])
    return {
        "ok": seen["status"] == dbr.ECA_NORMAL,
        "status": seen["status"],
        "message": message.decode() if isinstance(message, bytes) else str(message),
        "seconds": time.monotonic() - start,
    }


def aioca_put(pv: str, value: int) -> dict[str, Any]:
    import asyncio

    import aioca

    async def put() -> dict[str, Any]:
        start = time.monotonic()
        try:
            await aioca.caput(pv, value, wait=True, timeout=30)
        except aioca.CANothing as err:
            ok, message = False, str(err)
        else:
            ok, message = True, ""
        return {"ok": ok, "message": message, "seconds": time.monotonic() - start}

    return asyncio.run(put())


def bluesky_plans(prefix: str) -> dict[str, Any]:
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from ophyd_async.core import init_devices

    from assonant_ioc import bluesky as assonant

    RE = RunEngine({}, call_returns_result=True)
    with init_devices():
        meta = assonant.AssonantDevice(prefix, name="meta")

    documents: list[str] = []

    def experiment() -> Any:
        yield from bps.open_run()
        yield from assonant.pre(meta, experiment_id="bluesky-run", sample="bluesky sample")
        yield from assonant.start_recording(meta)
        yield from bps.sleep(0.5)  # the exposure
        yield from assonant.stop_recording(meta)
        yield from assonant.post(meta)
        path = yield from assonant.end_of_experiment(meta)
        yield from bps.close_run()
        return path

    result = RE(experiment(), lambda name, doc: documents.append(name))
    out: dict[str, Any] = {"path": result.plan_result, "documents": documents}

    def refused_step() -> Any:  # nothing captured: the IOC refuses the end of an experiment
        yield from assonant.end_of_experiment(meta)

    start = time.monotonic()
    try:
        RE(refused_step())
    except assonant.StepRefused as err:
        out["refused"] = str(err)
    except Exception as err:  # noqa: BLE001 - reported, the test says what it expected
        out["refused_wrongly"] = f"{type(err).__name__}: {err}"
    out["refused_seconds"] = time.monotonic() - start
    return out


def main(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "libca":
        result = libca_put(args[0], int(args[1]))
    elif kind == "aioca":
        result = aioca_put(args[0], int(args[1]))
    elif kind == "bluesky":
        result = bluesky_plans(args[0])
    else:
        raise SystemExit(f"unknown client {kind!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
