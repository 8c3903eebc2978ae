"""``assonant-ioc inspect FILE``: the file's tree as a NeXus viewer shows it.

One line per object: name, NX class (groups) or dtype and shape (fields),
value (arrays abbreviated), units, and ``<- PV`` for a value captured from a PV (from the
``provenance`` NXcollections, see ``nexus/provenance.py``). The walk is nexusformat's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _item(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode(errors="replace")
    if isinstance(x, (float, np.floating)):
        return f"{x:.6g}"
    return str(x.item() if isinstance(x, np.generic) else x)


def _value(field: Any) -> str:
    try:
        value = field.nxvalue
    except Exception:  # noqa: BLE001 - an empty dataset has no value
        return "<empty>"
    if value is None:
        return "<empty>"
    arr = np.asarray(value)
    if arr.ndim == 0:
        return _item(arr.item() if arr.dtype != object else value)
    flat = arr.reshape(-1)
    items = [_item(x) for x in (flat if flat.size <= 6 else [*flat[:3], flat[-1]])]
    if flat.size > 6:
        items.insert(3, "...")
    return f"[{', '.join(items)}]"


def _sources(path: str) -> dict[str, str]:
    """Path of each field or NXlog that holds captured values -> the PV it came from."""
    import h5py

    from assonant_ioc.nexus.provenance import PROVENANCE

    found: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        for entry in f.values():
            top = entry.get(PROVENANCE) if isinstance(entry, h5py.Group) else None
            if not isinstance(top, h5py.Group):
                continue
            base, mark = entry.name, f"{entry.name}/{PROVENANCE}"

            def visit(name: str, obj: Any, base: str = base, mark: str = mark) -> None:
                if not isinstance(obj, h5py.Group) or "source_pv" not in obj:
                    return
                owner = base + obj.name[len(mark) :]
                pvs = obj["source_pv"]
                if "field" in obj:  # a component's table
                    rows = zip(obj["field"].asstr()[()], pvs.asstr()[()], strict=True)
                    found.update({f"{owner}/{field}": pv for field, pv in rows})
                else:  # an NXlog's
                    found[owner] = pvs.asstr()[()]

            top.visititems(visit)
    return found


def _in_time_order(root: Any) -> Any:
    """The root, then each entry's tree, entries in the order they were taken (their
    ``start_time``: pre, during, post), not nexusformat's alphabetical order."""
    yield root

    def started(entry: Any) -> str:
        try:
            return str(entry["start_time"].nxvalue)
        except Exception:  # noqa: BLE001 - an entry without start_time goes last
            return "~"

    moments = ["pre_exposure", "during_exposure", "post_exposure"]

    def order(entry: Any) -> tuple[str, int]:
        name = entry.nxname
        return started(entry), moments.index(name) if name in moments else len(moments)

    entries = sorted(root.entries.values(), key=order)
    for entry in entries:
        yield from entry.walk()


def tree_lines(path: str) -> list[str]:
    from nexusformat.nexus import nxload

    sources = _sources(path)
    root = nxload(path, "r")
    lines = []
    for obj in _in_time_order(root):
        depth = obj.nxpath.count("/") if obj.nxpath != "/" else 0
        indent = "  " * max(depth - 1, 0)
        name = obj.nxname if obj.nxpath != "/" else Path(path).name
        pv = sources.get(obj.nxpath)
        source = f" <- {pv}" if pv else ""
        if obj.nxclass != "NXfield":
            lines.append(f"{indent}{name}:{obj.nxclass}{source}")
            continue
        units = obj.attrs.get("units")
        units_text = f" {getattr(units, 'nxvalue', units)}" if units is not None else ""
        shape = "x".join(str(n) for n in obj.shape) or "scalar"
        dtype = (
            "str" if obj.dtype == object or str(obj.dtype).startswith(("|S", "<U")) else obj.dtype
        )
        lines.append(f"{indent}{name} [{dtype}, {shape}] = {_value(obj)}{units_text}{source}")
    return lines + source_lines(path)


def source_lines(path: str) -> list[str]:
    """The detector files the file links, each as linked and as it is now (ok, changed since
    it was linked, or missing), and the writer's own findings."""
    from assonant_ioc.nexus.provenance import source_files
    from assonant_ioc.nexus.writer import checks_of

    lines = []
    sources = source_files(path)
    if sources:
        lines.append("detector files (as linked -> now):")
    for s in sources:
        expected = s["frames_expected"] if s["frames_expected"] >= 0 else "?"
        lines.append(
            f"  {s['detector']}: {s['path']}: {s['frames_linked']} of {expected} frames, "
            f"sha256 {s['sha256'][:12] or '-'} -> {s['status'].upper()}"
        )
    errors, warnings = checks_of(path)
    lines += [f"writer error: {e}" for e in errors] + [f"writer warning: {w}" for w in warnings]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assonant-ioc inspect", description=__doc__)
    parser.add_argument("file", help="a NeXus/HDF5 file")
    args = parser.parse_args(argv)
    import h5py

    path = Path(args.file)
    if path.is_dir():
        sys.stderr.write(f"assonant-ioc inspect: {path}: is a directory, not a file\n")
        return 2
    if not path.is_file():
        sys.stderr.write(f"assonant-ioc inspect: {path}: no such file\n")
        return 2
    if not h5py.is_hdf5(path):
        sys.stderr.write(f"assonant-ioc inspect: {path}: not an HDF5 (NeXus) file\n")
        return 2
    try:
        lines = tree_lines(args.file)
    except Exception as err:  # noqa: BLE001 - a damaged file: one line, not a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stderr.write(f"assonant-ioc inspect: {path}: cannot read: {first}\n")
        return 2
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
