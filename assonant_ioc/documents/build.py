"""Build a run's file from its journaled documents (in the worker process, or in the
RunEngine's process for the callback): the same file either way."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.documents.journal import RunJournal
from assonant_ioc.documents.mapping import RunContent, content, proposal_of
from assonant_ioc.lifecycle.build import room_for, write_file
from assonant_ioc.model.components import Component, Experiment, LinkedData
from assonant_ioc.snapshots import assemble
from assonant_ioc.snapshots.capture import with_frame_counts, with_linked
from assonant_ioc.trust import Refused, open_regular


@dataclass(frozen=True)
class RunJob:
    config: BeamlineConfig
    state_dir: str
    uid: str
    final_path: str
    event_id: str
    #: the run had no stop document and is closed at this time (None: it stopped)
    closed_at: float | None = None


def build_run(job: RunJob) -> tuple[str, dict[str, Any]]:
    """Write the run under the final name's hidden name; returns it and the event."""
    journal = RunJournal(Path(job.state_dir))
    room_for(journal.run_dir(job.uid), Path(job.final_path).parent)
    run = journal.load(job.uid)
    found = content(job.config, run, job.closed_at)
    experiment = assemble(
        found.config,
        found.experiment_id,
        found.sample,
        found.captures,
        found.comment,
        found.frames or None,
    )
    experiment = with_frame_info(with_frame_counts(experiment, found.frame_counts), found)
    experiment = replace(experiment, proposal=proposal_of(job.config, run.start or {}))

    def link_external(tmp: Path) -> None:
        if found.external:
            _link_external(tmp, found)

    tmp, event = write_file(
        found.config, experiment, Path(job.final_path), found.notes, job.event_id, link_external
    )
    event["origin"] = "bluesky"
    event["run_uid"] = job.uid
    stop = run.stop or {}
    event["ended_by"] = (
        "timeout" if job.closed_at is not None else f"bluesky stop ({stop.get('exit_status', '')})"
    )
    return str(tmp), event


def with_frame_info(x: Experiment, found: RunContent) -> Experiment:
    """``x`` with each detector's per-frame image key, time and rotation from the run."""

    def change(c: Component, data: LinkedData) -> LinkedData:
        info = found.frame_info.get(c.name)
        if info is None:
            return data
        return replace(data, keys=info.keys, times=info.times, positions=info.positions)

    return with_linked(x, change)


def _link_external(tmp: Path, found: RunContent) -> None:
    """Detector data other than frames (a sum, a statistic): a virtual dataset over the
    device's files in ``during_exposure/<device>_files`` (an NXcollection), never copied. A
    file that cannot be read is named in the log and left out."""
    import logging

    import h5py

    from assonant_ioc.nexus.linking import virtual_dataset

    with h5py.File(tmp, "r+") as f:
        entry = f.get("during_exposure")
        if not isinstance(entry, h5py.Group):
            return
        for device, name, places in found.external:
            shapes: dict[str, tuple[int, ...]] = {}
            dtype = None
            dataset = places[0][1]
            for path, _ in places:
                try:
                    os.close(open_regular(Path(path), "detector file"))  # no device, no FIFO
                    with _open(path) as src:
                        shapes[path] = tuple(src[dataset].shape)
                        dtype = src[dataset].dtype
                except (OSError, KeyError, Refused) as err:
                    logging.getLogger(__name__).error("%s: %s not linked: %s", path, name, err)
            if not shapes or dtype is None or len({s[1:] for s in shapes.values()}) != 1:
                continue
            group = entry.require_group(f"{device}_files")
            group.attrs["NX_class"] = "NXcollection"
            if name not in group:
                virtual_dataset(group, name, shapes, dataset, tmp.parent.resolve(), dtype)


def _open(path: str) -> Any:
    """A device's file, read-only and without a lock; in the process that still writes it
    (the callback beside ophyd-async's detector) HDF5 wants the flags it was opened with."""
    import h5py

    try:
        return h5py.File(path, "r", locking=False)
    except OSError:
        return h5py.File(path, "r")
