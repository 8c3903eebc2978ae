"""In process: a RunEngine callback that writes each run's file when the run stops.

::

    from bluesky import RunEngine
    from assonant_ioc.documents.callback import NexusCallback

    RE = RunEngine()
    RE.subscribe(NexusCallback("sim_tomo", data_dir="/data/proposal-42"))

Each document is journaled as it arrives (durable at least every ``journal_flush_s``), so
a run interrupted by a crash is recovered by the next callback made on the same state
directory. A failed write never raises into the RunEngine: it is logged, the run stays in
the journal, and the next callback (or the next run's stop) writes it again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from assonant_ioc.config.loader import load_config
from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.documents.run import MalformedDocument
from assonant_ioc.documents.writer import RUN_TIMEOUT_S, RunWriter, Written, retried

log = logging.getLogger(__name__)


def default_state_dir(config: BeamlineConfig) -> Path:
    base = Path.home() / ".local" / "state" / "assonant-ioc"
    return Path(config.state_dir) if config.state_dir else base / f"bluesky-{config.beamline}"


class NexusCallback:
    def __init__(
        self,
        config: str | Path | BeamlineConfig,
        state_dir: str | Path | None = None,
        data_dir: str = "",
        file_name: str = "",
        run_timeout: float = RUN_TIMEOUT_S,
        send: bool = True,
    ) -> None:
        self.config = config if isinstance(config, BeamlineConfig) else load_config(config)
        state = Path(state_dir) if state_dir else default_state_dir(self.config)
        state.mkdir(parents=True, exist_ok=True)
        self.writer = RunWriter(self.config, state, data_dir, file_name, run_timeout)
        self.send = send
        self.written: list[Written] = []
        self.last_error = ""
        for uid in self.writer.recover():
            self._write(uid)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        try:
            done = self.writer.add(name, doc)
        except MalformedDocument as err:
            log.error("document not taken: %s", err)
            return
        for uid in self.writer.expired():
            self._write(uid, timed_out=True)
        for uid in done:
            self._write(uid)

    def _write(self, uid: str, timed_out: bool = False) -> None:
        try:
            written = self.writer.write(uid, timed_out, ready=not self.config.validate)
        except Exception as err:  # kept in the journal: written again by the next callback
            self.last_error = f"run {uid}: {type(err).__name__}: {err}"
            if retried(err):
                log.exception("run %s: file not written (kept in %s)", uid, self.writer.journal.dir)
            else:  # the same failure at every try: closed as failed, never tried again
                self.writer.dead_letter(uid, f"{type(err).__name__}: {err}")
            return
        self.written.append(written)
        log.info("run %s: wrote %s", uid, written.path)
        if self.config.validate:
            self._validate(written)
        kafka = self.config.kafka
        if self.send and kafka.enabled and kafka.bootstrap:
            # the RunEngine calls this from its own event loop: the delivery gets one of its
            # own, in a thread
            failed: list[BaseException] = []
            thread = threading.Thread(target=lambda: self._deliver_now(failed))
            thread.start()
            thread.join()
            if failed:  # the event stays in the outbox, sent after the next run
                log.error("event for %s not sent (kept in the outbox): %s", written.path, failed[0])

    def _deliver_now(self, failed: list[BaseException]) -> None:
        try:
            asyncio.run(self._deliver())
        except Exception as err:  # noqa: BLE001 - told by the caller
            failed.append(err)

    def _validate(self, written: Written) -> None:
        from assonant_ioc.lifecycle.build import validate_file

        event = dict(written.pending.event)
        try:
            summary, result = validate_file(str(written.path))
            event["validation"] = result
            log.info("%s: %s", written.path, summary)
        except Exception:
            log.exception("validation of %s failed", written.path)
        self.writer.outbox.update(written.pending.path, written.pending.key, event, True)

    async def _deliver(self) -> None:
        from assonant_ioc.lifecycle.delivery import sender_for

        kafka = self.config.kafka
        assert kafka.bootstrap is not None
        sender = sender_for(self.config, kafka.bootstrap)
        try:
            for pending in self.writer.outbox.pending():
                if not pending.ready:
                    break
                await sender.send(pending.key, pending.event)
                self.writer.outbox.remove(pending)
        finally:
            await sender.close()

    def close(self) -> None:
        self.writer.close()
