"""Runs in, files out: documents are checked, kept once, journaled, routed to their run;
a run's stop (or its timeout) writes its file through the shared build and outbox.

Nothing in a document is trusted: a start whose id or sample could never name a file, a
run uid that is not one path component, a Resource or StreamResource whose file lies
outside the detector directories (``detector_dirs``, else the data directory) are refused
as they arrive (:mod:`assonant_ioc.trust`), counted by reason. A run whose write fails for
a reason no retry can fix (no start document, content the build cannot take) is closed as
failed: its journal moved to ``<state dir>/dead-letter/<uid>/`` with ``reason.json``, a
``file_failed`` event in the outbox, never tried again.

:class:`RunWriter` is synchronous and shared by both ways in: the callback in the
RunEngine's process and the Kafka consumer (which runs the build in a worker process).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.documents.build import RunJob, build_run
from assonant_ioc.documents.journal import RunJournal
from assonant_ioc.documents.mapping import experiment_id_of, path_of, proposal_of, sample_of
from assonant_ioc.documents.run import (
    MalformedDocument,
    Run,
    check,
    datum_page_datums,
    event_page_events,
)
from assonant_ioc.errors import WriteFailed
from assonant_ioc.lifecycle.journal import write_durable
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.lifecycle.write import next_path
from assonant_ioc.model.times import iso
from assonant_ioc.nexus.publish import partial_path, publish
from assonant_ioc.trust import (
    Refused,
    name_refusal,
    proposal_refusal,
    roots_of,
    text_refusal,
    within,
)

log = logging.getLogger(__name__)

#: A run with no document for this long (seconds) and no stop is closed (ended_by: timeout).
RUN_TIMEOUT_S = 3600.0
#: documents kept waiting for a parent that has not come (an out-of-order redelivery);
#: beyond, the oldest is dropped and counted (a flood of documents of no run)
MAX_ORPHANS = 10_000
#: where runs that can never be written are kept, in the state directory
DEAD_LETTER = "dead-letter"


class NoStart(ValueError):
    """A run whose start document never came: nothing says what it is."""


def retried(err: BaseException) -> bool:
    """Whether a failed write may work when tried again: the disk (full, a mount away), the
    worker process that died, the data directory refused for now; anything else (the
    documents themselves) fails the same way every time."""
    return isinstance(err, (OSError, BrokenProcessPool, WriteFailed))


@dataclass(frozen=True)
class Written:
    uid: str
    path: Path
    pending: Pending


class RunWriter:
    def __init__(
        self,
        config: BeamlineConfig,
        state_dir: Path,
        data_dir: str = "",
        file_name: str = "",
        run_timeout: float = RUN_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.data_dir = data_dir or config.data_dir
        self.file_name = file_name or config.file_name
        self.run_timeout = run_timeout
        self.journal = RunJournal(state_dir, config.journal_flush_s)
        self.outbox = Outbox(state_dir)
        self.runs: dict[str, Run] = {}
        #: descriptor, stream resource and resource uid -> its run
        self._owner: dict[str, str] = {}
        #: documents whose parent has not arrived yet (an out-of-order redelivery)
        self._orphans: list[tuple[str, dict[str, Any], str]] = []
        self.malformed = 0
        self.repeated = 0
        #: documents refused by the trust rules, per reason; runs closed as failed
        self.refused: dict[str, int] = {}
        self.dead = 0
        #: runs whose start was refused: their other documents are dropped
        self._refused_runs: set[str] = set()
        #: resources and stream resources refused: their datums are dropped
        self._dropped: set[str] = set()
        #: the directories a detector's file may be in
        self.roots = roots_of(config.detector_dirs or (self.data_dir,))
        #: the run the last document added went to (None: kept nowhere: a repeat of a run
        #: already written, or waiting for its parent)
        self.last_run: str | None = None

    # -- documents in ------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """The runs a stop left in the journal, back in memory; returns those that had
        stopped (to be written now)."""
        stopped = []
        for uid in self.journal.in_progress():
            if uid in self.journal.written():
                continue
            run = self.journal.load(uid)
            run.last_seen = time.time()
            self.runs[uid] = run
            self._own(run)
            if run.stop is not None:
                stopped.append(uid)
        return stopped

    def _own(self, run: Run) -> None:
        for table in (run.descriptors, run.stream_resources, run.resources):
            for uid in table:
                self._owner[uid] = run.uid

    def add(self, name: str, doc: Any, where: str = "") -> list[str]:
        """Take one document; returns the runs it completed (their stop arrived).

        Raises :class:`MalformedDocument` (nothing kept) for a document that is not one.
        """
        self.last_run = None
        try:
            check(name, doc)
        except MalformedDocument:
            self.malformed += 1
            raise
        self._trust(name, doc)
        if name == "event_page":
            done = []
            for event in event_page_events(doc):
                done += self.add("event", event, where)
            return done  # last_run: that of its events
        if name == "datum_page":
            for datum in datum_page_datums(doc):
                self.add("datum", datum, where)
            return []
        parent = str(
            doc.get({"datum": "resource", "stream_datum": "stream_resource"}.get(name, ""))
        )
        if parent in self._dropped:  # the file it points in was refused: so is it
            self.refused["parent_refused"] = self.refused.get("parent_refused", 0) + 1
            return []
        run_uid = self._run_of(name, doc)
        if run_uid is None:
            if len(self._orphans) >= MAX_ORPHANS:  # a flood of documents of no run: bounded
                self._orphans.pop(0)
                self.refused["orphan_dropped"] = self.refused.get("orphan_dropped", 0) + 1
            self._orphans.append((name, dict(doc), where))
            return []
        said = name_refusal("run uid", run_uid, 128)  # it names the run's journal directory
        if said:
            self._refuse("bad_text", name, "uid" if name == "start" else "run_start", said)
        if run_uid in self._refused_runs:  # dropped, counted: its start said why, once
            self.refused["run_refused"] = self.refused.get("run_refused", 0) + 1
            if name in ("descriptor", "stream_resource", "resource"):
                self._owner[str(doc["uid"])] = run_uid  # its events follow it out
            return []
        if run_uid in self.journal.written():
            self.repeated += 1  # a run already written, redelivered
            return []
        run = self.runs.get(run_uid)
        if run is None:
            run = self.runs[run_uid] = Run(run_uid)
        run.last_seen = time.time()
        self.last_run = run_uid
        if not run.add(name, dict(doc)):
            self.repeated += 1
            return []
        self.journal.append(run_uid, name, doc, where)
        if name in ("descriptor", "stream_resource", "resource"):
            self._owner[str(doc["uid"])] = run_uid
            return self._adopt()
        if name == "stop":
            return [run_uid]
        return []

    def _refuse(self, reason: str, name: str, field: str, why: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        raise MalformedDocument(name, field, f"refused ({reason}): {why}")

    def _trust(self, name: str, doc: Any) -> None:
        """Refuse, as it arrives, what could never be written or must not be read."""
        if name == "start":
            uid = str(doc["uid"])
            exp_id, sample = experiment_id_of(self.config, doc, uid), sample_of(doc)
            said = name_refusal("experiment_id", exp_id) or name_refusal("sample", sample)
            said = said or proposal_refusal("proposal_id", proposal_of(self.config, doc))
            said = said or text_refusal("comment", doc.get("comment"), 8192)
            if not said:
                try:  # the file's name from them (the same rules as the IOC's settings)
                    from assonant_ioc.config.spec import render_file_name

                    render_file_name(
                        self.file_name,
                        beamline=self.config.beamline,
                        experiment_id=exp_id,
                        sample=sample or "sample",
                        counter=1,
                        when=float(doc["time"]),
                    )
                except (KeyError, ValueError, IndexError, OverflowError, OSError) as err:
                    said = str(err)
            if said:
                self._refused_runs.add(uid)
                self._refuse("bad_text", name, "experiment_id, sample or proposal_id", said)
        elif name in ("resource", "stream_resource"):
            if name == "stream_resource":
                field, path = "uri", path_of(str(doc["uri"]))
            else:
                field = "resource_path"
                path = os.path.join(str(doc.get("root") or ""), str(doc["resource_path"]))
            try:
                within(path, self.roots, f"{name} {field}")
            except Refused as err:
                self._dropped.add(str(doc["uid"]))
                self._refuse(err.reason, name, field, str(err))

    def _run_of(self, name: str, doc: Any) -> str | None:
        if name == "start":
            return str(doc["uid"])
        if name in ("stop", "descriptor"):
            return str(doc["run_start"])
        if name in ("resource", "stream_resource") and doc.get("run_start"):
            return str(doc["run_start"])
        if name == "stream_resource":  # event-model 1.24: run_start is optional
            open_runs = [uid for uid, run in self.runs.items() if run.stop is None]
            return open_runs[-1] if len(open_runs) == 1 else None
        parent = {
            "event": "descriptor",
            "stream_datum": "descriptor",
            "datum": "resource",
        }.get(name, "")
        return self._owner.get(str(doc.get(parent, "")))

    def _adopt(self) -> list[str]:
        """Documents that were waiting for the one just added."""
        done: list[str] = []
        waiting, self._orphans = self._orphans, []
        for name, doc, where in waiting:
            done += self.add(name, doc, where)
        return done

    def expired(self, now: float | None = None) -> list[str]:
        """Runs with no stop and no document for ``run_timeout`` seconds."""
        now = time.time() if now is None else now
        return [
            uid
            for uid, run in self.runs.items()
            if run.stop is None and now - run.last_seen >= self.run_timeout
        ]

    # -- files out ---------------------------------------------------------------------------
    def job(self, uid: str, timed_out: bool = False) -> RunJob:
        """Choose the run's file name and say it is being written (a stop in the middle is
        finished at the next start, not done twice)."""
        self.journal.sync()
        run = self.runs[uid]
        if run.start is None:
            raise NoStart(f"run {uid} has no start document: nothing says what it is")
        closed_at = None
        if timed_out:  # at the last document's time
            began = [float(run.start["time"])] if run.start else []
            closed_at = max([*began, *_times(run)], default=time.time())
        intent = self.journal.writing(uid)
        if intent is not None and not self.outbox.find(intent["event_id"]):
            partial_path(Path(intent["final"])).unlink(missing_ok=True)
            intent = None
        if intent is None:
            start = run.start or {}
            when = float(start.get("time", time.time()))
            final, _ = next_path(
                self.config,
                self.data_dir,
                self.file_name,
                experiment_id_of(self.config, start, uid),
                sample_of(start),
                when,
            )
            intent = {"final": str(final), "event_id": uuid.uuid4().hex, "closed_at": closed_at}
            self.journal.begin_write(uid, intent)
        return RunJob(
            self.config,
            str(self.state_dir),
            uid,
            str(intent["final"]),
            str(intent["event_id"]),
            intent.get("closed_at"),
        )

    def finish(self, job: RunJob, tmp: str, event: dict[str, Any], ready: bool) -> Written:
        """The built file: its event in the outbox, then at its final name; the run done."""
        pending = self.outbox.find(job.event_id)
        if pending is None:
            where = self.outbox.put(str(event["experiment_id"]), event, ready)
            pending = Pending(where, str(event["experiment_id"]), event, ready)
        final = Path(job.final_path)
        if not final.exists():
            publish(Path(tmp), final)
        self.journal.done(job.uid, str(final))
        self.runs.pop(job.uid, None)
        self._owner = {k: v for k, v in self._owner.items() if v != job.uid}
        return Written(job.uid, final, pending)

    def resume(self, job: RunJob) -> Written | None:
        """A write a stop interrupted after its event was queued: publish it."""
        pending = self.outbox.find(job.event_id)
        tmp = partial_path(Path(job.final_path))
        if pending is None or not (tmp.exists() or Path(job.final_path).exists()):
            return None
        return self.finish(job, str(tmp), pending.event, pending.ready)

    def write(
        self,
        uid: str,
        timed_out: bool = False,
        ready: bool = True,
    ) -> Written:
        """Write the run's file here and now (the callback's way)."""
        job = self.job(uid, timed_out)
        resumed = self.resume(job)
        if resumed is not None:
            return resumed
        tmp, event = build_run(job)
        return self.finish(job, tmp, event, ready)

    def dead_letter(self, uid: str, reason: str) -> Pending:
        """Close a run that can never be written: its journal kept in the dead-letter
        directory with ``reason.json``, marked done (never tried again, at no restart), and
        its ``file_failed`` event queued in the outbox; returns that event's entry."""
        run = self.runs.pop(uid, None)
        start = (run.start if run is not None else None) or {}
        where = self.state_dir / DEAD_LETTER / uid
        where.parent.mkdir(parents=True, exist_ok=True)
        self.journal.retire(uid, where)
        event = {
            "schema_version": 1,
            "event_type": "file_failed",
            "event_id": uuid.uuid4().hex,
            "origin": "bluesky",
            "beamline": self.config.beamline,
            "run_uid": uid,
            "experiment_id": str(start.get("experiment_id", ""))[:255],
            "reason": reason[:2000],
            "dead_letter": str(where),
            "failed_at": iso(time.time()),
        }
        write_durable(where / "reason.json", json.dumps(event, indent=1).encode())
        self._owner = {k: v for k, v in self._owner.items() if v != uid}
        self.dead += 1
        path = self.outbox.put(self.config.beamline, event, True)
        log.error("run %s: closed as failed (kept in %s): %s", uid, where, reason)
        return Pending(path, self.config.beamline, event, True)

    def close(self) -> None:
        self.journal.close()


def _times(run: Run) -> list[float]:
    return [float(e["time"]) for per in run.events.values() for e in per.values()]
