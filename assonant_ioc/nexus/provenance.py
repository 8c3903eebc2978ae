"""Read back where a value came from: the provenance the writer keeps in NXcollections.

A field holding one reading has a row in its component's ``provenance`` table (the row whose
``field`` is the field's name, ``transformations/<axis>`` for an axis); an NXlog has its own
``provenance`` collection, with one alarm severity, alarm status and connected flag per point.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from assonant_ioc.nexus.writer import PROVENANCE


def _nx_class(obj: h5py.HLObject) -> str:
    value = obj.attrs.get("NX_class", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def provenance(obj: h5py.Dataset | h5py.Group) -> dict[str, Any]:
    """The provenance of a field or of an NXlog, as a dict; KeyError when it has none.

    A field: ``source_pv``, ``epics_timestamp`` (ISO 8601), ``alarm_severity`` (name),
    ``alarm_status``, ``connected``. An NXlog: ``source_pv`` and the per-point arrays
    ``alarm_severity`` (0 NO_ALARM .. 3 INVALID), ``alarm_status``, ``connected``.
    """
    if isinstance(obj, h5py.Group):
        where = obj[PROVENANCE]
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
    table = component[PROVENANCE]
    if "field" not in table:
        raise KeyError(f"{obj.name}: no provenance row")
    fields = [_text(f) for f in table["field"][()]]
    if name not in fields:
        raise KeyError(f"{obj.name}: no provenance row")
    row = fields.index(name)
    return {
        "source_pv": _text(table["source_pv"][row]),
        "epics_timestamp": _text(table["epics_timestamp"][row]),
        "alarm_severity": _text(table["alarm_severity"][row]),
        "alarm_status": int(table["alarm_status"][row]),
        "connected": bool(table["connected"][row]),
    }


def component_info(group: h5py.Group, name: str) -> Any:
    """A component-wide provenance item (``assonant_class``, ``missing_files``,
    ``unusable_files``), or None when the component has none."""
    table = group.get(PROVENANCE)
    if table is None or name not in table:
        return None
    value = table[name][()]
    if isinstance(value, np.ndarray):
        return [_text(v) for v in value]
    return _text(value)
