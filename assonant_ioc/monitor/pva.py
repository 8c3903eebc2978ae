"""PVAccess channels beside the Channel Access ones: p4p's client monitors each ``pva://``
PV and hands every update to the monitor as a raw update, the same five things a CA update
gives (value, timestamp, severity, status, connected), so nothing after the monitor knows
the protocol but by the PV's name.

What a normative type gives, as CA would give it: NTScalar and NTScalarArray their value (a
number, a string, a numpy array), NTEnum its index (as DBR_TIME_ENUM), the server's
timestamp (POSIX seconds; the time of arrival when the server set none, as for CA), the
alarm's severity, and its status as CA's alarm condition when the message names one (a
QSRV IOC says "HIHI", "LOLO"...; else the PVA status code), ``display.units`` as the units.
Callbacks run in p4p's worker thread; no exception escapes into it: it is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from caproto import AlarmStatus

from assonant_ioc.config.protocols import bare

log = logging.getLogger(__name__)

#: CA's alarm conditions (epicsAlarmConditionStrings), by their code
CA_CONDITIONS = tuple(status.name for status in sorted(AlarmStatus, key=int))

#: CA's alarm condition codes, by their names (a PVA or forwarder alarm's message)
CONDITION_CODES = {name: code for code, name in enumerate(CA_CONDITIONS)}

#: (pv, value, POSIX time, severity, status, units or None when the type has none)
Update = Callable[[str, Any, float, int, int, str | None], None]


Decoder = Callable[[Any], tuple[Any, float, int, int, str | None]]


def decoder_for(v: Any) -> Decoder:
    """How to read updates of ``v``'s structure: the fields it has looked up once, each
    update then read by dotted item access (a few microseconds, a third of attribute
    access through the sub-structures)."""
    kind, fields = v.getID(), set(v.keys())
    value_key = "value.index" if "NTEnum" in kind else "value"
    stamped, alarmed = "timeStamp" in fields, "alarm" in fields
    units = "display" in fields and "units" in v["display"].keys()

    def decode(v: Any) -> tuple[Any, float, int, int, str | None]:
        value = v[value_key]
        if value_key == "value.index":
            value = int(value)
        elif hasattr(value, "ndim") and value.ndim == 0:
            value = value.item()
        secs = v["timeStamp.secondsPastEpoch"] if stamped else 0
        t = secs + v["timeStamp.nanoseconds"] * 1e-9 if secs else time.time()
        severity = status = 0
        if alarmed:
            severity, status = v["alarm.severity"], v["alarm.status"]
            message = v["alarm.message"]
            if message in CONDITION_CODES:
                status = CONDITION_CODES[message]
            elif severity == 0:
                status = 0
        return value, t, severity, status, v["display.units"] if units else None

    return decode


def decoded(v: Any) -> tuple[Any, float, int, int, str | None]:
    """(value, time, severity, status, units) of one normative-type update."""
    return decoder_for(v)(v)


#: the updates the client keeps per PV while the callbacks catch up (pvxs' ``queueSize``,
#: 4 by default): a burst that waits for the GIL is then kept, not squashed into one
REQUEST = "record[queueSize=32]"


class Monitors:
    """p4p's thread client monitoring ``self.pvs`` (named ``pva://NAME``), each update to
    ``self._on_update(pv, value)`` in p4p's worker thread."""

    pvs: list[str]
    _ctx: Any
    _subs: list[Any]
    request = REQUEST

    def _on_update(self, pv: str, v: Any) -> None:
        raise NotImplementedError

    def start(self) -> None:
        from p4p.client.thread import Context

        self._ctx = Context("pva", nt=False)
        for pv in self.pvs:
            callback = partial(self._on_update, pv)
            self._subs.append(
                self._ctx.monitor(bare(pv), callback, request=self.request, notify_disconnect=True)
            )

    def stop(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None


class PVAChannels(Monitors):
    """A p4p client context monitoring ``pvs`` (named ``pva://NAME``)."""

    def __init__(
        self,
        pvs: Iterable[str],
        update: Update,
        disconnected: Callable[[str], None],
        failed: Callable[[str, str], None],
    ) -> None:
        self.pvs = list(pvs)
        self._update, self._disconnected, self._failed = update, disconnected, failed
        self._ctx: Any = None
        self._subs: list[Any] = []
        #: the normative type of each PV heard from (``epics:nt/NTScalar:1.0``...)
        self.types: dict[str, str] = {}
        self._decoders: dict[str, Decoder] = {}

    def _on_update(self, pv: str, v: Any) -> None:
        from p4p.client.thread import Disconnected

        try:
            if isinstance(v, Disconnected):
                self._decoders.pop(pv, None)  # the server may come back with another type
                self._disconnected(pv)
            elif isinstance(v, Exception):  # the server refused the monitor, or it ended
                log.warning("PVA monitor of %s: %r", pv, v)
                self._disconnected(pv)
            else:
                decode = self._decoders.get(pv)
                if decode is None or self.types.get(pv) != v.getID():  # new, or a new type
                    self.types[pv] = v.getID()
                    decode = self._decoders[pv] = decoder_for(v)
                self._update(pv, *decode(v))
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("PVA monitor", pv)
