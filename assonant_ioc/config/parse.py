"""The config's parsing helpers, shared by the YAML loader and the CSV PV map: the problems
found so far (each with its line), YAML with lines, macros, names, moments, vectors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from assonant_ioc.config.spec import (
    SNAPSHOT_MOMENTS,
)
from assonant_ioc.model.components import Moment

LINE = "__line__"


KEY_LINES = "__key_lines__"


_MACRO = re.compile(r"\$\((\w+)\)|\$\{(\w+)\}")


#: NeXus names: letters, digits and underscores (groups, fields)
NEXUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


AXIS_VECTORS = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


#: The reference implementation's acquisition types and the moments they mean.
CSV_ACQUISITION_TYPES: dict[str, frozenset[Moment]] = {
    "snapshot_at_start": frozenset({Moment.PRE}),
    "snapshot_at_end": frozenset({Moment.POST}),
    "snapshot": SNAPSHOT_MOMENTS,
    "vary": SNAPSHOT_MOMENTS,
    "scan": frozenset({Moment.DURING}),
}


CSV_HEADERS = (
    "Name",
    "Subcomponent of",
    "Class",
    "Field Name",
    "Unit of Measurement",
    "Data Type",
    "Acquisition Type",
    "PV Name",
    "NeXus Class",
    "NeXus Field Name",
    "Transformation Type",
)


class LineLoader(yaml.SafeLoader):
    """A SafeLoader that records each mapping's line number under ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        mapping[KEY_LINES] = {
            k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
        }
        return mapping


class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.items.append((line, msg))


def nexus_name(text: str) -> str:
    """A PV map's component name as a NeXus name: ``PILATUS 2M`` -> ``PILATUS_2M``."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text.strip()).strip("_")
    return f"_{name}" if name[:1].isdigit() else name


def line_of(node: Any, key: str | None = None) -> int:
    """The line of a mapping, or of one of its keys when the file recorded it."""
    if not isinstance(node, dict):
        return 0
    if key is not None and key in node.get(KEY_LINES, {}):
        return int(node[KEY_LINES][key])
    return int(node.get(LINE, 0))


def check_unique(names: list[str], what: str, p: Problems, line: int) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            p.add(line, f"duplicate {what} name {name!r}")
        seen.add(name)


def expand_macros(text: str, macros: Mapping[str, str], p: Problems, line: int) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in macros:
            p.add(line, f"undefined macro {name!r} in {text!r}")
            return m.group(0)
        return macros[name]

    return _MACRO.sub(sub, text)


def moments_of(raw: Any, p: Problems, line: int) -> frozenset[Moment]:
    if raw is None:
        return SNAPSHOT_MOMENTS
    items = [raw] if isinstance(raw, str) else raw
    out: set[Moment] = set()
    if not isinstance(items, list) or not items:
        p.add(line, f"moments must be a list of pre/during/post, not {raw!r}")
        return SNAPSHOT_MOMENTS
    for item in items:
        key = str(item).lower()
        if key in CSV_ACQUISITION_TYPES:
            out |= CSV_ACQUISITION_TYPES[key]
            continue
        try:
            out.add(Moment(key))
        except ValueError:
            p.add(line, f"unknown moment {item!r} (use pre, during, post)")
    return frozenset(out) or SNAPSHOT_MOMENTS


def vector_of(raw: Any, p: Problems, line: int, what: str) -> tuple[float, float, float] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    ):
        p.add(line, f"{what} must be a list of three numbers, not {raw!r}")
        return None
    return (float(raw[0]), float(raw[1]), float(raw[2]))
