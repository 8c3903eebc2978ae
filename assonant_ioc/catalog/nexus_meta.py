"""What a NeXus file written by assonant-ioc says about itself (the catalog's backfill reads it).

The event is not in the file, so its fields come from where the writer put them:
each NXentry's ``experiment_identifier``, ``start_time``, ``end_time``, ``definition``,
``instrument/name`` (the beamline), ``sample/name`` and the ``audit`` note
(``EndOfExperiment by user@host``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py

#: the moments, as the writer names their entries
MOMENTS = ("pre_exposure", "during_exposure", "post_exposure")
_ENDED_BY = re.compile(r"EndOfExperiment by (\S+)")


class NotAnExperimentFile(ValueError):
    """An HDF5 file that is not a NeXus experiment file (a detector's frames, say)."""


def _text(group: h5py.Group, name: str) -> str:
    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        return ""
    value = item[()]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def read(path: Path) -> dict[str, Any]:
    """The file's metadata; raises ``NotAnExperimentFile`` or ``OSError`` (not HDF5, unreadable)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("NX_class") not in ("NXroot", b"NXroot"):
            raise NotAnExperimentFile(f"{path}: no NXroot")
        entries = [
            (name, group)
            for name, group in f.items()
            if isinstance(group, h5py.Group)
            and group.attrs.get("NX_class") in ("NXentry", b"NXentry")
            and "experiment_identifier" in group
        ]
        if not entries:
            raise NotAnExperimentFile(f"{path}: no NXentry with an experiment_identifier")
        entries.sort(key=lambda ng: _text(ng[1], "start_time"))
        starts = [t for _, g in entries if (t := _text(g, "start_time"))]
        ends = [t for _, g in entries if (t := _text(g, "end_time"))]
        definitions = [d for _, g in entries if (d := _text(g, "definition"))]
        first = entries[0][1]
        ended_by = ""
        for _, group in entries:
            found = _ENDED_BY.search(_text(group.get("audit", group), "description"))
            if found:
                ended_by = found.group(1)
        file_time = f.attrs.get("file_time", "")
        # with a proposal, experiment_identifier is the proposal's and entry_identifier the
        # experiment's own id (as our writer puts them)
        own = _text(first, "entry_identifier")
        return {
            "beamline": _text(first.get("instrument", first), "name"),
            "experiment_id": own or _text(first, "experiment_identifier"),
            "proposal": _text(first, "experiment_identifier") if own else "",
            "sample": _text(first.get("sample", first), "name"),
            "definition": definitions[0] if definitions else "",
            "moments": [m for m in MOMENTS if m in dict(entries)],
            "start_time": min(starts) if starts else "",
            "end_time": max(ends) if ends else "",
            "ended_by": ended_by,
            "file_time": file_time.decode() if isinstance(file_time, bytes) else str(file_time),
        }
