"""Runs in, files out: documents are checked, kept once, journaled, routed to their run;
a run's stop (or its timeout) writes its file through the shared build and outbox.

:class:`RunWriter` is synchronous and shared by both ways in: the callback in the
RunEngine's process and the Kafka consumer (which runs the build in a worker process).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.documents.build import RunJob, build_run
from assonant_ioc.documents.journal import RunJournal
from assonant_ioc.documents.mapping import experiment_id_of, sample_of
from assonant_ioc.documents.run import (
    MalformedDocument,
    Run,
    check,
    datum_page_datums,
    event_page_events,
)
from assonant_ioc.lifecycle.experiment import next_path
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.nexus.writer import partial_path, publish

log = logging.getLogger(__name__)

#: A run with no document for this long (seconds) and no stop is closed (ended_by: timeout).
RUN_TIMEOUT_S = 3600.0


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
        if name == "event_page":
            done = []
            for event in event_page_events(doc):
                done += self.add("event", event, where)
            return done  # last_run: that of its events
        if name == "datum_page":
            for datum in datum_page_datums(doc):
                self.add("datum", datum, where)
            return []
        run_uid = self._run_of(name, doc)
        if run_uid is None:
            self._orphans.append((name, dict(doc), where))
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

    def close(self) -> None:
        self.journal.close()


def _times(run: Run) -> list[float]:
    return [float(e["time"]) for per in run.events.values() for e in per.values()]
