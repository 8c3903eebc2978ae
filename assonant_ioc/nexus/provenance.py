"""Where a value came from: the provenance the writer keeps in NXcollections, and how to
read it back.

Each entry's ``provenance`` NXcollection mirrors the entry: the component at
``/<entry>/<path>`` has its collection at ``/<entry>/provenance/<path>``, a table with one
row per field holding one reading (the row whose ``field`` is the field's name,
``transformations/<axis>`` for an axis); an NXlog's collection has its ``source_pv`` and
one alarm severity, alarm status and connected flag per point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.model.readings import Reading
from assonant_ioc.model.reserved import PROVENANCE
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.h5 import SEVERITY_DTYPE, STR_DTYPE


def mirror_path(obj: h5py.HLObject) -> str:
    """Where the provenance of ``obj`` (``/<entry>/<path>``) is: ``/<entry>/provenance/<path>``."""
    _, entry, rel = obj.name.split("/", 2)
    return f"/{entry}/{PROVENANCE}/{rel}"


def mirror(obj: h5py.Group) -> h5py.Group:
    """The provenance collection of ``obj``, created with its parents as NXcollections."""
    group = obj.file
    path = mirror_path(obj)
    parent = path.rpartition("/")[0]
    if _exists(group, parent) and not _exists(group, path):
        gid = h5py.h5g.create(group.id, path.encode())  # the common case: beside its siblings'
        attr = h5py.h5a.create(gid, b"NX_class", _STR, _SCALAR)
        attr.write(np.array("NXcollection", dtype=h5py.string_dtype()))
        return h5py.Group(gid)
    for part in path.strip("/").split("/"):
        child = group.get(part)
        if child is None:
            child = group.create_group(part)
            child.attrs["NX_class"] = "NXcollection"
        group = child
    return group


_STR = h5py.h5t.py_create(h5py.string_dtype(), logical=True)
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)


def _exists(f: h5py.File, path: str) -> bool:
    try:
        return bool(f.id.links.exists(path.encode()))
    except (KeyError, RuntimeError):  # a group on the way is missing
        return False


def move(group: h5py.Group, old: str, new: str) -> None:
    """Rename ``group[old]`` and its provenance collection with it."""
    where = group.file.get(mirror_path(group[old]))
    group.move(old, new)
    if isinstance(where, h5py.Group):
        where.parent.move(where.name.rsplit("/", 1)[-1], new)


def _nx_class(obj: h5py.HLObject) -> str:
    value = obj.attrs.get("NX_class", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _severity_name(value: Any) -> str:
    """A severity as its name, whether stored as a code (the enumeration) or as text."""
    if isinstance(value, (bytes, str)):
        return _text(value)
    from assonant_ioc.model.readings import Severity

    return Severity(int(value)).name


def provenance(obj: h5py.Dataset | h5py.Group) -> dict[str, Any]:
    """The provenance of a field or of an NXlog, as a dict; KeyError when it has none.

    A field: ``source_pv``, ``epics_timestamp`` (ISO 8601), ``alarm_severity`` (name),
    ``alarm_status``, ``connected``. An NXlog: ``source_pv`` and the per-point arrays
    ``alarm_severity`` (0 NO_ALARM .. 3 INVALID), ``alarm_status``, ``connected``.
    """
    if isinstance(obj, h5py.Group):
        where = obj.file[mirror_path(obj)]
        return {
            "source_pv": _text(where["source_pv"][()]),
            "alarm_severity": where["alarm_severity"][()],
            "alarm_status": where["alarm_status"][()],
            "connected": where["connected"][()],
        }
    name = obj.name.rsplit("/", 1)[-1]
    component = obj.parent
    if _nx_class(component) == "NXtransformations":
        name, component = f"transformations/{name}", component.parent
    table = component.file.get(mirror_path(component))
    if table is None or "field" not in table:
        raise KeyError(f"{obj.name}: no provenance row")
    fields = [_text(f) for f in table["field"][()]]
    if name not in fields:
        raise KeyError(f"{obj.name}: no provenance row")
    row = fields.index(name)
    return {
        "source_pv": _text(table["source_pv"][row]),
        "epics_timestamp": _text(table["epics_timestamp"][row]),
        "alarm_severity": _severity_name(table["alarm_severity"][row]),
        "alarm_status": int(table["alarm_status"][row]),
        "connected": bool(table["connected"][row]),
    }


def component_info(group: h5py.Group, name: str) -> Any:
    """A component-wide provenance item (``assonant_class``, ``missing_files``,
    ``unusable_files``), or None when the component has none."""
    table = group.file.get(mirror_path(group))
    if table is None or name not in table:
        return None
    value = table[name][()]
    if isinstance(value, np.ndarray):
        return [_text(v) for v in value]
    return _text(value)


def source_files(path: str | Path) -> list[dict[str, Any]]:
    """Each detector file the file at ``path`` links, as it was when linked (``detector``,
    ``path``, ``size``, ``mtime``, ``sha256``, ``frames_expected``, ``frames_linked``) and
    as it is now (``status``: ``ok``, ``changed`` or ``missing``; ``changed`` when its size,
    modification time or sha256 differ)."""
    import hashlib
    import os

    from assonant_ioc.model.times import iso

    out: list[dict[str, Any]] = []
    with h5py.File(path, "r", locking=False) as f:
        found: list[tuple[str, h5py.Group]] = []
        for entry in f.values():
            if isinstance(entry, h5py.Group) and PROVENANCE in entry:
                names: list[str] = []
                where = entry[PROVENANCE]
                where.visit(names.append)  # names only: no object made for each
                found += [
                    (n.rsplit("/", 1)[0], where[n].parent)
                    for n in names
                    if n.endswith("/source_path")
                ]
        for name, table in found:
            columns = {
                key: table[f"source_{key}"][()]
                for key in ("path", "size", "mtime", "sha256", "frames_expected", "frames_linked")
            }
            for i in range(len(columns["path"])):
                row = {
                    k: _text(v[i]) if v.dtype.kind in "OSU" else int(v[i])
                    for k, v in columns.items()
                }
                row["detector"] = name.rsplit("/", 1)[-1]
                out.append(row)
    for row in out:
        try:
            stat = os.stat(row["path"])
        except OSError:
            row["status"] = "missing"
            continue
        same = stat.st_size == row["size"] and iso(stat.st_mtime) == row["mtime"]
        if same and row["sha256"]:
            digest = hashlib.sha256()
            with open(row["path"], "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            same = digest.hexdigest() == row["sha256"]
        row["status"] = "ok" if same else "changed"
    return out


class Rows:
    """A component's provenance table: one row per field holding one reading."""

    def __init__(self) -> None:
        self.fields: list[str] = []
        self.readings: list[Reading] = []
        self.extra: dict[str, Any] = {}

    def add(self, field: str, r: Reading) -> None:
        self.fields.append(field)
        self.readings.append(r)

    def write(self, group: h5py.Group) -> None:
        if not self.fields and not self.extra:
            return
        table = mirror(group)
        rs = self.readings
        if rs:
            table.create_dataset("field", data=np.array(self.fields, dtype=STR_DTYPE))
            table.create_dataset("source_pv", data=np.array([r.source for r in rs], STR_DTYPE))
            stamps = np.array([iso(r.timestamp) for r in rs], dtype=STR_DTYPE)
            table.create_dataset("epics_timestamp", data=stamps)
            severities = np.array([int(r.severity) for r in rs], dtype=np.int8)
            table.create_dataset("alarm_severity", data=severities, dtype=SEVERITY_DTYPE)
            table.create_dataset("alarm_status", data=np.array([r.status for r in rs], np.int16))
            table.create_dataset("connected", data=np.array([r.connected for r in rs], bool))
        for name, value in self.extra.items():
            table.create_dataset(name, data=value)
