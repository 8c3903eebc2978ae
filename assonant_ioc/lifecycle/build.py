"""Build the NeXus file from the journal, in a worker process of its own.

The process that takes the monitor updates never builds the file: the two would fight
over one GIL (a write beside a live beamline took 12x longer). The worker reads the
journal, assembles the data classes, writes the file under its hidden name, syncs it
and returns the event that will announce it. Validation runs there too.

Every HDF5 open in the worker takes no file lock (``HDF5_USE_FILE_LOCKING=FALSE``), so a
reader in another program is never locked out by our validation or checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.errors import WriteFailed
from assonant_ioc.lifecycle import frame_file, frame_log, staging
from assonant_ioc.lifecycle.journal import Journal
from assonant_ioc.lifecycle.records import read_columns
from assonant_ioc.model.components import Experiment, Moment, SeriesColumns
from assonant_ioc.model.readings import UDF_ALARM, Reading, Severity
from assonant_ioc.model.times import iso
from assonant_ioc.snapshots import Captured, assemble
from assonant_ioc.snapshots.capture import Captures, with_frame_counts
from assonant_ioc.trust import Refused, roots_of, within


def init_worker(parent: int = 0) -> None:
    """Run first in the worker process: it dies with the IOC (``kill -9`` included: Linux's
    parent-death signal), and HDF5 takes no file locks there."""
    die_with_parent(parent)
    os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"


def init_validator(parent: int = 0) -> None:
    """The validation process: as the worker, at a lower priority, so that on a busy (or
    2-core) machine the next file's build takes the CPU before the last file's validators."""
    init_worker(parent)
    with contextlib.suppress(OSError):
        os.nice(10)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the process that started it dies (Linux; elsewhere a
    no-op). ``parent``: its pid, to catch a parent that died before this ran."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:
        os._exit(1)


def warm_up() -> int:
    """Import what a build needs, so the first EndOfExperiment does not pay for it."""
    import h5py  # noqa: F401

    import assonant_ioc.nexus.writer  # noqa: F401

    return os.getpid()


def warm_up_validators() -> int:
    """Import the validators, so the first file's validation does not pay for it."""
    import contextlib

    with contextlib.suppress(ImportError):
        import pynxtools.dataconverter.validation  # noqa: F401
    with contextlib.suppress(ImportError):
        import nexusformat.nexus.validate  # noqa: F401
    return os.getpid()


@dataclass(frozen=True)
class BuildJob:
    config: BeamlineConfig
    state_dir: str
    final_path: str
    experiment_id: str
    sample: str
    comment: str
    event_id: str
    ended_by: str = ""


def captures(
    journal: Journal,
    meta: dict[str, Any],
    dropped: list[int] | None = None,
    during: Mapping[str, Any] | None = None,
) -> tuple[list[Captured], dict[str, str]]:
    """What each moment captured, from the journal; and notes for the entries (the gaps).
    The readings a recording had to drop (a full state directory) are added to ``dropped``.
    ``during``: the recording as staged while it ran (no gap, not interrupted), instead of
    reading it from the journal."""
    out: list[Captured] = []
    notes: dict[str, str] = {}
    moments = meta.get("moments", {})
    for moment in Moment:
        info = moments.get(moment.value)
        if info is None or moment.value not in meta.get("captured", []):
            continue
        start, end = float(info["start"]), float(info["end"])
        values: Captures
        if moment is Moment.DURING and during is not None:
            values = dict(during)
        elif moment is Moment.DURING:
            gaps: list[dict[str, float]] = []
            series, _ = read_columns(journal.during_path(), gaps)
            texts = []
            for full in gaps:  # updates dropped: a point marked disconnected where they began
                t = float(full["from"])
                for pv, recorded in series.items():
                    if isinstance(recorded, SeriesColumns):
                        series[pv] = _then_disconnected(recorded, t)
                    else:
                        at = next((i for i, r in enumerate(recorded) if r.timestamp > t), None)
                        at = len(recorded) if at is None else at
                        last = recorded[at - 1] if at else None
                        recorded.insert(at, Reading.disconnected(pv, t, last))
                texts.append(
                    f"The state directory could not take the recording from {iso(t)} to "
                    f"{iso(float(full['to']))}: {int(full['dropped'])} update(s) received in "
                    "that time were dropped, and each series holds a point marked "
                    "disconnected (INVALID) where the gap begins."
                )
                if dropped is not None:
                    dropped.append(int(full["dropped"]))
            if texts:
                notes[moment.entry_name] = " ".join(texts)
            gap = info.get("interrupted")
            if gap:  # from the last durable point on, nothing is known: say so per PV
                down = float(gap["down_from"])
                for pv, recorded in series.items():
                    if isinstance(recorded, SeriesColumns):
                        series[pv] = _then_disconnected(recorded, down)
                    else:
                        last = recorded[-1] if recorded else None
                        recorded.append(Reading.disconnected(pv, down, last))
                notes[moment.entry_name] = notes.get(moment.entry_name, "") + (
                    f"The service was down from {iso(down)} to {iso(float(gap['up_at']))}: "
                    "the recording was closed at its last durable point, "
                    "and each series ends with a point marked disconnected (INVALID) there."
                )
            values = series
        else:
            values = journal.load_snapshot(moment.value)
        out.append(Captured(moment, values, start, end))
    return out, notes


def _then_disconnected(cols: SeriesColumns, t: float) -> SeriesColumns:
    """``cols`` with one more point at ``t`` (in time order): disconnected, INVALID, no value."""
    import numpy as np

    at = int(np.searchsorted(np.asarray(cols.times), t, side="right"))
    if cols.dtype == "str":
        values: Any = [*cols.values[:at], "", *cols.values[at:]]
    else:
        values = np.insert(np.asarray(cols.values, dtype=np.float64), at, np.nan)
    return SeriesColumns(
        cols.source,
        values,
        np.insert(cols.times, at, t),
        np.insert(cols.severity, at, int(Severity.INVALID)),
        np.insert(cols.status, at, UDF_ALARM),
        np.insert(cols.connected, at, False),
        cols.dtype if cols.dtype == "str" else "float64",
        cols.units,
    )


def build(job: BuildJob) -> tuple[str, dict[str, Any]]:
    """Write the experiment in the journal under the final name's hidden name; returns the
    hidden name and the event (without validation) that will announce the final name."""
    journal = Journal(Path(job.state_dir))
    final = Path(job.final_path)
    room_for(journal.dir, final.parent)
    meta = journal.load_meta()
    dropped: list[int] = []
    during = _staged(job, journal, meta)
    caps, notes = captures(journal, meta, dropped, during)
    frames, refused = confined(job.config, journal.frame_files())
    arrays, sent = frames_over_pva(job.config, journal.dir, final)
    frames.update(arrays)
    experiment = assemble(
        job.config, job.experiment_id, job.sample, caps, job.comment, frames or None
    )
    experiment = with_frame_counts(experiment, {**journal.frame_counts(), **sent})
    experiment = replace(experiment, proposal=str(meta.get("proposal", "")))
    entry_notes: dict[str, dict[str, str]] = {
        entry: {"service_interruption": text} for entry, text in notes.items()
    }
    during_info = meta.get("moments", {}).get(Moment.DURING.value) or {}
    if during_info.get("before_start_s"):  # said where the readings before the start are
        entry_notes.setdefault(Moment.DURING.entry_name, {})["before_start"] = (
            f"the recording starts with the updates of the {during_info['before_start_s']:g} s "
            f"before Record:During 1 ({iso(float(during_info['start']))}, the entry's "
            "start_time): the readings timed before it are those"
        )
    if refused:  # named in the file, never linked
        entry_notes.setdefault("during_exposure", {})["refused_detector_files"] = "; ".join(refused)
    for entry, text in _audit(meta).items():
        entry_notes.setdefault(entry, {})["audit"] = text
        if meta.get("job"):  # a run-control job: its id, file name, metadata and template
            entry_notes[entry]["run_control"] = json.dumps(meta["job"], indent=1)
    tmp, event = write_file(
        job.config, experiment, final, entry_notes, job.event_id, staged=during is not None
    )
    if job.ended_by:
        event["ended_by"] = job.ended_by
    event["readings_dropped"] = sum(dropped)
    event["origin"] = "epics"
    if meta.get("job"):
        event["job_id"] = str(meta["job"].get("job_id", ""))
    return str(tmp), event


def frames_over_pva(
    config: BeamlineConfig, journal_dir: Path, final: Path
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each camera's frames recorded over PVA made its detector file beside the master
    (``<name>_<component>.h5``): component -> [path], and path -> the frames it sent."""
    from assonant_ioc.nexus.h5 import filter_options

    files: dict[str, list[str]] = {}
    sent: dict[str, int] = {}
    for component, spec in config.frames_specs().items():
        if not spec.array_pv or not frame_log.log_path(journal_dir, component).exists():
            continue
        out = final.with_name(f"{final.stem}_{component}.h5")
        options = filter_options(config.compression)
        _, sent[str(out)] = frame_file.finish(journal_dir, component, out, options, spec.dataset)
        files[component] = [str(out)]
    return files, sent


def confined(
    config: BeamlineConfig, frames: dict[str, list[str]]
) -> tuple[dict[str, list[str]], list[str]]:
    """The detectors' files a file-name PV named, those outside the config's
    ``detector_dirs`` (when it names any) left out; and why each was (:mod:`trust`)."""
    if not config.detector_dirs:
        return frames, []
    roots = roots_of(config.detector_dirs)
    kept: dict[str, list[str]] = {}
    refused: list[str] = []
    for component, paths in frames.items():
        for path in paths:
            try:
                within(path, roots, f"{component} file")
                kept.setdefault(component, []).append(path)
            except Refused as err:
                refused.append(str(err))
    return kept, refused


def _staged(job: BuildJob, journal: Journal, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The recording as staged while it ran, its file moved to the final name's hidden name
    (to be written into); None: build it from the journal (nothing usable staged)."""
    import h5py

    from assonant_ioc.nexus.publish import partial_path

    info = meta.get("moments", {}).get(Moment.DURING.value)
    if (
        info is None
        or info.get("interrupted")
        or Moment.DURING.value not in meta.get("captured", [])
    ):
        staging.discard(journal)
        return None
    t0 = float(info["start"])
    tmp = staging.take(journal, t0, job.config.compression, partial_path(Path(job.final_path)))
    if tmp is None:
        return None
    axes = {ch.pv for ch in job.config.channels() if ch.pv and ch.axis is not None}
    with h5py.File(tmp, "r") as f:
        return staging.columns(f, t0, axes)


def write_file(
    config: BeamlineConfig,
    experiment: Experiment,
    final: Path,
    notes: dict[str, dict[str, str]],
    event_id: str,
    after: Callable[[Path], None] | None = None,
    staged: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write ``experiment`` under the hidden name of ``final`` (``after`` adds to the file
    before it is summed), and the event that will announce it: size, sha256, the detector
    files and the writer's own findings. Shared by the PV path and the Bluesky path.
    ``staged``: the hidden name holds the recording staged while it ran (written into)."""
    from assonant_ioc.events.message import file_written_event
    from assonant_ioc.nexus.provenance import source_files
    from assonant_ioc.nexus.publish import checks_of
    from assonant_ioc.nexus.writer import write_partial

    tmp = write_partial(experiment, final, config.compression, notes, sync=False, staged=staged)
    try:
        if after is not None:
            after(tmp)
        size, sha256 = durable_sum(tmp)  # what ``after`` added is made durable too
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    event = file_written_event(
        experiment, final, size, sha256, time.time(), None, event_id=event_id
    )
    sources = source_files(tmp)
    if sources:
        event["detector_files"] = [
            {k: s[k] for k in ("detector", "path", "frames_expected", "frames_linked", "sha256")}
            for s in sources
        ]
    errors, _ = checks_of(tmp)
    if errors:  # the writer's own findings travel with the event even without validation
        event["checks"] = errors[:20]
    return tmp, event


def room_for(journal_dir: Path, directory: Path) -> None:
    """Refuse a write that cannot fit, before it starts: libhdf5 can crash the process when
    the disk fills in the middle of a write. The file takes about what the journal does (its
    readings as arrays, plus the metadata): twice that, and 1 MB, must be free."""
    import shutil

    used = sum(
        p.stat().st_size
        for p in journal_dir.iterdir()
        if p.is_file() and p.name != staging.STAGING  # the staged file is moved, not copied
    )
    need = 2 * used + (1 << 20)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise WriteFailed(
            f"cannot write in {directory}: {free:,} bytes free, the file needs about {need:,} "
            "(No space left on device)"
        )


#: The steps that made each entry (EndOfExperiment made them all).
_STEPS = {
    Moment.PRE: ("Snapshot:Pre",),
    Moment.DURING: ("Record:During=1", "Record:During=0"),
    Moment.POST: ("Snapshot:Post",),
}


def _audit(meta: dict[str, Any]) -> dict[str, str]:
    """Per entry, who triggered each of its steps and when (one line a step)."""
    steps = meta.get("steps", [])
    out = {}
    for moment, names in _STEPS.items():
        lines = [
            f"{iso(float(s['at']))} {s['step']} by {s['by'] or 'unknown'}"
            for s in steps
            if s["step"] in (*names, "EndOfExperiment")
        ]
        if lines:
            out[moment.entry_name] = "\n".join(lines)
    return out


def frames_short(wanted: dict[str, tuple[str, int]]) -> list[str]:
    """Of ``path -> (frames dataset, frames expected or -1)``, the files not yet holding
    their frames (missing, not yet HDF5, or fewer frames), each as ``path (n of m)``."""
    import h5py

    short = []
    for path, (dataset, expected) in wanted.items():
        try:
            with h5py.File(path, "r", locking=False) as f:
                have = int(f[dataset].shape[0])
        except (OSError, KeyError, TypeError, IndexError):
            short.append(f"{path} (not readable yet)")
            continue
        if expected >= 0 and have < expected:
            short.append(f"{path} ({have} of {expected} frames)")
    return short


def durable_sum(path: Path) -> tuple[int, str]:
    """The file made durable (fsync) and summed (size, sha256) at once: the sum reads what
    the page cache holds while the disk takes it, not after it. An fsync that fails raises
    (the file is then not whole on disk)."""
    from concurrent.futures import ThreadPoolExecutor

    with open(path, "rb") as fh, ThreadPoolExecutor(1, "fsync") as pool:
        synced = pool.submit(os.fsync, fh.fileno())
        digest = _digest(fh)
        synced.result()
    return path.stat().st_size, digest


def sha256_of(path: Path) -> tuple[int, str]:
    with open(path, "rb") as fh:
        return path.stat().st_size, _digest(fh)


def _digest(fh: Any) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def validate_file(path: str) -> tuple[str, dict[str, Any]]:
    """Run the NeXus validators on ``path``: (summary, the event's ``validation`` member)."""
    from assonant_ioc.nexus.validate import validate

    report = validate(Path(path))
    return report.summary(), report.as_event()
