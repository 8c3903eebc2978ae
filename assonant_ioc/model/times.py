"""Time formatting shared by the writer and the events."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(t: float) -> str:
    """ISO 8601 with time zone (NeXus NX_DATE_TIME, JSON Schema date-time)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()
