"""The reference implementation's CSV PV map (``--config map.csv`` or ``pv_map:``): a title
line, a header line (``CSV_HEADERS``), one row per field; problems told in the map's terms
(its line, its column names)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assonant_ioc.config.components import chain_axes, parse_channel
from assonant_ioc.config.parse import (
    CSV_ACQUISITION_TYPES,
    CSV_HEADERS,
    LINE,
    Problems,
    nexus_name,
)
from assonant_ioc.config.spec import ComponentSpec
from assonant_ioc.model.components import ComponentClass


def load_pv_map(
    path: Path, macros: Mapping[str, str], p: Problems
) -> tuple[str, list[ComponentSpec], ComponentSpec | None]:
    """Read the reference implementation's PV map: a title line, a header line, a row per field."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        p.add(0, f"cannot read PV map {path}: {err}")
        return "", [], None
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        p.add(1, f"{path.name}: a PV map needs a title line and a header line")
        return "", [], None
    title = next((c.strip() for c in rows[0] if c.strip()), "")
    beamline = title.split()[0] if title else ""
    header = [h.strip().lower() for h in rows[1]]
    missing = [h for h in CSV_HEADERS if h.lower() not in header]
    if missing:
        p.add(2, f"{path.name}: missing column(s) {', '.join(missing)}")
        return beamline, [], None
    col = {h: header.index(h.lower()) for h in CSV_HEADERS}

    comps: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for lineno, row in enumerate(rows[2:], start=3):
        if not any(c.strip() for c in row):
            continue
        if len(row) < len(header):
            p.add(
                lineno,
                f"{path.name}: {len(row)} of {len(header)} columns "
                "(every row has every column; a cell may be empty)",
            )
            continue

        def cell(h: str, row: list[str] = row) -> str:
            return row[col[h]].strip()

        name = nexus_name(cell("Name"))
        if not name:
            p.add(lineno, "row without a component Name")
            continue
        key = name.lower()
        if key not in comps:
            comps[key] = {"name": name, "class": "", "parent": "", "rows": [], "line": lineno}
            order.append(key)
        entry = comps[key]
        cls_text, parent = cell("Class"), cell("Subcomponent of")
        if cls_text:
            try:
                ComponentClass.parse(cls_text)
            except ValueError:
                known = ", ".join(c.value for c in ComponentClass)
                p.add(lineno, f"component {name!r}: unknown Class {cls_text!r} (known: {known})")
                entry["bad_class"] = True
                continue
            if (
                entry["class"]
                and entry["class"].replace(" ", "").lower() != cls_text.replace(" ", "").lower()
            ):
                p.add(lineno, f"component {name!r} given class {cls_text!r} and {entry['class']!r}")
            entry["class"] = cls_text
        if parent:
            entry["parent"] = nexus_name(parent).lower()
        field_name = cell("NeXus Field Name") or cell("Field Name")
        if not field_name:
            continue  # a row that only declares the component
        acq = cell("Acquisition Type").lower() or "snapshot"
        if acq not in CSV_ACQUISITION_TYPES:
            p.add(
                lineno,
                f"{name}/{field_name}: unknown Acquisition Type {acq!r} "
                f"(known: {', '.join(CSV_ACQUISITION_TYPES)})",
            )
        raw: dict[str, Any] = {
            "pv": cell("PV Name"),
            "units": cell("Unit of Measurement"),
            "moments": [acq] if acq in CSV_ACQUISITION_TYPES else None,
            LINE: lineno,
        }
        ttype = cell("Transformation Type").lower()
        if ttype:
            raw["type"] = ttype
        ch = parse_channel(field_name, raw, macros, p, lineno, is_axis=bool(ttype))
        if ch is not None:
            entry["rows"].append(ch)

    built: dict[str, ComponentSpec] = {}

    def build(key: str, stack: tuple[str, ...]) -> ComponentSpec | None:
        if key in built:
            return built[key]
        entry = comps[key]
        if key in stack:
            p.add(entry["line"], f"component {entry['name']!r} is its own ancestor")
            return None
        try:
            cls = ComponentClass.parse(entry["class"])
        except ValueError:
            if not entry.get("bad_class"):  # else said at its row already
                p.add(entry["line"], f"component {entry['name']!r}: no Class given")
            return None
        children = [build(k, (*stack, key)) for k in order if comps[k]["parent"] == key]
        spec = ComponentSpec(
            name=entry["name"],
            component_class=cls,
            channels=tuple(chain_axes(entry["rows"], entry["name"], p)),
            subcomponents=tuple(c for c in children if c is not None),
            line=entry["line"],
        )
        built[key] = spec
        return spec

    top: list[ComponentSpec] = []
    sample: ComponentSpec | None = None
    for key in order:
        parent = comps[key]["parent"]
        if parent and parent not in comps:
            p.add(
                comps[key]["line"],
                f"component {comps[key]['name']!r}: parent {parent!r} "
                "is not a component of this map",
            )
            continue
        if parent:
            continue
        spec = build(key, ())
        if spec is None:
            continue
        if spec.component_class is ComponentClass.SAMPLE:
            sample = spec
        else:
            top.append(spec)
    return beamline, top, sample
