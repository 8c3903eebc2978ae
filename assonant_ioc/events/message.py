"""The ``file_written`` event (pure: no Kafka here). Its JSON Schema is ``event.schema.json``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from assonant_ioc.model.components import Experiment
from assonant_ioc.model.times import iso

EVENT_SCHEMA_VERSION = 1
EVENT_SCHEMA_PATH = Path(__file__).with_name("event.schema.json")


def file_written_event(
    x: Experiment,
    path: Path,
    size: int,
    sha256: str,
    written_at: float,
    validation: dict[str, Any] | None = None,
    event_id: str = "",
) -> dict[str, Any]:
    """The event that says which file holds experiment ``x`` (and what validation found)."""
    counts = [e.counts() for e in x.entries]
    event = {
        "schema_version": EVENT_SCHEMA_VERSION,
        "event_type": "file_written",
        "event_id": event_id or uuid.uuid4().hex,
        "beamline": x.beamline,
        "experiment_id": x.experiment_id,
        "sample_name": x.sample_name,
        "proposal": x.proposal,
        "file_path": str(path),
        "file_size": size,
        "sha256": sha256,
        "moments": [e.moment.entry_name for e in x.entries],
        "readings_captured": sum(n for n, _ in counts),
        "readings_disconnected": sum(d for _, d in counts),
        "start_time": iso(x.start_time),
        "end_time": iso(x.end_time),
        "written_at": iso(written_at),
        "definition": x.definition,
    }
    if validation is not None:
        event["validation"] = validation
    return event
