"""Names the file's layout reserves: the provenance collection of each entry, and the names a
component's provenance collection uses for itself (a config may not use them)."""

from __future__ import annotations

#: the NXcollection of each entry that holds the provenance of its components and NXlogs
PROVENANCE = "provenance"


#: names a component's provenance collection uses for itself (not for its children)
RESERVED = frozenset(
    {
        "field",
        "source_pv",
        "epics_timestamp",
        "alarm_severity",
        "alarm_status",
        "connected",
        "assonant_class",
        "missing_files",
        "unusable_files",
    }
)
