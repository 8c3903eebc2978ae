"""A reading of one PV: value with units, EPICS timestamp, alarm and connection state."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

Scalar = bool | int | float | str
Value = Scalar | tuple[Scalar, ...] | None


class Severity(enum.IntEnum):
    """EPICS alarm severity."""

    NO_ALARM = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3


#: EPICS alarm status used for a channel that is not connected (menuAlarmStat UDF).
UDF_ALARM = 17


@dataclass(frozen=True)
class Reading:
    """One value of one PV, with everything needed to trust it later.

    ``value`` is ``None`` when the PV was never connected. ``dtype`` is a numpy
    dtype name (``float64``, ``int32``, ``str``...) and ``shape`` is ``()`` for
    scalars and ``(n,)`` for waveforms, whose value is then a flat tuple.
    """

    source: str
    value: Value
    dtype: str
    shape: tuple[int, ...]
    units: str
    timestamp: float
    severity: Severity
    status: int
    connected: bool

    @classmethod
    def disconnected(cls, source: str, timestamp: float, last: Reading | None = None) -> Reading:
        """The reading of a PV that is not connected: INVALID, value of the last reading if any."""
        return cls(
            source=source,
            value=None,
            dtype=last.dtype if last else "float64",
            shape=last.shape if last else (),
            units=last.units if last else "",
            timestamp=timestamp,
            severity=Severity.INVALID,
            status=UDF_ALARM,
            connected=False,
        )

    @classmethod
    def of(
        cls,
        source: str,
        value: Any,
        timestamp: float,
        units: str = "",
        severity: int = 0,
        status: int = 0,
    ) -> Reading:
        """Build a connected reading, inferring dtype and shape from a Python value."""
        dtype, shape, norm = describe(value)
        known = Severity(int(severity)) if 0 <= int(severity) <= 3 else Severity.INVALID
        return cls(source, norm, dtype, shape, units, float(timestamp), known, int(status), True)


def _scalar_dtype(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    return "str"


def describe(value: Any) -> tuple[str, tuple[int, ...], Value]:
    """Return ``(dtype, shape, normalised value)`` for a Python or numpy value."""
    dtype_attr = getattr(value, "dtype", None)
    if dtype_attr is not None and getattr(value, "ndim", 0) >= 1:
        flat = value.reshape(-1).tolist()
        kind = str(dtype_attr)
        if kind.startswith(("<U", ">U", "|S", "object")):
            kind = "str"
            flat = [str(v) for v in flat]
        return kind, tuple(int(n) for n in value.shape), tuple(flat)
    if dtype_attr is not None:  # numpy scalar
        kind = str(dtype_attr)
        item = value.item()
        if isinstance(item, bytes):
            return "str", (), item.decode(errors="replace")
        return ("str" if isinstance(item, str) else kind), (), item
    if isinstance(value, bytes):
        return "str", (), value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        items = tuple(value)
        if not items:
            return "float64", (0,), ()
        kinds = {_scalar_dtype(v) for v in items}
        kind = (
            "float64"
            if kinds == {"int64", "float64"}
            else kinds.pop()
            if len(kinds) == 1
            else "str"
        )
        if kind == "float64":
            items = tuple(float(v) for v in items)
        elif kind == "str":
            items = tuple(str(v) for v in items)
        return kind, (len(items),), items
    if isinstance(value, (bool, int, float, str)):
        return _scalar_dtype(value), (), value
    return "str", (), str(value)


#: One update as it arrived: (value, EPICS time, severity, status, connected).
Raw = tuple[Any, float, int, int, bool]


@dataclass(frozen=True)
class SnapshotColumns:
    """A snapshot's rows: the PVs heard from (in the configuration's order) and their columns
    (``p t s a c k vf vi``, numpy), with ``o`` the [row, value] of the values of no number
    kind. ``layout`` changes whenever the PVs heard from, a unit or the PVs disconnected
    change: a snapshot header written for one layout serves every snapshot of it."""

    pvs: list[str]
    columns: dict[str, Any]
    other: list[tuple[int, Any]]
    layout: tuple[int, int]


@dataclass(frozen=True)
class RawSnapshot:
    """The latest update of every PV heard from, as the monitor holds them: a snapshot costs a
    dict copy; readings are built from it later, away from the command's put."""

    #: empty when ``columns`` holds the updates (the monitor's own snapshots)
    raw: dict[str, Raw]
    units: dict[str, str]
    #: the last connected value of each PV now disconnected (its dtype and shape are kept)
    last: dict[str, Any]
    #: the same rows as the journal's columns, when the monitor keeps them (else encoded
    #: from ``raw`` when written)
    columns: SnapshotColumns | None = None

    def readings(self) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        for pv, (value, t, severity, status, connected) in self.raw.items():
            units = self.units.get(pv, "")
            if connected:
                out[pv] = Reading.of(pv, value, t, units, severity, status)
            else:
                prev = self.last.get(pv)
                before = Reading.of(pv, prev, t, units) if prev is not None else None
                out[pv] = Reading.disconnected(pv, t, before)
        return out
