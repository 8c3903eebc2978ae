"""The IOC's own PVs over PVAccess beside Channel Access (p4p's server, on the IOC's event
loop): every PV the CA server serves, under the same name, as a normative type (NTScalar,
NTEnum; a string PV as NTScalar string), each CA update posted to PVA with its timestamp
and alarm.

A PVA put goes through the same guarded write as a CA put (``ioc.guard``): the ACF's rules
applied to the PVA peer's host and account, the same refusals, the same message on
LastError and as the put's error, the same audit line (ending ``(pva)``). A put asking for
completion (``record[block=true]``: ``pvput``, p4p's ``put(..., wait=True)``) is answered
when the command is done, or with its refusal; one that does not is answered at once and
the command runs on, a refusal said on LastError only, as a plain ``caput``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
from caproto import (
    AlarmStatus,
    ChannelChar,
    ChannelDouble,
    ChannelEnum,
    ChannelFloat,
    ChannelString,
    ChannelType,
)

from assonant_ioc.ioc.ca_server import NO_WRITE_ACCESS, PUT_FAILED, PUT_NOTIFY
from assonant_ioc.ioc.guard import VIA

log = logging.getLogger(__name__)


def _kind(channel: Any) -> str:
    """``enum``, ``text``, ``float`` or ``int``: what a caproto channel holds."""
    if isinstance(channel, ChannelEnum):
        return "enum"
    if isinstance(channel, (ChannelChar, ChannelString)):
        return "text"
    return "float" if isinstance(channel, (ChannelDouble, ChannelFloat)) else "int"


def _nt(channel: Any) -> tuple[Any, dict[str, Any]]:
    """The normative type of a caproto channel, and its display as p4p posts it."""
    from p4p.nt import NTEnum, NTScalar

    kind = _kind(channel)
    if kind == "enum":
        return NTEnum(), {}
    if kind == "text":
        return NTScalar("s"), {}
    units = str(getattr(channel, "units", "") or "")
    return NTScalar("d" if kind == "float" else "i", display=True), {"display.units": units}


def _posted(channel: Any) -> dict[str, Any]:
    """What one CA value of ``channel`` is, posted over PVA: value, timestamp, alarm."""
    value = channel.value
    if _kind(channel) == "enum":
        strings = list(channel.enum_strings)
        index = strings.index(value) if value in strings else 0
        posted: dict[str, Any] = {"value.index": index, "value.choices": strings}
    elif isinstance(value, (bytes, bytearray)):
        posted = {"value": bytes(value).split(b"\0", 1)[0].decode(errors="replace")}
    elif isinstance(value, (list, tuple, np.ndarray)):
        posted = {"value": value[0] if len(value) else 0}
    else:
        posted = {"value": value}
    stamp = float(channel.timestamp or 0.0)
    secs = int(stamp)
    severity, status = int(channel.alarm.severity), int(channel.alarm.status)
    return posted | {
        "timeStamp.secondsPastEpoch": secs,
        "timeStamp.nanoseconds": int((stamp - secs) * 1e9),
        "alarm.severity": severity,
        "alarm.status": 0 if severity == 0 else 3,  # RECORD, as QSRV says a record's alarm
        "alarm.message": AlarmStatus(status).name if severity else "",
    }


def _as_ca(channel: Any, value: Any) -> tuple[Any, ChannelType]:
    """A PVA put's value as a CA client sends it to ``channel`` (data, DBR type)."""
    raw = getattr(value, "raw", value)  # an unwrapped NT value keeps its structure
    if hasattr(raw, "getID"):
        value = raw["value.index"] if "NTEnum" in raw.getID() else raw["value"]
    kind = _kind(channel)
    if kind == "text":
        text = str(value).encode()
        return np.frombuffer(text + b"\0", dtype=np.uint8), ChannelType.CHAR
    if isinstance(value, float) and (kind == "float" or value % 1):
        return [float(value)], ChannelType.DOUBLE  # 1.5 to a command: refused as CA's is
    return [int(value)], ChannelType.LONG


def _wants_completion(op: Any) -> bool:
    """Whether the put asked to be answered when done (``record[block=true]``)."""
    try:
        request = op.pvRequest()
        return bool(request["record._options.block"] in (True, "true", 1, "1"))
    except Exception:  # noqa: BLE001 - no such option: a plain put
        return False


class PVAServer:
    """The IOC's PVs (``pvdb``: full name -> caproto channel) served over PVA; ``last_error``
    gives the IOC's LastError text (a refusal's message)."""

    def __init__(self, pvdb: dict[str, Any], last_error: Any, read_only: set[str]) -> None:
        self.pvdb = pvdb
        self.last_error = last_error
        self.read_only = read_only
        self._pvs: dict[str, Any] = {}
        self._server: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Serve every PV (on the running event loop) as the environment's ``EPICS_PVAS_*``
        say; each CA update of a PV is posted over PVA from now on."""
        from p4p.server import Server
        from p4p.server.asyncio import SharedPV

        for name, channel in self.pvdb.items():
            nt, extra = _nt(channel)
            shared = SharedPV(nt=nt, initial=_posted(channel) | extra, handler=_Handler(self, name))
            self._pvs[name] = shared
            self._mirror(channel, shared)
        self._server = Server(providers=[self._pvs])
        log.info("PVAccess: %d PVs served", len(self._pvs))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _mirror(self, channel: Any, shared: Any) -> None:
        original = channel.publish

        async def publish(flags: Any) -> None:
            await original(flags)
            try:
                shared.post(_posted(channel))
            except Exception:
                log.exception("PVA post of %s failed", channel)

        channel.publish = publish

    async def put(self, name: str, op: Any) -> None:
        """A PVA put: the guarded CA write, answered as the client asked."""
        channel = self.pvdb[name]
        host, user = str(op.peer()).rsplit(":", 1)[0], str(op.account())
        short = name.split(":")[-1]
        if name in self.read_only:
            log.info("audit: %s@%s wrote %s: refused (read-only) (pva)", user, host, short)
            op.done(error=f"{short} is read-only")
            return
        try:
            data, dtype = _as_ca(channel, op.value())
        except (TypeError, ValueError) as err:
            op.done(error=f"{short} refused: {err}")
            return
        if not _wants_completion(op):
            op.done()  # answered now; the command runs on (a refusal on LastError)
            task = asyncio.ensure_future(self._write(channel, host, user, data, dtype))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        said = await self._write(channel, host, user, data, dtype)
        op.done(error=said) if said else op.done()

    async def _write(self, channel: Any, host: str, user: str, data: Any, dtype: Any) -> str:
        """The guarded write; the refusal's message ("" when done)."""
        notify, via = PUT_NOTIFY.set(True), VIA.set(" (pva)")
        try:
            result = await channel.auth_write(host, user, data, dtype, None)
        except Exception as err:  # noqa: BLE001 - said on LastError by the guard
            return str(self.last_error()) or f"{type(err).__name__}: {err}"
        finally:
            PUT_NOTIFY.reset(notify)
            VIA.reset(via)
        if result in (NO_WRITE_ACCESS, PUT_FAILED):
            return str(self.last_error()) or "refused"
        return ""


class _Handler:
    def __init__(self, server: PVAServer, name: str) -> None:
        self.server, self.name = server, name

    async def put(self, pv: Any, op: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.server.put(self.name, op)
