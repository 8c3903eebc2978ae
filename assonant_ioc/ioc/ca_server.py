"""The Channel Access server under the IOC: caproto's asyncio server, run as EPICS servers run.

- A refused put with callback (``caput -c``, ``ca_put_callback``, caproto's
  ``write(wait=True)``, aioca's ``caput(wait=True)``) completes with a failure status in its
  write-notify reply, as rsrv does, so every client reports a failed put and none is left
  waiting. caproto answers a refusal with an error message instead, which libca reports but
  caproto's own client never matches to the put. A plain put still gets the error message.
- ``EPICS_CAS_SERVER_PORT`` places the server when it is set, as rsrv and pcaspy do.
- Each log line once, one format; a beacon that cannot be sent is one line a minute, without
  a traceback; a refused write is logged by the IOC, not again with caproto's traceback.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import time
from typing import Any

import caproto as ca
from caproto.asyncio.server import Context, VirtualCircuit

#: Whether the write being handled asked for a completion reply (a put with callback).
PUT_NOTIFY: contextvars.ContextVar[bool] = contextvars.ContextVar("put_notify", default=False)
#: The put-callback status of a refused write, and of a write denied by access security.
PUT_FAILED = ca.CAStatus.ECA_PUTFAIL
NO_WRITE_ACCESS = ca.CAStatus.ECA_NOWTACCESS


class _Circuit(VirtualCircuit):
    """caproto's circuit, telling the write it starts whether the client waits for a reply
    (the write runs in its own task, which inherits this context)."""

    async def _process_command(self, command: Any) -> Any:
        token = PUT_NOTIFY.set(isinstance(command, ca.WriteNotifyRequest))
        try:
            return await super()._process_command(command)
        finally:
            PUT_NOTIFY.reset(token)


class _Context(Context):
    CircuitClass = _Circuit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _CONTEXTS.append(self)


#: The running server (one per process), for pushing new access rights.
_CONTEXTS: list[_Context] = []


def client_count() -> int:
    """Channel Access clients connected now (devIocStats' CA_CLNT_CNT)."""
    return sum(len(context.circuits) for context in _CONTEXTS)


async def push_access_rights(pvdb: dict[str, Any]) -> int:
    """Send every open channel its client's rights now (an access security reload), as rsrv
    does; returns how many channels were told. libca and caproto's client update the rights
    they show (``cainfo``) and act on them."""
    told = 0
    for context in _CONTEXTS:
        for circuit in list(context.circuits):
            host, user = circuit.client_hostname, circuit.client_username
            for channel in list(circuit.circuit.channels.values()):
                entry = pvdb.get(channel.name)
                if entry is None:
                    continue
                rights = entry.check_access(host, user)
                try:
                    await circuit.send(
                        ca.AccessRightsResponse(cid=channel.cid, access_rights=rights)
                    )
                    told += 1
                except Exception as err:  # noqa: BLE001 - a circuit closing meanwhile
                    logging.getLogger(__name__).debug("rights not sent to %s: %s", host, err)
    return told


def serve(pvdb: dict[str, Any], interfaces: list[str] | None, log_pv_names: bool = False) -> None:
    """Run the server until SIGTERM or SIGINT (caproto's ``run``, with the circuit above).

    SIGTERM cancels the server, whose shutdown hooks then run and say what is left pending;
    it is handled on its own, not mapped to SIGINT, which a process started in the
    background by a shell inherits as ignored."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await _Context(pvdb, interfaces).run(log_pv_names=log_pv_names)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


class _QuietCaproto(logging.Filter):
    """A beacon that cannot be sent (no listener on the beacon port is usual on loopback):
    one line a minute per address, without caproto's traceback. A refused write: the IOC
    has said why on LastError and in the log; caproto's line keeps no traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Invalid write request"):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return True
        if not message.startswith("Failed to send beacon"):
            return True
        where = str(record.args)
        now = time.monotonic()
        if now - self._last.get(where, -3600.0) < 60.0:
            return False
        self._last[where] = now
        record.exc_info = record.exc_text = None
        return True


def one_log() -> None:
    """Each log line once: caproto's own handlers go (the root handler prints its records)."""
    for name in ("caproto", "caproto.ctx", "caproto.circ"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietCaproto())


_CLIENT_PORT: list[str | None] = []


def server_port_from_cas() -> None:
    """Listen on ``EPICS_CAS_SERVER_PORT`` when it is set, as rsrv and pcaspy do.

    caproto's server reads ``EPICS_CA_SERVER_PORT`` once, when it starts; libca, started
    after it, reads the same variable as the port it searches by default. The server's
    value is put there for caproto, and the client's put back (``restore_client_port``)
    before libca starts.
    """
    cas = os.environ.get("EPICS_CAS_SERVER_PORT")
    if cas:
        _CLIENT_PORT.append(os.environ.get("EPICS_CA_SERVER_PORT"))
        os.environ["EPICS_CA_SERVER_PORT"] = cas


def restore_client_port() -> None:
    if _CLIENT_PORT:
        client = _CLIENT_PORT.pop()
        if client is None:
            os.environ.pop("EPICS_CA_SERVER_PORT", None)
        else:
            os.environ["EPICS_CA_SERVER_PORT"] = client
