"""Application definitions as data: one table per definition (``NXtomo.yaml``, ...).

A table says what only a beamline config can give (``require``: checked when the config
loads, the messages in the config's terms) and what the writer adds to the entry holding
the exposure (``fill``: steps run in order). Adding a technique is adding a table; the
steps a table may use are listed in :data:`FILL_OPS` and implemented once in
``nexus/appdef.py``.

A requirement::

    - component: Detector        # a component class (anywhere in the instrument), or
      sample: true               # the sample
      name: detector             # optional: the component must have this name
      path: /ENTRY/INSTRUMENT/DETECTOR   # the definition's path, for the messages
      frames: /ENTRY/DATA        # its detector frames must be configured (true: <path>/data)
      fields: [sensor_material]  # fields or constants it must give
      units: {distance: "[length]"}  # ... given with units of this dimension ("": any units;
                                     # a unit, e.g. deg, stands for its dimension)
      axes: [fast_pixel_direction]   # axes it must give, with their offset
      axis: rotation             # (sample) a rotation axis, or any axis

A fill step is one of :data:`FILL_OPS`; a path in it is relative to the NXentry, and
``{Detector}`` (a class: the first such component), ``{name:i0}`` (a component by name),
``{sample}`` and ``{end_time}`` are replaced by the entry's own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

#: What a fill step may do (the key of each step), implemented in ``nexus/fill.py``:
#: ``step`` a named builder (per-frame tomography and MX geometry, which no table can say);
#: ``one_value`` recorded series become one value (the median; the series kept as
#: ``<name>_log``; a field not recorded takes its value from the snapshot before);
#: ``points`` one row per reading of a series (``at``), the other fields read at those
#: instants; ``field`` a constant; ``group`` a group of a class; ``link`` a NeXus link;
#: ``move`` a field or group to where the definition wants it (its provenance with it);
#: ``sum`` the total of a series; ``calibration`` a polynomial axis over an axis of a
#: spectrum or image; ``log_ratio`` ln(numerator / denominator); ``plot`` the NXdata.
FILL_OPS = (
    "step",
    "one_value",
    "points",
    "field",
    "group",
    "link",
    "move",
    "sum",
    "calibration",
    "log_ratio",
    "plot",
)
_REQUIRE_KEYS = {"component", "sample", "name", "path", "frames", "fields", "units", "axes", "axis"}


@dataclass(frozen=True)
class Requirement:
    path: str
    component: str = ""
    sample: bool = False
    name: str = ""
    #: the definition's path of the frames when the component must have them, else empty
    frames: str = ""
    fields: tuple[str, ...] = ()
    units: tuple[tuple[str, str], ...] = ()
    axes: tuple[str, ...] = ()
    axis: str = ""


@dataclass(frozen=True)
class Definition:
    name: str
    require: tuple[Requirement, ...]
    fill: tuple[dict[str, Any], ...] = field(default=())


class TableError(ValueError):
    """A definition table that does not say what this module can do (names the table)."""


def _frames_path(raw: dict[str, Any]) -> str:
    frames = raw.get("frames")
    if frames is True:
        return f"{raw.get('path') or ''}/data"
    return str(frames or "")


def _requirement(table: str, i: int, raw: Any) -> Requirement:
    where = f"{table}: require[{i}]"
    if not isinstance(raw, dict) or not (raw.get("component") or raw.get("sample")):
        raise TableError(f"{where}: a mapping with 'component' (a class) or 'sample: true'")
    unknown = set(raw) - _REQUIRE_KEYS
    if unknown:
        raise TableError(f"{where}: unknown keys {sorted(unknown)}")
    units = raw.get("units") or {}
    if not isinstance(units, dict):
        raise TableError(f"{where}: 'units' maps a field to its dimension")
    return Requirement(
        path=str(raw.get("path") or ""),
        component=str(raw.get("component") or ""),
        sample=bool(raw.get("sample")),
        name=str(raw.get("name") or ""),
        frames=_frames_path(raw),
        fields=tuple(str(f) for f in raw.get("fields") or ()),
        units=tuple((str(k), str(v or "")) for k, v in units.items()),
        axes=tuple(str(a) for a in raw.get("axes") or ()),
        axis=str(raw.get("axis") or ""),
    )


def parse(name: str, text: str) -> Definition:
    """A table from its YAML text; raises :class:`TableError` naming what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TableError(f"{name}: not YAML ({err})") from err
    if not isinstance(doc, dict) or doc.get("definition") != name:
        raise TableError(f"{name}: the table must say 'definition: {name}'")
    require = tuple(_requirement(name, i, r) for i, r in enumerate(doc.get("require") or ()))
    fill = []
    for i, step in enumerate(doc.get("fill") or ()):
        if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in FILL_OPS:
            raise TableError(f"{name}: fill[{i}] must be one of {', '.join(FILL_OPS)}")
        fill.append(step)
    return Definition(name, require, tuple(fill))


@functools.cache
def tables() -> dict[str, Definition]:
    """Every definition shipped in this package, by name."""
    out = {}
    for item in sorted(resources.files(__package__).iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            name = item.name.removesuffix(".yaml")
            out[name] = parse(name, item.read_text(encoding="utf-8"))
    return out


def names() -> tuple[str, ...]:
    """The application definitions a config may name (``definition: NXsas``)."""
    return tuple(tables())


def get(name: str) -> Definition:
    return tables()[name]
