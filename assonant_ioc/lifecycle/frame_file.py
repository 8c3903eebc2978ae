"""The detector's file of a camera's frames over PVA, made of its frame log (``frame_log``)
as areaDetector's HDF5 plugin writes one: ``/entry/data/data`` (or the config's dataset),
chunked a frame a chunk with the config's compression; the per-frame attributes at
``/entry/instrument/NDAttributes``: ``NDArrayUniqueId``, ``NDArrayEpicsTSSec``/``nSec``,
``NDArrayTimeStamp`` and every NDAttribute by its name. The master file links it as any
detector file, and every reader of areaDetector's files reads it.

It is staged while the recording runs: each round, in the worker process, appends the
frames the log gained since the last one (``ndarray-<component>.h5`` beside the log, with
how far it has read); EndOfExperiment appends the rest and moves it beside the master file
(a rename on one filesystem, a copy across two). The staged file is a cache: one that
cannot be read (a kill in the middle of a round) is made again from the log.

A missed frame (a gap in ``uniqueId``) is counted: the file says how many frames the
camera sent (``frames_sent``: the span of ``uniqueId``) and which ids never arrived
(``missed_unique_ids``), and the writer's checks name them (``nexus.linking``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.lifecycle.frame_log import log_path, read_frames
from assonant_ioc.lifecycle.journal import fsync_dir
from assonant_ioc.model.times import EPICS_EPOCH

log = logging.getLogger(__name__)

DATASET = "/entry/data/data"
ND_ATTRIBUTES = "/entry/instrument/NDAttributes"
_KINDS = "ifs"  # int, float, text: an attribute's series widens along this order


def staged_path(journal_dir: Path, component: str) -> Path:
    return journal_dir / f"ndarray-{component}.h5"


def stage_all(
    journal_dir: str, datasets: Mapping[str, str], spec: CompressionSpec
) -> dict[str, int]:
    """One staging round of every camera (component -> its frames' dataset), in the worker;
    returns the frames staged of each. A camera whose round fails is logged (a cache)."""
    from assonant_ioc.nexus.h5 import filter_options

    compression = filter_options(spec)
    staged: dict[str, int] = {}
    for component, dataset in datasets.items():
        source = log_path(Path(journal_dir), component)
        if not source.exists():
            continue
        try:
            staged[component] = stage(
                source, staged_path(Path(journal_dir), component), compression, dataset
            )
        except Exception:
            log.exception("staging the frames of %s", component)
    return staged


def stage(
    source: Path,
    staged: Path,
    compression: dict[str, Any],
    dataset: str = DATASET,
    growing: bool = True,
) -> int:
    """Append the log's frames since the last round to the staged file; returns the frames
    it holds. One that cannot be read is made again from the log's start."""
    import h5py

    for attempt in (1, 2):
        try:
            with h5py.File(staged, "a") as f:
                return _append(f, source, compression, dataset, growing)
        except (OSError, KeyError, ValueError, TypeError):
            if attempt == 2:
                raise
            log.warning("%s: staged frames unreadable, staged again from the log", staged)
            staged.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _append(f: Any, source: Path, compression: dict[str, Any], dataset: str, growing: bool) -> int:
    count, offset = int(f.attrs.get("frames", 0)), int(f.attrs.get("log_offset", 0))
    data = f.get(dataset)
    nd = f.require_group(ND_ATTRIBUTES)
    nd.attrs["NX_class"] = "NXcollection"
    f.require_group("entry").attrs["NX_class"] = "NXentry"
    for ds in [data, *nd.values()]:  # what a round cut by a kill wrote beyond its count
        if ds is not None and ds.shape[0] != count:
            ds.resize(count, axis=0)
    ids: list[int] = []
    stamps: list[float] = []
    attrs: dict[str, list[Any]] = {}
    for header, pixels, after in read_frames(source, offset, growing):
        offset = after
        if data is None:
            data = _frames_dataset(f, dataset, pixels, compression)
        if pixels.shape != data.shape[1:]:
            shapes = (pixels.shape, data.shape[1:])
            log.warning("%s: frame %s is %s, not %s: left out", source, header["id"], *shapes)
            continue
        data.resize(count + len(ids) + 1, axis=0)
        data[count + len(ids)] = pixels
        for name, value in header["attrs"].items():
            attrs.setdefault(name, [None] * len(ids)).append(value)
        ids.append(int(header["id"]))
        stamps.append(float(header["t"]))
        for values in attrs.values():  # an attribute this frame lacked
            if len(values) < len(ids):
                values.append(None)
    t = np.array(stamps, dtype=np.float64)
    secs = np.floor(t)
    series: dict[str, Any] = {
        "NDArrayUniqueId": np.array(ids, dtype=np.int64),
        "NDArrayEpicsTSSec": (secs - EPICS_EPOCH).astype(np.uint32),
        "NDArrayEpicsTSnSec": np.round((t - secs) * 1e9).astype(np.uint32),
        "NDArrayTimeStamp": t - EPICS_EPOCH,
    }
    for name in {*attrs, *(k for k in nd if k not in series)}:
        if name not in series:
            series[name] = attrs.get(name, [None] * len(ids))
    for name, values in series.items():
        _extend(nd, name, values, count)
    f.attrs["frames"] = count + len(ids)
    f.attrs["log_offset"] = offset
    f.flush()
    return count + len(ids)


def _frames_dataset(f: Any, dataset: str, pixels: np.ndarray, compression: dict[str, Any]) -> Any:
    parent, _, name = dataset.rpartition("/")
    group = f.require_group(parent or "/")
    if parent == "/entry/data":
        group.attrs["NX_class"] = "NXdata"
        group.attrs["signal"] = name
    return group.create_dataset(
        name,
        shape=(0, *pixels.shape),
        maxshape=(None, *pixels.shape),
        dtype=pixels.dtype,
        chunks=(1, *pixels.shape),
        **compression,
    )


def _kind(values: Any, before: int) -> str:
    """The narrowest of int, float, text that holds ``values`` (None: a frame lacked it,
    as did the ``before`` frames staged when the series is new)."""
    if isinstance(values, np.ndarray):
        return "i" if values.dtype.kind in "iu" else "f"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values) and not before:
        return "i"
    if all(v is None or isinstance(v, (int, float)) for v in values):
        return "f"
    return "s"


def _extend(nd: Any, name: str, values: Any, before: int) -> None:
    """``values`` appended to the series ``name`` after its ``before`` values (a new series
    starts with ``before`` missing values; one that cannot hold them is widened)."""
    import h5py

    kind = _kind(values, before if name not in nd else 0)
    old: Any = None
    if name in nd:
        ds = nd[name]
        had = "s" if ds.dtype.kind in "OS" else ("i" if ds.dtype.kind in "iu" else "f")
        if _KINDS.index(had) >= _KINDS.index(kind):
            kind = had
        else:  # widened: the values so far, again
            old = ds.asstr()[()] if had == "s" else ds[()]
            del nd[name]
    if name not in nd:
        dtype: Any = {"i": np.int64, "f": np.float64, "s": h5py.string_dtype()}[kind]
        if isinstance(values, np.ndarray):
            dtype = values.dtype
        ds = nd.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
        ds.resize(before, axis=0)
        if old is not None:
            ds[:before] = old.astype(str) if kind == "s" else old
        elif before:
            ds[:before] = "" if kind == "s" else np.nan
    n = len(values)
    if not n:
        return
    if kind == "s":
        out: Any = ["" if v is None else str(v) for v in values]
    elif kind == "f" and not isinstance(values, np.ndarray):
        out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    else:
        out = np.asarray(values)
    ds.resize(before + n, axis=0)
    ds[before:] = out


def missed_ids(ids: np.ndarray) -> np.ndarray:
    """The ``uniqueId``\\ s between the first and the last that never arrived."""
    if len(ids) < 2:
        return np.zeros(0, dtype=np.int64)
    span = np.arange(int(ids.min()), int(ids.max()) + 1, dtype=np.int64)
    return np.setdiff1d(span, ids.astype(np.int64))


def finish(
    journal_dir: Path,
    component: str,
    out: Path,
    compression: dict[str, Any],
    dataset: str = DATASET,
) -> tuple[int, int]:
    """At EndOfExperiment, in the worker: the rest of the log staged, the file's counts
    written, the file durable at ``out`` (a partial one never has that name); returns
    (frames in it, frames the camera sent: the uniqueId span)."""
    import h5py

    staged = staged_path(journal_dir, component)
    written = stage(log_path(journal_dir, component), staged, compression, dataset, False)
    with h5py.File(staged, "a") as f:
        if dataset not in f:
            f.create_dataset(dataset, shape=(0, 0, 0), dtype=np.uint16)
        ids = f[ND_ATTRIBUTES]["NDArrayUniqueId"][()]
        sent = int(ids.max() - ids.min() + 1) if len(ids) else 0
        f[dataset].attrs["frames_sent"] = sent
        f[dataset].attrs["missed_unique_ids"] = missed_ids(ids)
    with open(staged, "rb") as fh:
        os.fsync(fh.fileno())
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, out)
    except OSError:  # another filesystem: copied, durable, then given its name
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.copyfile(staged, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        staged.unlink()
    fsync_dir(out.parent)
    return written, sent
