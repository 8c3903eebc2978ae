"""Which pipeline a ``file_written`` event's file gets, and where its result goes (pure).

A job's output path and its ``file_derived`` event id follow from the raw file (its path
and sha256) and the pipeline alone, so a job run again after a stop (a redelivered event, a
processor killed mid-job) writes the same file and sends the same event id: a consumer of
the events drops the second by its id, and a finished result is never computed twice.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the definition -> the pipeline that reduces its files
PIPELINES = {"NXtomo": "nabu", "NXsas": "pyfai", "NXxas": "larch"}
_NAMESPACE = uuid.UUID("6f1d8c1e-5b0a-4f43-9a2a-7c1f0e8d2b11")


@dataclass(frozen=True)
class Job:
    pipeline: str
    raw_path: str
    raw_sha256: str
    raw_event_id: str
    beamline: str
    experiment_id: str
    sample: str
    definition: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the raw file's proposal: its derived file is that proposal's too
    proposal: str = ""

    @property
    def job_id(self) -> str:
        return f"{self.raw_sha256[:16]}/{self.pipeline}"

    @property
    def event_id(self) -> str:
        """The ``file_derived`` event's id: the same for every run of this job."""
        return uuid.uuid5(_NAMESPACE, f"{self.raw_path}\n{self.raw_sha256}\n{self.pipeline}").hex

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)


def output_path(root: Path, beamline: str, raw_path: str, sha256: str, pipeline: str) -> Path:
    """``<root>/<beamline>/<raw stem>_<pipeline>_<sha256[:8]>.nxs``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(raw_path).stem)[:120] or "file"
    where = re.sub(r"[^A-Za-z0-9_.-]", "_", beamline) or "beamline"
    return root / where / f"{stem}_{pipeline}_{sha256[:8]}.nxs"


def job_for(
    event: dict[str, Any], root: Path, parameters: dict[str, dict[str, Any]] | None = None
) -> Job | None:
    """The job of a checked ``file_written`` event, or None when its definition has no
    pipeline (``parameters``: per pipeline, what the config gives it)."""
    pipeline = PIPELINES.get(str(event.get("definition", "")))
    if pipeline is None:
        return None
    raw, sha = str(event["file_path"]), str(event["sha256"])
    return Job(
        pipeline=pipeline,
        raw_path=raw,
        raw_sha256=sha,
        raw_event_id=str(event["event_id"]),
        beamline=str(event["beamline"]),
        experiment_id=str(event["experiment_id"]),
        sample=str(event.get("sample_name", "")),
        definition=str(event["definition"]),
        output=str(output_path(root, str(event["beamline"]), raw, sha, pipeline)),
        parameters=dict((parameters or {}).get(pipeline, {})),
        proposal=str(event.get("proposal", "")),
    )
