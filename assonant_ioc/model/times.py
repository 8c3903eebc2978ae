"""Times shared by the monitor, the writer, the events and the simulated detector."""

from __future__ import annotations

from datetime import datetime, timezone

#: EPICS epoch (1990-01-01) in POSIX seconds: EPICS timestamps count from it.
EPICS_EPOCH = 631152000


def iso(t: float) -> str:
    """ISO 8601 with time zone (NeXus NX_DATE_TIME, JSON Schema date-time)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()
