"""A config's components and their channels, from the YAML or the PV map's rows: each channel's
PV or constant, units, moments and axis, each component's class, NeXus group and frames;
every bad entry added to the problems with its line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from assonant_ioc.config.parse import (
    AXIS_VECTORS,
    KEY_LINES,
    LINE,
    NEXUS_NAME,
    Problems,
    check_unique,
    expand_macros,
    line_of,
    moments_of,
    vector_of,
)
from assonant_ioc.config.spec import (
    ALL_MOMENTS,
    STAMPS,
    AxisSpec,
    ChannelSpec,
    ComponentSpec,
    ConstantSpec,
    FramesSpec,
)
from assonant_ioc.config.units import unit_problem
from assonant_ioc.model.components import ComponentClass, TransformationType
from assonant_ioc.model.reserved import PROVENANCE, RESERVED

_CHANNEL_KEYS = {
    "pv",
    "value",
    "units",
    "moments",
    "type",
    "vector",
    "offset",
    "depends_on",
    LINE,
    KEY_LINES,
}


def parse_channel(
    name: str, raw: Any, macros: Mapping[str, str], p: Problems, parent_line: int, is_axis: bool
) -> ChannelSpec | None:
    if isinstance(raw, str):
        raw = {"pv": raw, LINE: parent_line}
    if not isinstance(raw, dict):
        p.add(parent_line, f"{name!r}: expected a mapping with at least 'pv'")
        return None
    line = line_of(raw) or parent_line
    if not NEXUS_NAME.fullmatch(name):
        p.add(line, f"{name!r}: not a NeXus name; use letters, digits and _")
    for key in sorted(set(raw) - _CHANNEL_KEYS):
        p.add(line_of(raw, key) or line, f"{name!r}: unknown key {key!r}")
    pv = raw.get("pv")
    value = raw.get("value")
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        value = tuple(float(v) for v in value)
    if value is not None and (pv or not is_axis):
        p.add(line, f"{name!r}: 'value' fixes an axis given by the config: no 'pv' with it")
    elif value is not None and not isinstance(value, (int, float, tuple)):
        p.add(line, f"{name!r}: 'value' must be a number or a list of numbers")
    elif value is None and (not pv or not isinstance(pv, str)):
        p.add(line, f"{name!r}: 'pv' (the PV name) is required")
    pv = expand_macros(pv if isinstance(pv, str) else "", macros, p, line)
    if any(c.isspace() for c in pv):
        p.add(line, f"{name!r}: PV name {pv!r} contains whitespace")
    units = raw.get("units", "")
    if not isinstance(units, str):
        p.add(line, f"{name!r}: units must be a string")
        units = str(units)
    elif why := unit_problem(units):
        p.add(line_of(raw, "units") or line, f"{name!r}: {why}")
    axis: AxisSpec | None = None
    if is_axis:
        ttype_raw = str(raw.get("type", "translation")).lower()
        try:
            ttype = TransformationType(ttype_raw)
        except ValueError:
            p.add(line, f"{name!r}: type must be translation or rotation, not {ttype_raw!r}")
            ttype = TransformationType.TRANSLATION
        vector = vector_of(raw.get("vector"), p, line, f"{name!r}: vector")
        if vector is None:
            vector = AXIS_VECTORS.get(name.lower()[-1:], (0.0, 0.0, 1.0))
        if vector == (0.0, 0.0, 0.0):
            p.add(line, f"{name!r}: vector must not be zero")
        offset = vector_of(raw.get("offset"), p, line, f"{name!r}: offset")
        axis = AxisSpec(ttype, vector, offset, str(raw.get("depends_on", "")))
    elif {"type", "vector", "offset", "depends_on"} & set(raw):
        p.add(line, f"{name!r}: type/vector/offset/depends_on belong to axes, not fields")
    return ChannelSpec(
        name=name,
        pv=pv,
        units=units,
        moments=ALL_MOMENTS if value is not None else moments_of(raw.get("moments"), p, line),
        line=line,
        axis=axis,
        value=value,
    )


def chain_axes(channels: list[ChannelSpec], comp: str, p: Problems) -> list[ChannelSpec]:
    """Fill unset ``depends_on``: each axis depends on the next one listed, the last on ``.``."""
    axes = [c for c in channels if c.axis is not None]
    names = {c.name for c in axes}
    out: list[ChannelSpec] = []
    for i, ch in enumerate(channels):
        if ch.axis is None:
            out.append(ch)
            continue
        dep = ch.axis.depends_on
        if not dep:
            pos = axes.index(ch)
            dep = axes[pos + 1].name if pos + 1 < len(axes) else "."
        elif dep != "." and dep not in names:
            p.add(ch.line, f"{comp}/{ch.name}: depends_on {dep!r} is not an axis of {comp!r}")
        axis = AxisSpec(ch.axis.transformation_type, ch.axis.vector, ch.axis.offset, dep)
        out.append(replace(ch, axis=axis))
        del i
    # a cycle would make the chain endless
    deps = {c.name: c.axis.depends_on for c in out if c.axis is not None}
    for start in deps:
        seen, cur = set(), start
        while cur in deps:
            if cur in seen:
                p.add(0, f"{comp}: depends_on chain of axis {start!r} has a cycle")
                break
            seen.add(cur)
            cur = deps[cur]
    return out


_COMPONENT_KEYS = {
    "name",
    "class",
    "fields",
    "axes",
    "constants",
    "subcomponents",
    "frames",
    LINE,
    KEY_LINES,
}


def parse_component(
    raw: Any, macros: Mapping[str, str], p: Problems, parent_line: int
) -> ComponentSpec | None:
    if not isinstance(raw, dict):
        p.add(parent_line, f"a component must be a mapping, not {raw!r}")
        return None
    line = line_of(raw)
    name = raw.get("name")
    if not name or not isinstance(name, str):
        p.add(line, "component without a 'name'")
        name = "?"
    for key in sorted(set(raw) - _COMPONENT_KEYS):
        p.add(line_of(raw, key), f"component {name!r}: unknown key {key!r}")
    if name != "?" and not NEXUS_NAME.fullmatch(name):
        p.add(line, f"component {name!r}: not a NeXus name; use letters, digits and _")
    try:
        cls = ComponentClass.parse(str(raw.get("class", "")))
    except ValueError:
        known = ", ".join(c.value for c in ComponentClass)
        p.add(
            line_of(raw, "class"),
            f"component {name!r}: unknown class {raw.get('class')!r} (known: {known})",
        )
        cls = ComponentClass.COLLECTION
    channels: list[ChannelSpec] = []
    for key, is_axis in (("fields", False), ("axes", True)):
        section = raw.get(key) or {}
        if not isinstance(section, dict):
            p.add(line, f"component {name!r}: {key!r} must be a mapping name: {{pv: ...}}")
            continue
        for fname, fraw in section.items():
            if fname in (LINE, KEY_LINES):
                continue
            ch = parse_channel(str(fname), fraw, macros, p, line_of(section) or line, is_axis)
            if ch is not None:
                channels.append(ch)
    check_unique([c.name for c in channels], f"field/axis in {name!r}", p, line)
    for taken in sorted({name, *(c.name for c in channels)} & (RESERVED | {PROVENANCE})):
        p.add(line, f"component {name!r}: {taken!r} is a name the file's provenance uses")
    constants: list[ConstantSpec] = []
    raw_constants = raw.get("constants") or {}
    if not isinstance(raw_constants, dict):
        p.add(line, f"component {name!r}: 'constants' must be a mapping")
        raw_constants = {}
    for cname, craw in raw_constants.items():
        if cname in (LINE, KEY_LINES):
            continue
        cline = line_of(craw) or line_of(raw_constants) or line
        value = craw.get("value") if isinstance(craw, dict) else craw
        units = str(craw.get("units", "")) if isinstance(craw, dict) else ""
        if why := unit_problem(units):
            p.add(cline, f"{cname!r}: {why}")
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            # whole numbers stay integers (NX_INT fields such as data_size)
            whole = all(isinstance(v, int) for v in value)
            value = tuple(int(v) if whole else float(v) for v in value)
        if not isinstance(value, (bool, int, float, str, tuple)):
            p.add(cline, f"{name}/{cname}: constant must be a number, string or list of numbers")
            continue
        constants.append(ConstantSpec(str(cname), value, units, cline))
    subs: list[ComponentSpec] = []
    raw_subs = raw.get("subcomponents") or []
    if not isinstance(raw_subs, list):
        p.add(line, f"component {name!r}: 'subcomponents' must be a list")
        raw_subs = []
    for sraw in raw_subs:
        sub = parse_component(sraw, macros, p, line)
        if sub is not None:
            subs.append(sub)
    return ComponentSpec(
        name=name,
        component_class=cls,
        channels=tuple(chain_axes(channels, name, p)),
        constants=tuple(constants),
        subcomponents=tuple(subs),
        line=line,
        frames=parse_frames(raw.get("frames"), name, macros, p, line_of(raw, "frames") or line),
    )


def parse_frames(
    raw: Any, comp: str, macros: Mapping[str, str], p: Problems, line: int
) -> FramesSpec | None:
    """``frames: {file_pv: ..., dataset: /entry/data/data}``: the detector's own files."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"file_pv": raw}
    if isinstance(raw, dict) and isinstance(raw.get("plugin"), str):  # areaDetector's names
        plugin = raw["plugin"]
        raw = {
            "file_pv": f"{plugin}FullFileName_RBV",
            "capture_pv": f"{plugin}Capture_RBV",
            "captured_pv": f"{plugin}NumCaptured_RBV",
            **{k: v for k, v in raw.items() if k != "plugin"},
        }
    if not isinstance(raw, dict) or not any(
        isinstance(raw.get(key), str) for key in ("file_pv", "array_pv", "data_key")
    ):
        p.add(
            line,
            f"component {comp!r}: frames needs 'file_pv' (e.g. HDF1:FullFileName_RBV), "
            "'plugin' (e.g. $(BL)det:HDF1:), 'array_pv' (e.g. pva://$(BL)det:Pva1:Image) "
            "or, for Bluesky runs only, 'data_key'",
        )
        return None
    known = {"file_pv", "dataset", "stamp", "capture_pv", "captured_pv", "timeout", "data_key"}
    known.add("array_pv")
    array_pv = expand_macros(str(raw.get("array_pv") or ""), macros, p, line)
    if array_pv and not array_pv.startswith("pva://"):
        p.add(
            line_of(raw, "array_pv") or line,
            f"component {comp!r}: frames array_pv {array_pv!r} must be a pva:// PV "
            "(an NTNDArray: frames come over PVAccess only)",
        )
    if array_pv and raw.get("file_pv"):
        p.add(
            line_of(raw, "array_pv") or line,
            f"component {comp!r}: frames come from files (file_pv) or over PVA (array_pv), "
            "not both",
        )
    for key in sorted(set(raw) - known - {LINE, KEY_LINES}):
        p.add(line_of(raw, key) or line, f"component {comp!r}: frames: unknown key {key!r}")
    timeout = raw.get("timeout", 30.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= 3600
    ):
        p.add(
            line_of(raw, "timeout") or line,
            f"component {comp!r}: frames timeout must be seconds in (0, 3600], not {timeout!r}",
        )
        timeout = 30.0
    dataset = str(raw.get("dataset", "/entry/data/data"))
    if not dataset.startswith("/"):
        p.add(line, f"component {comp!r}: frames dataset {dataset!r} must be an absolute path")
    stamp = str(raw.get("stamp", "end"))
    if stamp not in STAMPS:
        p.add(
            line_of(raw, "stamp") or line,
            f"component {comp!r}: frames stamp {stamp!r} is not one of {', '.join(STAMPS)}",
        )
    return FramesSpec(
        expand_macros(str(raw.get("file_pv") or ""), macros, p, line),
        dataset,
        line,
        stamp,
        expand_macros(str(raw.get("capture_pv") or ""), macros, p, line),
        expand_macros(str(raw.get("captured_pv") or ""), macros, p, line),
        float(timeout),
        str(raw.get("data_key") or ""),
        array_pv,
    )
