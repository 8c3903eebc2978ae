"""A detector's files in the master file: each file the detector wrote linked where the
definition wants its frames (one external link, or a virtual dataset over several files), what
each file was when linked (path, size, time, sha256) and the frame counts checked against what
the detector said it captured (findings in ``CHECKS_FOUND``)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.model.components import (
    LinkedData,
)
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.appdef import Checks
from assonant_ioc.nexus.h5 import STR_DTYPE
from assonant_ioc.nexus.provenance import Rows
from assonant_ioc.trust import Refused, digest_regular, open_regular

log = logging.getLogger(__name__)

CHECKS_FOUND: contextvars.ContextVar[Checks | None] = contextvars.ContextVar("checks", default=None)


def link_frames(
    group: h5py.Group, linked: LinkedData, master_dir: Path, rows: Rows, virtual: bool = False
) -> str | None:
    """``group/data``: the detector's frames through an external link (one file) or a virtual
    dataset (several), with paths relative to the master file so the directory can move.

    Only the files' metadata is read: the master file takes the same time for 10 MB or 10 GB.
    Returns the link's path, or None when there is nothing to link.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    missed: dict[str, list[int]] = {}  # frames a camera sent over PVA that never arrived
    dtype = None
    unusable: list[str] = []
    for path in linked.files:
        if not Path(path).exists():
            continue
        try:
            os.close(open_regular(Path(path), "detector file"))  # no device, FIFO or directory
            with h5py.File(path, "r") as src:
                dset = src[linked.dataset]
                shape, dtype = tuple(dset.shape), dtype or dset.dtype
                if "missed_unique_ids" in dset.attrs:
                    missed[path] = [int(i) for i in dset.attrs["missed_unique_ids"]]
        except (OSError, KeyError, TypeError, Refused) as err:  # not HDF5, not a file, no frames
            log.warning("%s: detector file %s unusable: %s", group.name, path, err)
            unusable.append(path)
            continue
        first = next(iter(shapes.values()), shape)
        if len(shape) < 2 or shape[1:] != first[1:]:
            log.warning("%s: %s has frames %s, not %s", group.name, path, shape[1:], first[1:])
            unusable.append(path)
            continue
        shapes[path] = shape
    missing = [f for f in linked.files if f not in shapes and f not in unusable]
    for name, files in (("missing_files", missing), ("unusable_files", unusable)):
        if files:  # named, never fatal: the other frames and the metadata are still written
            rows.extra[name] = np.array(files, dtype=STR_DTYPE)
    if missing:
        log.warning("%s: detector file(s) not found: %s", group.name, ", ".join(missing))
    _sources(group, linked, shapes, rows, missed)
    if not linked.files:
        return None
    if linked.files[0] in unusable and not shapes:
        return None  # never a link to what is not a detector's file
    if (len(linked.files) == 1 and not virtual) or not shapes:
        rel = os.path.relpath(linked.files[0], master_dir)
        group["data"] = h5py.ExternalLink(rel, linked.dataset)
        return f"{group.name}/data"
    virtual_frames(group, "data", shapes, linked.dataset, master_dir, dtype)
    return f"{group.name}/data"


def _sources(
    group: h5py.Group,
    linked: LinkedData,
    shapes: Mapping[str, tuple[int, ...]],
    rows: Rows,
    missed: Mapping[str, list[int]],
) -> None:
    """What each detector file was when it was linked (``source_files``: path, size, mtime,
    sha256, frames expected and linked), so a reader can tell when one has changed or gone;
    a file missing, unusable or holding fewer frames than the detector said is an error of
    the writer's checks, named with its counts."""
    checks = CHECKS_FOUND.get()
    table: dict[str, list[Any]] = {k: [] for k in SOURCE_COLUMNS}
    for path in linked.files:
        expected = linked.expected_of(path)
        frames = shapes[path][0] if path in shapes else 0
        size, mtime, digest = -1, "", ""
        with contextlib.suppress(OSError, Refused):
            stat = os.stat(path)
            size, mtime = stat.st_size, iso(stat.st_mtime)
            digest = digest_regular(Path(path), "detector file").sha256  # bounded, regular
        for key, value in zip(
            SOURCE_COLUMNS, (path, size, mtime, digest, expected, frames), strict=True
        ):
            table[key].append(value)
        if checks is None:
            continue
        said = f"{expected} expected" if expected >= 0 else "none said by the detector"
        if path not in shapes:
            why = "missing" if size < 0 else "unusable"
            checks.error(f"{group.name}: detector file {path} {why}: 0 frames linked ({said})")
        elif missed.get(path):
            ids = missed[path]
            shown = ", ".join(map(str, ids[:20])) + (", ..." if len(ids) > 20 else "")
            checks.error(
                f"{group.name}: {len(ids)} frame(s) missed over PVA (uniqueId {shown} never "
                f"arrived): {path} holds {frames} of the {expected} frames the camera sent"
            )
        elif expected >= 0 and frames < expected:
            checks.error(
                f"{group.name}: detector file {path} holds {frames} of the {expected} frames "
                f"the detector captured: {frames} linked"
            )
        elif expected >= 0 and frames > expected:
            checks.warning(
                f"{group.name}: detector file {path} holds {frames} frames, the detector said "
                f"{expected}: {frames} linked"
            )
    for key in SOURCE_COLUMNS:
        kind = STR_DTYPE if key in ("path", "mtime", "sha256") else np.int64
        rows.extra[f"source_{key}"] = np.array(table[key], dtype=kind)


def virtual_frames(
    group: h5py.Group,
    name: str,
    shapes: Mapping[str, tuple[int, ...]],
    dataset: str,
    master_dir: Path,
    dtype: Any,
) -> None:
    """A virtual dataset over the files' frames, one mapping per frame.

    One mapping per file would do for HDF5, but nexusformat (NeXpy) reads a virtual dataset
    as one frame per mapping. Through the low-level API a mapping costs about 9 us and
    120 bytes of the master file (10,000 frames: about 0.1 s and 1.2 MB).
    """
    frame = next(iter(shapes.values()))[1:]
    total = sum(s[0] for s in shapes.values())
    vspace = h5py.h5s.create_simple((total, *frame))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.zeros((), dtype=dtype))
    block = (1, *frame)
    origin = (0,) * len(frame)
    start = 0
    for path, shape in shapes.items():
        sspace = h5py.h5s.create_simple(shape)
        file_name = os.path.relpath(path, master_dir).encode()
        for i in range(shape[0]):
            vspace.select_hyperslab((start + i, *origin), block)
            sspace.select_hyperslab((i, *origin), block)
            dcpl.set_virtual(vspace, file_name, dataset.encode(), sspace)
        start += shape[0]
    vspace.select_all()
    tid = h5py.h5t.py_create(np.dtype(dtype))
    h5py.h5d.create(group.id, name.encode(), tid, vspace, dcpl=dcpl).close()


#: a virtual dataset over files' datasets, one mapping per first-axis item
virtual_dataset = virtual_frames


#: The columns of a detector's ``source_*`` provenance table, one row per linked file.
SOURCE_COLUMNS = ("path", "size", "mtime", "sha256", "frames_expected", "frames_linked")
