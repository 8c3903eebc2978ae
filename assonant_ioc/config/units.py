"""Units as pint reads them: one registry per process (building it takes a moment)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def registry() -> Any:
    import pint

    return pint.UnitRegistry()


def unit_problem(units: str) -> str | None:
    """Why ``units`` is not a unit pint knows (``mm``, ``keV``, ``angstrom``, ``degC``...),
    or None (an empty string is "no units")."""
    if not units.strip():
        return None
    try:
        registry().parse_units(units.strip())
    except Exception as err:  # noqa: BLE001 - pint raises several types for unknown units
        return f"unknown unit {units!r} ({type(err).__name__})"
    return None
