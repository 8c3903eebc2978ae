"""Subscribe to every configured PV with libca (pyepics) and keep the latest reading of each.

Each PV gets two subscriptions once it first connects: DBR_CTRL with the
property mask (units) and DBR_TIME (value, timestamp, alarm). Callbacks run in
libca's threads; they only update a dict under a lock and feed active
recordings, so a snapshot is a dict copy, never a network round trip.
No exception escapes into libca: it is logged and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from assonant_ioc.model.readings import Reading

log = logging.getLogger(__name__)

#: DBR types come in families of 7 (plain, STS, TIME, GR, CTRL); CHAR is 4th in each.
#: A char waveform is presented as a string, as areaDetector's long strings are.
_DBR_FAMILY, _DBR_CHAR = 7, 4


def _type_name(chid: Any) -> str:
    """The native DBR type of a connected channel (``DOUBLE``, ``ENUM``, ``CHAR[256]``...)."""
    from epics import ca, dbr

    try:
        name = str(dbr.Name(ca.field_type(chid))).upper()
        count = int(ca.element_count(chid))
    except Exception:  # noqa: BLE001 - only for display
        return "?"
    return name if count <= 1 else f"{name}[{count}]"


class Sink(Protocol):
    """Something that receives every update of the PVs it wants (a during recording)."""

    def wants(self, pv: str) -> bool: ...

    def add(self, reading: Reading) -> None: ...


class PVMonitor:
    """Keeps the latest :class:`Reading` of each PV and tracks connections."""

    def __init__(self, pvs: Iterable[str]) -> None:
        self.pvs = list(dict.fromkeys(pvs))
        self._lock = threading.Lock()
        self._latest: dict[str, Reading] = {}
        self._units: dict[str, str] = {}
        self._connected: set[str] = set()
        self._types: dict[str, str] = {}
        self._sinks: list[Sink] = []
        self._chids: dict[str, Any] = {}
        self._subscribed: set[str] = set()
        self._subs: list[Any] = []
        self._todo: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.callback_errors = 0
        self.updates = 0

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Create every channel (non-blocking); subscriptions follow each first connection."""
        from epics import ca

        ca.initialize_libca()
        self._worker = threading.Thread(
            target=self._subscribe_loop, name="pv-subscribe", daemon=True
        )
        self._worker.start()
        for pv in self.pvs:
            self._chids[pv] = ca.create_channel(
                pv, connect=False, callback=self._on_connection, auto_cb=False
            )
        ca.poll()

    def stop(self) -> None:
        from epics import ca

        self._todo.put(None)
        if self._worker is not None:
            self._worker.join(timeout=5)
        for sub in self._subs:
            try:
                ca.clear_subscription(sub[2])
            except Exception:
                log.debug("clear_subscription failed", exc_info=True)
        for chid in self._chids.values():
            try:
                ca.clear_channel(chid)
            except Exception:
                log.debug("clear_channel failed", exc_info=True)
        self._subs.clear()
        self._chids.clear()

    # -- what the rest of the service reads ---------------------------------------
    @property
    def connected_count(self) -> int:
        return len(self._connected)

    @property
    def total(self) -> int:
        return len(self.pvs)

    def snapshot(self, pvs: Iterable[str]) -> dict[str, Reading]:
        """The latest reading of each PV; a PV never heard from is a disconnected reading."""
        now = time.time()
        with self._lock:
            return {pv: self._latest.get(pv) or Reading.disconnected(pv, now) for pv in pvs}

    def describe(self, pv: str) -> tuple[bool, str | None, str]:
        """(connected, units or None while not yet known, native DBR type) of one PV."""
        with self._lock:
            return pv in self._connected, self._units.get(pv), self._types.get(pv, "")

    def add_sink(self, sink: Sink, pvs: Iterable[str]) -> None:
        """Start feeding ``sink``; it first gets the latest reading of each of ``pvs``.

        Done under the lock, so no update falls between the first values and the stream.
        """
        now = time.time()
        with self._lock:
            for pv in pvs:
                sink.add(self._latest.get(pv) or Reading.disconnected(pv, now))
            self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    # -- libca callbacks (libca threads) ---------------------------------------------
    def _on_connection(
        self, pvname: str = "", chid: Any = None, conn: bool = False, **_: Any
    ) -> None:
        try:
            now = time.time()
            with self._lock:
                if conn:
                    self._connected.add(pvname)
                    self._types[pvname] = _type_name(chid)
                else:
                    self._connected.discard(pvname)
                    reading = Reading.disconnected(pvname, now, self._latest.get(pvname))
                    self._store(reading)
            if conn and pvname not in self._subscribed:
                self._subscribed.add(pvname)
                self._todo.put(pvname)
            log.debug("%s %s", pvname, "connected" if conn else "disconnected")
        except Exception:
            self.callback_errors += 1
            log.exception("connection callback failed for %s", pvname)

    def _on_ctrl(self, pvname: str = "", **kw: Any) -> None:
        try:
            units = kw.get("units")
            if isinstance(units, bytes):
                units = units.decode(errors="replace")
            with self._lock:
                self._units[pvname] = str(units or "")
        except Exception:
            self.callback_errors += 1
            log.exception("control callback failed for %s", pvname)

    def _on_time(self, pvname: str = "", value: Any = None, **kw: Any) -> None:
        try:
            if (
                int(kw.get("ftype", -1)) % _DBR_FAMILY == _DBR_CHAR
                and getattr(value, "ndim", 0) == 1
            ):
                value = bytes(value.astype("uint8")).split(b"\0", 1)[0].decode(errors="replace")
            with self._lock:
                reading = Reading.of(
                    pvname,
                    value,
                    kw.get("timestamp") or time.time(),
                    units=self._units.get(pvname, ""),
                    severity=kw.get("severity") or 0,
                    status=kw.get("status") or 0,
                )
                self._store(reading)
                self.updates += 1
        except Exception:
            self.callback_errors += 1
            log.exception("monitor callback failed for %s", pvname)

    def _store(self, reading: Reading) -> None:
        """Under the lock: cache the reading and hand it to the recordings that want it."""
        self._latest[reading.source] = reading
        for sink in self._sinks:
            if sink.wants(reading.source):
                sink.add(reading)

    # -- subscriptions (own thread: pyepics may block while creating them) ------------
    def _subscribe_loop(self) -> None:
        from epics import ca, dbr

        ca.use_initial_context()
        while True:
            pv = self._todo.get()
            if pv is None:
                return
            chid = self._chids.get(pv)
            if chid is None:
                continue
            try:
                self._subs.append(
                    ca.create_subscription(
                        chid, use_ctrl=True, mask=dbr.DBE_PROPERTY, callback=self._on_ctrl
                    )
                )
                self._subs.append(
                    ca.create_subscription(
                        chid,
                        use_time=True,
                        mask=dbr.DBE_VALUE | dbr.DBE_ALARM,
                        callback=self._on_time,
                    )
                )
            except Exception:
                self.callback_errors += 1
                self._subscribed.discard(pv)
                log.exception("cannot subscribe to %s", pv)
