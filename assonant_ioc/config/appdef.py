"""What an application definition needs from a beamline config, checked at load.

The definition's table (``assonant_ioc/definitions/<name>.yaml``) lists what only the
config can give; a config that cannot fill a required field is refused at start, naming
the field in the config's terms. The writer fills the rest (``nexus/appdef.py``).
"""

from __future__ import annotations

from assonant_ioc import definitions
from assonant_ioc.config.spec import ComponentSpec
from assonant_ioc.config.units import registry, unit_problem
from assonant_ioc.definitions import Requirement
from assonant_ioc.model.components import ComponentClass, TransformationType

Problem = tuple[int, str]


def _names(comp: ComponentSpec) -> set[str]:
    """The field, axis and constant names a component gives."""
    return {c.name for c in comp.channels} | {c.name for c in comp.constants}


def _units(comp: ComponentSpec, name: str) -> str:
    for ch in comp.channels:
        if ch.name == name:
            return ch.units
    for const in comp.constants:
        if const.name == name:
            return const.units
    return ""


def _dimension_problem(units: str, dimension: str) -> str | None:
    """Why ``units`` are not of ``dimension`` (pint's ``[length]``), or None."""
    if not dimension or units in ("pixel", "pixels"):
        return None if not dimension else f"units of {dimension}, not {units!r}"
    if unit_problem(units) is not None:
        return unit_problem(units)
    ureg = registry()
    wanted = (
        ureg.get_dimensionality(dimension)
        if dimension.startswith("[")
        else ureg.Quantity(1, dimension).dimensionality  # a unit stands for its dimension
    )
    if ureg.Quantity(1, units).dimensionality != wanted:
        return f"units of {dimension}, not {units!r}"
    return None


def _find(
    req: Requirement, instrument: list[ComponentSpec], sample: ComponentSpec | None
) -> ComponentSpec | None:
    if req.sample:
        return sample if sample is not None and req.name in ("", sample.name) else None
    cls = ComponentClass.parse(req.component)
    every = [c for top in instrument for c in top.walk()]
    found = [c for c in every if c.component_class is cls and req.name in ("", c.name)]
    # a definition's detector with frames is the one with frames (not an I0 counter)
    framed = [c for c in found if c.frames is not None]
    pick = framed if req.frames and framed else found
    return pick[0] if pick else None


def _check(
    definition: str,
    req: Requirement,
    instrument: list[ComponentSpec],
    sample: ComponentSpec | None,
) -> list[Problem]:
    comp = _find(req, instrument, sample)
    what = f"{definition}: {req.path}"
    if comp is None:
        if req.sample:
            named = f" named {req.name!r}" if req.name else ""
            return [(0, f"{what} is required: add a sample{named}")]
        named = f" named {req.name!r}" if req.name else ""
        frames = " with frames: {file_pv: ...FullFileName_RBV}" if req.frames else ""
        return [(0, f"{what} is required: add a {req.component} component{named}{frames}")]
    problems: list[Problem] = []
    if req.frames and comp.frames is None:
        problems.append(
            (
                comp.line,
                f"{definition}: {req.frames} is required: give {comp.name!r} "
                "frames: {file_pv: ...FullFileName_RBV}",
            )
        )
    for name in (*req.fields, *(n for n, _ in req.units)):
        if name not in _names(comp):
            problems.append((comp.line, f"{what}/{name} is required: give {comp.name!r} a {name}"))
    for name, dimension in req.units:
        if name not in _names(comp):
            continue
        units = _units(comp, name)
        if not units:
            problems.append((comp.line, f"{what}/{name} needs units in {comp.name!r}"))
        elif (why := _dimension_problem(units, dimension)) is not None:
            problems.append((comp.line, f"{what}/{name} in {comp.name!r} needs {why}"))
    for name in req.axes:
        axis = next((ch.axis for ch in comp.channels if ch.name == name and ch.axis), None)
        if axis is None:
            problems.append(
                (
                    comp.line,
                    f"{what}/{name} is required: an axis of {comp.name!r} with units, "
                    "vector and offset",
                )
            )
        elif axis.offset is None:
            problems.append((comp.line, f"{what}/{name}@offset is required"))
    axes = [ch.axis for ch in comp.channels if ch.axis is not None]
    if req.axis == "rotation" and not any(
        a.transformation_type is TransformationType.ROTATION for a in axes
    ):
        problems.append(
            (
                comp.line,
                f"{what}/rotation_angle is required: give {comp.name!r} a rotation axis "
                "(its PV recorded during the exposure)",
            )
        )
    elif req.axis == "any" and not axes:
        problems.append(
            (
                comp.line,
                f"{what}/depends_on is required: give {comp.name!r} its goniometer axes",
            )
        )
    return problems


def missing_for_definition(
    definition: str, instrument: list[ComponentSpec], sample: ComponentSpec | None
) -> list[Problem]:
    """(line, message) for each thing ``definition`` requires that the config does not give."""
    table = definitions.get(definition)
    return [p for req in table.require for p in _check(definition, req, instrument, sample)]
