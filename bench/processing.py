"""What the service adds to a program's own time: the same NXtomo file reconstructed by
nabu run by hand (``nabu-config --dataset`` then ``nabu``) and through the processor's job
(a child process with its time limit, nabu's pipeline, the derived file with its NXprocess
and sha256), alternated in the same run; the medians' ratio.

    python -m bench.processing [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assonant_ioc.config.loader import load_config, resolve_config
from assonant_ioc.nexus import write_experiment
from assonant_ioc.processing.jobs import Job, output_path
from assonant_ioc.sim import phantom
from assonant_ioc.sim.experiment import simulated_experiment


def phantom_file(work: Path) -> Path:
    """An NXtomo of the simulated beamline's config whose projections look through the
    phantom at their rotation angles (the simulated experiment's during PVs: 0..9 deg)."""
    import h5py

    config = load_config(resolve_config("sim_tomo"))
    x = simulated_experiment(config, work, points=10, frame_shape=(16, 16))
    for name in ("detector_dark.h5", "detector_flat.h5", "detector_proj.h5"):
        with h5py.File(work / name, "r+") as f:
            frames = f["entry/data/data"]
            n = frames.shape[0]
            if "dark" in name:
                frames[...] = np.full((n, 16, 16), phantom.DARK)
            elif "flat" in name:
                frames[...] = np.full((n, 16, 16), phantom.FLAT)
            else:
                frames[...] = np.stack([phantom.projection(i + 0.5) for i in range(n)])
    return write_experiment(x, work / "tomo.nx", config.compression)


def by_hand(raw: Path, work: Path) -> float:
    bin_dir = Path(sys.executable).parent
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    t = time.perf_counter()
    subprocess.run(
        [bin_dir / "nabu-config", "--dataset", str(raw), "--output", "nabu.conf"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    text = (work / "nabu.conf").read_text()
    (work / "nabu.conf").write_text(text.replace("location = \n", f"location = {work}\n"))
    subprocess.run([bin_dir / "nabu", "nabu.conf"], cwd=work, check=True, capture_output=True)
    return time.perf_counter() - t


def through_the_processor(raw: Path, root: Path) -> float:
    sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    out = output_path(root, "SIM", str(raw), sha, "nabu")
    out.unlink(missing_ok=True)
    job = Job("nabu", str(raw), sha, "bench", "SIM", "bench", "", "NXtomo", str(out))
    code = (
        "import json, sys; from assonant_ioc.processing.runner import run_job; "
        "r = run_job(json.loads(sys.argv[1]), 600); assert 'error' not in r, r"
    )
    t = time.perf_counter()  # a child process, as the processor runs each job
    subprocess.run([sys.executable, "-c", code, json.dumps(job.as_dict())], check=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "raw").mkdir()
        raw = phantom_file(work / "raw")
        hand, ours = [], []
        for _ in range(args.rounds):
            hand.append(by_hand(raw, work / "hand"))
            ours.append(through_the_processor(raw, work / "processed"))
        h, o = statistics.median(hand), statistics.median(ours)
        print(f"nabu by hand: median {h:.2f} s of {[round(x, 2) for x in hand]}")
        print(f"through the processor: median {o:.2f} s of {[round(x, 2) for x in ours]}")
        print(f"ratio (processor / by hand): {o / h:.2f}")


if __name__ == "__main__":
    main()
