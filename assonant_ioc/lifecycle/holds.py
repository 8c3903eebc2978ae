"""A test's stop at a named point of the service, to kill it there and not by chance.

With ``ASSONANT_TEST_HOLD=point:marker`` in its environment the service makes the marker
file when it reaches ``point`` and waits there until it is killed. The points:
``built`` (the file whole under its partial name), ``queued`` (its event in the outbox
too), ``published`` (the file at its final name), ``sent`` (an event acknowledged by the
broker, not yet removed from the outbox); in the worker process, ``staged`` (a round of
the recording's staging written, not yet flushed: the staging file half written).
Unset (always, outside the tests), nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _reached(point: str) -> bool:
    """Whether a test holds the service at ``point`` (its marker file then made)."""
    name, _, marker = os.environ.get("ASSONANT_TEST_HOLD", "").partition(":")
    if name != point:
        return False
    log.warning("held at %s for a test (ASSONANT_TEST_HOLD)", point)
    Path(marker).touch()
    return True


async def held(point: str) -> None:
    while _reached(point):
        await asyncio.sleep(3600)


def held_sync(point: str) -> None:
    """``held`` in a process without an event loop (the worker)."""
    while _reached(point):
        time.sleep(3600)
