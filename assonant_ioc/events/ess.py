"""The ESS streaming stack's run-control messages (FlatBuffers, ``ess-streaming-data-types``):
what the service answers and says, and how a command it receives is read.

- ``answ``: the answer to a ``pl72`` start or a ``6s4t`` stop (accepted or refused, why);
- ``x5f2``: the service's status every few seconds (the job, the file, start and stop);
- ``wrdn``: a file is finished (its name, an error flag and message, our ``file_written``
  event as its metadata); ESS's SciCat ingestor takes this and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Any

from assonant_ioc import __version__

SOFTWARE = "assonant-ioc"


def wrdn(
    service_id: str, job_id: str, file_name: str, event: dict[str, Any] | None, error: str = ""
) -> bytes:
    """A ``wrdn``: ``file_name`` finished (or, with ``error``, the job failed)."""
    from streaming_data_types.finished_writing_wrdn import serialise_wrdn

    metadata = json.dumps(event) if event is not None else None
    return bytes(
        serialise_wrdn(service_id, job_id, bool(error), file_name, metadata, error or None)
    )


def wrdn_of_event(service_id: str, event: dict[str, Any]) -> bytes | None:
    """The ``wrdn`` of a ``file_written`` event (None for any other event): its job is the
    run-control job that made it, else its experiment."""
    if event.get("event_type") != "file_written":
        return None
    job = str(event.get("job_id") or event.get("experiment_id") or "")
    return wrdn(service_id, job, str(event.get("file_path", "")), event)


def answ(
    service_id: str,
    job_id: str,
    command_id: str,
    start: bool,
    ok: bool,
    message: str,
    stop_time_ms: int = 0,
) -> bytes:
    """An ``answ`` to a start (``start``) or a stop, accepted (``ok``) or refused."""
    from streaming_data_types.action_response_answ import serialise_answ
    from streaming_data_types.fbschemas.action_response_answ.ActionOutcome import (
        ActionOutcome,
    )
    from streaming_data_types.fbschemas.action_response_answ.ActionType import ActionType

    return bytes(
        serialise_answ(
            service_id,
            job_id,
            command_id,
            ActionType.StartJob if start else ActionType.SetStopTime,
            ActionOutcome.Success if ok else ActionOutcome.Failure,
            message,
            0 if ok else 1,
            datetime.fromtimestamp(stop_time_ms / 1000, tz=timezone.utc),
        )
    )


def x5f2(service_id: str, every_s: float, status: dict[str, Any]) -> bytes:
    """An ``x5f2`` status: ``status`` as its JSON."""
    from streaming_data_types.status_x5f2 import serialise_x5f2

    return bytes(
        serialise_x5f2(
            SOFTWARE,
            __version__,
            service_id,
            socket.gethostname(),
            os.getpid(),
            int(every_s * 1000),
            json.dumps(status),
        )
    )


def command(payload: bytes) -> tuple[str, Any]:
    """(its schema id, the decoded message) of a command: ``pl72`` or ``6s4t``; anything
    else is refused with ValueError naming what it was."""
    from streaming_data_types.run_start_pl72 import deserialise_pl72
    from streaming_data_types.run_stop_6s4t import deserialise_6s4t

    kind = payload[4:8].decode("ascii", errors="replace") if len(payload) >= 8 else ""
    if kind == "pl72":
        return kind, deserialise_pl72(payload)
    if kind == "6s4t":
        return kind, deserialise_6s4t(payload)
    raise ValueError(f"not a run-control command (schema {kind!r}, {len(payload)} bytes)")
