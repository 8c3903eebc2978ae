"""``assonant-ioc inspect FILE``: the file's tree as a NeXus viewer shows it.

One line per object: name, NX class (groups) or dtype and shape (fields),
value (arrays abbreviated), units, and ``<- PV`` for a value captured from a PV (from the
``provenance`` NXcollections, see ``nexus/provenance.py``). A link says where it points;
one that points nowhere says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.arguments import Parser


def _item(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode(errors="replace")
    if isinstance(x, (float, np.floating)):
        return f"{x:.6g}"
    return str(x.item() if isinstance(x, np.generic) else x)


def _is_text(dset: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None


def _value(dset: h5py.Dataset) -> str:
    """The value, or for an array its first three items and its last (read one by one: a
    detector's frames are never read whole to show four numbers)."""
    if dset.shape is None or dset.size == 0:
        return "<empty>"
    data = dset.asstr() if _is_text(dset) else dset
    if dset.ndim == 0:
        return _item(data[()])
    size = int(dset.size)
    picks = range(size) if size <= 6 else [0, 1, 2, size - 1]
    items = [_item(data[np.unravel_index(i, dset.shape)]) for i in picks]
    if size > 6:
        items.insert(3, "...")
    return f"[{', '.join(items)}]"


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _sources(path: str) -> dict[str, str]:
    """Path of each field or NXlog that holds captured values -> the PV it came from."""
    from assonant_ioc.model.reserved import PROVENANCE

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


def _entries_in_time_order(root: h5py.File) -> list[str]:
    """The entries in the order they were taken (their ``start_time``: pre, during,
    post), not alphabetical order."""
    moments = ["pre_exposure", "during_exposure", "post_exposure"]

    def order(name: str) -> tuple[str, int]:
        entry = root[name]
        started = entry.get("start_time") if isinstance(entry, h5py.Group) else None
        when = _value(started) if isinstance(started, h5py.Dataset) else "~"
        return when, moments.index(name) if name in moments else len(moments)

    return sorted(root.keys(), key=order)


def _lines(
    group: h5py.Group,
    names: list[str],
    depth: int,
    sources: dict[str, str],
    out: list[str],
    hide: frozenset[str] = frozenset(),
) -> None:
    """One line per object under ``group`` (its ``names``, each group's own in name order);
    a group named in ``hide`` is one line saying how many objects it holds."""
    indent = "  " * depth
    for name in names:
        path = f"{group.name.rstrip('/')}/{name}"
        link = group.get(name, getlink=True)
        via = ""
        if isinstance(link, h5py.ExternalLink):
            via = f" -> {link.filename}:{link.path}"
        elif isinstance(link, h5py.SoftLink):
            via = f" -> {link.path}"
        try:
            obj = group[name]
        except (KeyError, OSError):  # a link to a file or object that is not there
            out.append(f"{indent}{name}{via} (not found)")
            continue
        pv = sources.get(path)
        source = f" <- {pv}" if pv else ""
        if isinstance(obj, h5py.Group):
            nxclass = _text(obj.attrs.get("NX_class", "NXgroup"))
            if name in hide and not via:
                count: list[str] = []
                obj.visit(count.append)
                out.append(f"{indent}{name}:{nxclass} ({len(count)} objects; --provenance shows)")
                continue
            out.append(f"{indent}{name}:{nxclass}{via}{source}")
            if not via:  # a linked group is shown where it is
                _lines(obj, list(obj), depth + 1, sources, out, hide)
            continue
        units = obj.attrs.get("units")
        units_text = f" {_text(units)}" if units is not None else ""
        shape = "x".join(str(n) for n in (obj.shape or ())) or "scalar"
        dtype = "str" if _is_text(obj) else obj.dtype
        out.append(f"{indent}{name} [{dtype}, {shape}] = {_value(obj)}{units_text}{via}{source}")


def tree_lines(path: str, provenance: bool = True) -> list[str]:
    """The file's tree, a line per object; ``provenance=False``: each entry's provenance
    collection is one line (the PV of each value is still said on its own line)."""
    from assonant_ioc.model.reserved import PROVENANCE

    sources = _sources(path)
    lines = [f"{Path(path).name}:NXroot"]
    hide = frozenset() if provenance else frozenset({PROVENANCE})
    with h5py.File(path, "r") as root:
        _lines(root, _entries_in_time_order(root), 0, sources, lines, hide)
    return lines + source_lines(path)


def source_lines(path: str) -> list[str]:
    """The detector files the file links, each as linked and as it is now (ok, changed since
    it was linked, or missing), and the writer's own findings."""
    from assonant_ioc.nexus.provenance import source_files
    from assonant_ioc.nexus.publish import checks_of

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
    parser = Parser(prog="assonant-ioc inspect", description=__doc__)
    parser.add_argument("file", help="a NeXus/HDF5 file")
    parser.add_argument(
        "--provenance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show each entry's provenance collection whole (--no-provenance: one line)",
    )
    args = parser.parse_args(argv)
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
        lines = tree_lines(args.file, args.provenance)
    except Exception as err:  # noqa: BLE001 - a damaged file: one line, not a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stderr.write(f"assonant-ioc inspect: {path}: cannot read: {first}\n")
        return 2
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
