"""The derived file: the result as NeXus, with the NXprocess that says how it was made.

Its NXprocess names the program, its version, every parameter, the input file and its
sha256, the date and the time taken. The file is written under a hidden name, made
durable (fsync) and renamed into place, so a result is either whole or absent.

- a volume (nabu): ``/reconstruction`` (NXentry, ``definition`` NXtomoproc) with
  ``process`` (NXprocess) and ``data`` (NXdata: ``data`` z, y, x and the axes in mm from the
  voxel size);
- I(q) (pyFAI): NXcanSAS (``/sasentry01``, ``sasdata01``: Q, I, Idev), its NXprocess
  ``sasprocess01`` with the same fields, so SasView's loader and ours read it;
- mu(E) (xraylarch): ``/normalized`` (NXentry) with ``process`` and ``data`` (NXdata: the
  normalised spectrum over energy, with mu beside it).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.processing.jobs import Job
from assonant_ioc.processing.pipelines import Reduced
from assonant_ioc.reduction.cansas import write_cansas


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _parameters(group: h5py.Group, values: dict[str, Any]) -> None:
    for key, value in values.items():
        name = key.replace("/", "_").replace(".", "_")
        if isinstance(value, dict):
            _parameters(_group(group, name, "NXcollection"), value)
        elif isinstance(value, (bool, int, float, np.number)):
            group.create_dataset(name, data=value)
        else:
            group.create_dataset(name, data=str(value))


def _process(group: h5py.Group, job: Job, reduced: Reduced, seconds: float) -> None:
    group.attrs["NX_class"] = "NXprocess"
    group.create_dataset("program", data=reduced.program)
    group.create_dataset("version", data=reduced.version)
    group.create_dataset("date", data=datetime.now(timezone.utc).isoformat())
    group.create_dataset("sequence_index", data=1)
    group.create_dataset("input_file", data=job.raw_path)
    group.create_dataset("input_sha256", data=job.raw_sha256)
    took = group.create_dataset("duration", data=round(seconds, 3))
    took.attrs["units"] = "s"
    _parameters(_group(group, "parameters", "NXparameters"), reduced.parameters)
    notes = _group(group, "results", "NXcollection")  # what goes into the catalog too
    _parameters(notes, reduced.metadata)


def _volume(f: h5py.File, job: Job, reduced: Reduced, seconds: float) -> None:
    entry = _group(f, "reconstruction", "NXentry")
    f.attrs["default"] = "reconstruction"
    entry.attrs["default"] = "data"
    entry.create_dataset("definition", data="NXtomoproc")
    entry.create_dataset("title", data=f"{job.beamline} {job.experiment_id} reconstruction")
    _process(entry.create_group("process"), job, reduced, seconds)
    volume = reduced.arrays["data"][0]
    data = _group(entry, "data", "NXdata")
    data.create_dataset("data", data=volume, chunks=(1, *volume.shape[1:]), compression="gzip")
    data.attrs["signal"] = "data"
    data.attrs["axes"] = np.array(["z", "y", "x"], dtype=h5py.string_dtype())
    voxel = float(reduced.metadata.get("voxel_size_mm", 1.0))
    for i, axis in enumerate(("z", "y", "x")):
        data.create_dataset(axis, data=np.arange(volume.shape[i]) * voxel).attrs["units"] = "mm"
        data.attrs[f"{axis}_indices"] = i


def _xas(f: h5py.File, job: Job, reduced: Reduced, seconds: float) -> None:
    entry = _group(f, "normalized", "NXentry")
    f.attrs["default"] = "normalized"
    entry.attrs["default"] = "data"
    entry.create_dataset("title", data=f"{job.beamline} {job.experiment_id} normalised mu(E)")
    _process(entry.create_group("process"), job, reduced, seconds)
    data = _group(entry, "data", "NXdata")
    for name, (values, units) in reduced.arrays.items():
        dset = data.create_dataset(name, data=values)
        if units:
            dset.attrs["units"] = units
    data.attrs["signal"] = "norm"
    data.attrs["auxiliary_signals"] = np.array(["mu"], dtype=h5py.string_dtype())
    data.attrs["axes"] = "energy"


def write_derived(job: Job, reduced: Reduced, seconds: float) -> tuple[str, int]:
    """Write the derived file at ``job.output`` (whole or not at all); returns its sha256
    and size."""
    final = Path(job.output)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        if reduced.kind == "iq":
            q, i, dev = (reduced.arrays[k][0] for k in ("Q", "I", "Idev"))
            write_cansas(
                tmp, q, i, dev, title=f"{job.beamline} {job.experiment_id}", source=job.raw_path
            )
            with h5py.File(tmp, "a") as f:
                process = f["sasentry01/sasprocess01"]
                del process["name"], process["date"]
                process.create_dataset("name", data=reduced.program)
                _process(process, job, reduced, seconds)
        else:
            with h5py.File(tmp, "w") as f:
                (_volume if reduced.kind == "volume" else _xas)(f, job, reduced, seconds)
        digest = hashlib.sha256()
        with tmp.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


def read_process(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The NXprocess of a derived file (input sha256, program, results), or None when the
    file is not there or not whole."""
    try:
        with h5py.File(path, "r") as f:
            found: list[h5py.Group] = []
            f.visititems(
                lambda n, o: (
                    found.append(o) if isinstance(o, h5py.Group) and "input_sha256" in o else None
                )
            )
            if not found:
                return None
            group = found[0]
            results = {
                k: (v[()].decode() if isinstance(v[()], bytes) else v[()].tolist())
                for k, v in group["results"].items()
                if isinstance(v, h5py.Dataset)
            }
            return {
                "program": group["program"][()].decode(),
                "version": group["version"][()].decode(),
                "input_sha256": group["input_sha256"][()].decode(),
                "duration_s": float(group["duration"][()]),
                "results": json.loads(json.dumps(results)),
            }
    except (OSError, KeyError):
        return None
