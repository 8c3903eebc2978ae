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

from assonant_ioc.config.protocols import bare

log = logging.getLogger(__name__)

#: CA's alarm conditions (epicsAlarmConditionStrings), by their code
CA_CONDITIONS = (
    "NO_ALARM", "READ", "WRITE", "HIHI", "HIGH", "LOLO", "LOW", "STATE", "COS", "COMM",
    "TIMEOUT", "HWLIMIT", "CALC", "SCAN", "LINK", "SOFT", "BAD_SUB", "UDF", "DISABLE", "SIMM",
    "READ_ACCESS", "WRITE_ACCESS",
)  # fmt: skip

#: (pv, value, POSIX time, severity, status, units or None when the type has none)
Update = Callable[[str, Any, float, int, int, str | None], None]


def decoded(v: Any) -> tuple[Any, float, int, int, str | None]:
    """(value, time, severity, status, units) of one normative-type update."""
    kind = v.getID()
    if "NTEnum" in kind:
        value: Any = int(v.value.index)
    else:
        value = v.value
        if hasattr(value, "tolist") and getattr(value, "ndim", 1) == 0:
            value = value.item()
    stamp = v.get("timeStamp")
    secs = int(stamp.secondsPastEpoch) if stamp is not None else 0
    t = secs + int(stamp.nanoseconds) * 1e-9 if secs else time.time()
    alarm = v.get("alarm")
    severity, status = (int(alarm.severity), int(alarm.status)) if alarm is not None else (0, 0)
    message = str(alarm.message) if alarm is not None else ""
    if message in CA_CONDITIONS:
        status = CA_CONDITIONS.index(message)
    elif severity == 0:
        status = 0
    display = v.get("display")
    units = str(display.units) if display is not None and "units" in display else None
    return value, t, severity, status, units


class PVAChannels:
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

    def start(self) -> None:
        from p4p.client.thread import Context

        self._ctx = Context("pva", nt=False)
        for pv in self.pvs:
            callback = partial(self._on_update, pv)
            self._subs.append(self._ctx.monitor(bare(pv), callback, notify_disconnect=True))

    def stop(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def _on_update(self, pv: str, v: Any) -> None:
        from p4p.client.thread import Disconnected

        try:
            if isinstance(v, Disconnected):
                self._disconnected(pv)
            elif isinstance(v, Exception):  # the server refused the monitor, or it ended
                log.warning("PVA monitor of %s: %r", pv, v)
                self._disconnected(pv)
            else:
                self.types[pv] = v.getID()
                self._update(pv, *decoded(v))
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("PVA monitor", pv)
