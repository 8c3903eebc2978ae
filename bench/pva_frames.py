"""Frames over PVAccess against a bare p4p client, in the same run: the simulated PVA
camera exposing N frames of 1 Mpixel (1024 x 1024, uint16) as fast as it can, the service
recording them (journal, then the detector's file at EndOfExperiment) and a bare p4p client
writing the same frames into an HDF5 file as they arrive (chunked a frame a chunk, the
service's compression: none), fsynced and closed.

Seconds per frame kept, each from the first frame's ``dataTimeStamp``: the bare client's to
its file closed; the service's to its last frame's stamp plus the whole EndOfExperiment
(the master file, the frames file, its validation-free publication). Frames lost (uniqueIds
missing) are counted for both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from assonant_ioc.sim import procs, pva_env

if TYPE_CHECKING:
    from bench.run import Bench

SIZE = 1024


def _config(prefix: str) -> str:
    return (
        "beamline: FRAMES\n"
        "instrument:\n"
        "  - name: camera\n"
        "    class: Detector\n"
        f'    frames: {{array_pv: "pva://{prefix}cam:Pva1:Image"}}\n'
        "    fields:\n"
        f'      rotation: {{pv: "pva://{prefix}rot", units: deg, moments: [during]}}\n'
    )


def frames_pva(bench: Bench) -> None:
    from p4p.client.thread import Context

    n = 60 if bench.quick else 300
    prefix = procs.new_prefix("FR")
    with procs.sim_pva(bench.logs, prefix, SIZE) as (_tcp, udp):
        config = bench.work / "frames_pva.yaml"
        config.write_text(_config(prefix))
        service = procs.new_prefix("AS")
        extra = ["--data-dir", str(bench.work / "frames_data"), "--no-validate", "--no-kafka"]
        extra += ["--autosave", str(bench.work / f"{service[:-1]}.json")]
        client_env = pva_env.pva_client_env(udp)
        ca_port = procs.free_port()  # no CA PVs: a port nothing answers on
        with (
            procs.service(bench.logs, config, service, ca_port, extra, client_env) as (port, _p),
            Context("pva", conf=client_env, useenv=False, nt=False) as ctx,
        ):
            ca = procs.ca_client_env(port)
            procs.wait_until(
                lambda: procs.ca_get(f"{service}PVsConnected", ca) == 1, 60, "service connected"
            )
            first = int(ctx.get(f"{prefix}cam:Pva1:Image")["uniqueId"]) + 1
            out = bench.work / "bare_frames.h5"
            args = [sys.executable, "-m", "bench.pva_frames", "--prefix", prefix]
            args += ["--first", str(first), "--n", str(n), "--out", str(out)]
            env = dict(os.environ) | client_env
            with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as bare:
                assert bare.stdout is not None
                assert bare.stdout.readline().strip() == "ready"
                procs.ca_put(f"{service}Record:During", 1, ca)
                for name, value in (("NumImages", n), ("AcquireTime", 0.0), ("Acquire", 1)):
                    ctx.put(f"{prefix}cam:{name}", value)
                procs.wait_until(
                    lambda: ctx.get(f"{prefix}cam:Acquire")["value"] == 0, 300, "the camera"
                )
                time.sleep(0.5)  # the last frames in flight
                procs.ca_put(f"{service}Record:During", 0, ca)
                t0 = time.monotonic()
                procs.ca_put(f"{service}EndOfExperiment", 1, ca, timeout=600)
                end_s = time.monotonic() - t0
                path = procs.ca_get(f"{service}LastFile", ca)
                result = json.loads(bare.stdout.read().strip().splitlines()[-1])
    ours = _ours(path, first, n)
    ours_s = ours["span_s"] + end_s
    bench.row(
        f"frames over PVA, 1 Mpixel x {n}",
        "s per frame kept: service (journal + EndOfExperiment) / bare p4p client -> HDF5",
        (ours_s / max(ours["kept"], 1)) / (result["seconds"] / max(result["kept"], 1)),
        "<= 1.3",
        kept=ours["kept"],
        lost=ours["lost"],
        bare_kept=result["kept"],
        bare_lost=result["lost"],
        service_s=ours_s,
        end_of_experiment_s=end_s,
        bare_s=result["seconds"],
        service_fps=ours["kept"] / ours_s,
        bare_fps=result["kept"] / result["seconds"],
    )


def _ours(path: str, first: int, n: int) -> dict[str, Any]:
    import h5py

    from assonant_ioc.model.times import EPICS_EPOCH

    with h5py.File(path, "r") as f:
        data = f["during_exposure/instrument/camera/data"]
        nd = data.file["/entry/instrument/NDAttributes"]
        ids = [int(i) for i in nd["NDArrayUniqueId"][()]]
        stamps = nd["NDArrayEpicsTSSec"][()] + EPICS_EPOCH + nd["NDArrayEpicsTSnSec"][()] * 1e-9
        kept = [i for i in ids if first <= i < first + n]
        assert data.shape[0] == len(ids)
    return {
        "kept": len(kept),
        "lost": n - len(kept),
        "span_s": float(stamps.max() - stamps.min()) if len(ids) else 0.0,
    }


def bare_client(prefix: str, first: int, n: int, out: str) -> dict[str, Any]:
    """p4p's client writing frames ``first`` .. ``first + n - 1`` into ``out`` as they
    arrive (h5py, a frame a chunk), then fsync and close: seconds from the first frame's
    stamp to the file closed."""
    import threading

    import h5py
    import numpy as np
    from p4p.client.thread import Context

    f = h5py.File(out, "w")
    data = f.create_dataset(
        "/entry/data/data",
        (0, SIZE, SIZE),
        maxshape=(None, SIZE, SIZE),
        dtype=np.uint16,
        chunks=(1, SIZE, SIZE),
    )
    ids: list[int] = []
    first_t: list[float] = []
    done = threading.Event()

    def take(v: Any) -> None:
        if isinstance(v, Exception):
            return
        unique_id = int(v["uniqueId"])
        if not first <= unique_id < first + n:
            return
        if not first_t:
            first_t.append(
                v["dataTimeStamp.secondsPastEpoch"] + v["dataTimeStamp.nanoseconds"] * 1e-9
            )
        shape = [int(d["size"]) for d in v["dimension"]][::-1]
        data.resize(len(ids) + 1, axis=0)
        data[len(ids)] = v["value"].reshape(shape)
        ids.append(unique_id)
        if unique_id == first + n - 1:
            done.set()

    with Context("pva", nt=False) as ctx:
        sub = ctx.monitor(f"{prefix}cam:Pva1:Image", take)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        done.wait(300)
        sub.close()
    f.flush()
    os.fsync(f.id.get_vfd_handle())
    f.close()
    seconds = time.time() - first_t[0] if first_t else 0.0
    return {"kept": len(ids), "lost": n - len(ids), "seconds": seconds}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = bare_client(args.prefix, args.first, args.n, args.out)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
