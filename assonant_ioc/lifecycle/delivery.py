"""Delivery of the outbox's events: validation fills each one in, then they go to the broker
in order, each leaving the disk only once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.errors import SendFailed
from assonant_ioc.lifecycle import build as worker
from assonant_ioc.lifecycle.holds import held
from assonant_ioc.lifecycle.outbox import Outbox, Pending
from assonant_ioc.lifecycle.reporter import Reporter

log = logging.getLogger(__name__)

#: How often undelivered events are tried again while the broker does not answer.
RETRY_S = 5.0


class Sender(Protocol):
    connected: bool

    async def probe(self) -> bool: ...

    async def send(self, key: str, event: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class Delivery:
    """The outbox's events, validated (``validate``: the file's NeXus check, run by
    ``in_validator`` in the worker) then sent by ``sender`` (None: kept on disk); what happens
    is said to ``reporter``."""

    outbox: Outbox
    reporter: Reporter
    sender: Sender | None
    validate: bool
    in_validator: Callable[..., Awaitable[Any]]
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _validating: set[str] = field(default_factory=set, init=False)

    def wake(self) -> None:
        """An event is ready: look at the outbox now."""
        self._wake.set()

    async def validate_and_release(self, pending: Pending) -> None:
        """Validate the file (never fatal), put the result in the event, release it."""
        if pending.event_id in self._validating:
            return
        self._validating.add(pending.event_id)
        event = dict(pending.event)
        path = str(event["file_path"])
        try:
            if self.validate and Path(path).exists():
                try:
                    summary, result = await self.in_validator(worker.validate_file, path)
                    event["validation"] = result
                    await self.reporter.validated(f"{Path(path).name}: {summary}")
                    log.info("%s: %s", path, summary)
                except Exception as err:  # a validator's failure never loses the file or event
                    log.exception("validation of %s failed", path)
                    await self.reporter.error(f"{Path(path).name}: validation failed: {err}")
            await asyncio.to_thread(self.outbox.update, pending.path, pending.key, event, True)
        finally:
            self._validating.discard(pending.event_id)
        self.wake()

    async def run(self) -> None:
        """Send the outbox's events in order; each leaves the disk once acknowledged."""
        assert self.sender is not None
        failing = False
        while True:
            self._wake.clear()  # a wake-up from here on is seen by the wait below
            try:
                first = self.outbox.first()  # from memory: no file read
                if first is not None and first.ready:
                    await self.sender.send(first.key, first.event)
                    await held("sent")
                    await asyncio.to_thread(self.outbox.remove, first)
                    failing = False
                    await self.reporter.say(
                        f"{first.key}: event sent for "
                        f"{first.event.get('file_path') or first.event.get('run_uid')}"
                    )
                    continue
                if first is None:  # nothing to send: is the broker (still) there?
                    await self.sender.probe()
            except SendFailed as err:
                if not failing:
                    await self.reporter.error(
                        f"{err}; {len(self.outbox)} event(s) kept on disk, will be sent again "
                        "when the broker answers"
                    )
                failing = True
            except Exception as err:
                log.exception("event delivery")
                await self.reporter.error(f"event delivery: {type(err).__name__}: {err}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETRY_S)


def sender_for(config: BeamlineConfig, bootstrap: str | None = None, secure: Any = None) -> Any:
    """The sender of a beamline's events as its config says (its broker unless
    ``bootstrap``; idempotence; the ``wrdn`` after each file when run control is on)."""
    from assonant_ioc.events.kafka import EventSender

    return EventSender(
        bootstrap or config.kafka.bootstrap or "",
        config.kafka.topic,
        idempotent=config.kafka.idempotent,
        secure=secure,
        wrdn_topic=config.run_control.status_topic,
        service_id=config.run_control.service_id or config.beamline,
    )
