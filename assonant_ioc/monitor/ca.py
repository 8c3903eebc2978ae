"""Subscribe to every configured PV with libca (pyepics) and keep the latest reading of each.

Each PV gets two subscriptions once it first connects: DBR_CTRL with the
property mask (units) and DBR_TIME (value, timestamp, alarm). Callbacks run in
libca's threads; they only update a dict under a lock and feed active
recordings, so a snapshot is a dict copy, never a network round trip.
No exception escapes into libca: it is logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from assonant_ioc.config.protocols import protocol_of
from assonant_ioc.model.readings import UDF_ALARM, Raw, RawSnapshot
from assonant_ioc.model.source import FrameSink, Sink
from assonant_ioc.model.times import EPICS_EPOCH
from assonant_ioc.monitor.columns import LatestColumns
from assonant_ioc.monitor.forwarder import ForwarderStream
from assonant_ioc.monitor.history import History
from assonant_ioc.monitor.ndarray import ArrayStreams
from assonant_ioc.monitor.pva import PVAChannels

log = logging.getLogger(__name__)

#: DBR types come in families of 7 (plain, STS, TIME, GR, CTRL); CHAR is 4th in each.
#: A char waveform is presented as a string, as areaDetector's long strings are.
_DBR_FAMILY, _DBR_CHAR = 7, 4


#: Quiet time that closes a batch of new connections to subscribe.
SETTLE_S = 0.02
#: DBR_TIME types whose single value ctypes already gives as a Python number.
_FAST_TYPES = {15, 16, 17, 19, 20}  # TIME_SHORT, TIME_FLOAT, TIME_ENUM, TIME_LONG, TIME_DOUBLE


def _chid_key(chid: Any) -> int:
    return int(chid if isinstance(chid, int) else chid.value)


def _type_name(chid: Any) -> str:
    """The native DBR type of a connected channel (``DOUBLE``, ``ENUM``, ``CHAR[256]``...)."""
    from epics import ca, dbr

    try:
        name = str(dbr.Name(ca.field_type(chid))).upper()
        count = int(ca.element_count(chid))
    except Exception:  # noqa: BLE001 - only for display
        return "?"
    return name if count <= 1 else f"{name}[{count}]"


class PVMonitor:
    """Keeps the latest update of each PV (raw, no object per update) and tracks connections."""

    def __init__(
        self,
        pvs: Iterable[str],
        arrays: Iterable[str] = (),
        forwarder: tuple[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.pvs = list(dict.fromkeys(pvs))
        #: cameras' frames over PVA (NTNDArray), each frame to a frame sink, none kept
        self.arrays = ArrayStreams(arrays, self._failed)
        self._lock = threading.Lock()
        self._latest: dict[str, Raw] = {}
        self._last_value: dict[str, Any] = {}  # the last connected value: a disconnected
        # reading keeps its dtype and shape
        self._units: dict[str, str] = {}
        #: the units as the last snapshot took them, for its layout (shared, never changed)
        self._units_taken: tuple[Any, dict[str, str]] = (None, {})
        self._columns = LatestColumns(self.pvs)  # the same updates, as the journal's columns
        self._connected: set[str] = set()
        self._sinks: list[Sink] = []
        self._chids: dict[str, Any] = {}
        self._names: dict[int, str] = {}
        self._subscribed: set[str] = set()
        self._subs: list[Any] = []
        self._todo: deque[str] = deque()  # connected, not yet subscribed (append is atomic)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        #: the ``pva://`` PVs, read by p4p (the rest by libca)
        self._pva: PVAChannels | None = None
        #: the ``kafka://`` sources, read from a forwarder's topics: (broker, topics)
        self._forwarder_at = forwarder
        self._forwarder: ForwarderStream | None = None
        #: the last seconds of the recorded PVs' updates (``record: {before_start_s}``)
        self._history: History | None = None
        self.callback_errors = 0
        self.updates = 0

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Create every channel (non-blocking); subscriptions follow each first connection."""
        from epics import ca

        from assonant_ioc.monitor.repeater import repeater_on_path

        repeater_on_path()  # libca starts a repeater when none runs; it must find one
        ca.initialize_libca()
        self._worker = threading.Thread(
            target=self._subscribe_loop, name="pv-subscribe", daemon=True
        )
        self._worker.start()
        pva = [pv for pv in self.pvs if protocol_of(pv) == "pva"]
        if pva:
            self._pva = PVAChannels(pva, self._on_pva, self._on_pva_lost, self._failed)
        sources = [pv for pv in self.pvs if protocol_of(pv) == "kafka"]
        if sources and self._forwarder_at is not None:
            bootstrap, topics = self._forwarder_at
            self._forwarder = ForwarderStream(
                bootstrap, topics, sources, self._on_pva, self._on_pva_lost
            )
        for pv in self.pvs:
            if protocol_of(pv) != "ca":
                continue
            chid = ca.create_channel(pv, connect=False, callback=self._on_connection, auto_cb=False)
            self._chids[pv] = chid
            self._names[_chid_key(chid)] = pv
        ca.poll()
        if self._pva is not None:
            self._pva.start()
        if self.arrays.pvs:
            self.arrays.start()
        if self._forwarder is not None:
            self._forwarder.start()

    def stop(self) -> None:
        from epics import ca

        if self._pva is not None:
            self._pva.stop()
        self.arrays.stop()
        if self._forwarder is not None:
            self._forwarder.stop()
        self._stopping.set()
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

    def snapshot(self) -> RawSnapshot:
        """The latest update of every PV heard from (PVs never heard from are absent), as the
        journal's columns, taken under the lock: no reading built, no per-PV object copied
        (the raw updates are left out: the columns hold them), the units copied once per
        layout (a unit that changes changes the layout)."""
        with self._lock:
            columns = self._columns.take(self._latest, id(self))
            if self._units_taken[0] != columns.layout:
                self._units_taken = (columns.layout, dict(self._units))
            units = self._units_taken[1]
            last = {pv: self._last_value.get(pv) for pv in self._columns.disconnected()}
        last = {pv: v for pv, v in last.items() if v is not None}
        return RawSnapshot({}, units, last, columns)

    def units_of(self, pv: str) -> str:
        return self._units.get(pv, "")

    @property
    def heard_count(self) -> int:
        """PVs connected whose first value has arrived."""
        with self._lock:
            return sum(1 for pv in self._connected if pv in self._latest)

    def wait_first_values(self, timeout: float) -> tuple[int, int]:
        """Block until every PV is connected with its first value, or ``timeout`` has passed
        (then until every connected PV has its first value, a few seconds at most).
        Returns (PVs with a value, PVs in all)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = sum(1 for pv in self.pvs if pv in self._latest and pv in self._connected)
            if done == len(self.pvs):
                return done, len(self.pvs)
            time.sleep(0.05)
        settle = time.monotonic() + 5.0
        while time.monotonic() < settle:
            with self._lock:
                waiting = [pv for pv in self._connected if pv not in self._latest]
            if not waiting:
                break
            time.sleep(0.05)
        return self.heard_count, len(self.pvs)

    def describe(self, pv: str) -> tuple[bool, str | None, str]:
        """(connected, units or None while not yet known, native DBR type) of one PV."""
        with self._lock:
            connected, units = pv in self._connected, self._units.get(pv)
        if self._pva is not None and pv in self._pva.types:
            return connected, units, self._pva.types[pv] if connected else ""
        chid = self._chids.get(pv)
        return connected, units, _type_name(chid) if connected and chid is not None else ""

    def keep_history(self, pvs: Iterable[str], seconds: float, capacity: int) -> None:
        """From now on keep the last ``seconds`` of ``pvs``' updates (at most ``capacity``),
        for a sink that starts with them (``add_sink(since=...)``)."""
        with self._lock:
            self._history = History(list(dict.fromkeys(pvs)), seconds, capacity)

    def add_sink(self, sink: Sink, pvs: Iterable[str], since: float | None = None) -> None:
        """Start feeding ``sink``; it first gets the latest update of each of ``pvs`` (with
        ``since``: every update kept since then, and the latest of the others).

        A PV not connected gets a disconnected point; a PV connected whose first value is
        still in flight gets nothing invented: its first value comes through the stream.
        Done under the lock, so no update falls between the first values and the stream.
        """
        now = time.time()
        with self._lock:
            fed: set[str] = set()
            if since is not None and self._history is not None:
                wanted = set(pvs)
                for update in self._history.since(since):
                    if update[0] in wanted:
                        sink.add(*update)
                        fed.add(update[0])
            for pv in pvs:
                if pv in fed:
                    continue
                raw = self._latest.get(pv)
                if raw is not None:
                    sink.add(pv, *raw)
                elif pv not in self._connected:
                    sink.add(pv, None, now, 3, UDF_ALARM, False)
            self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def add_frame_sink(self, sink: FrameSink, pv: str) -> None:
        """From now on, ``sink`` takes every frame of the NTNDArray ``pv``."""
        self.arrays.add_sink(sink, [pv])

    def remove_frame_sink(self, sink: FrameSink) -> None:
        self.arrays.remove_sink(sink)

    # -- libca callbacks (libca threads) ---------------------------------------------
    def _on_connection(
        self, pvname: str = "", chid: Any = None, conn: bool = False, **_: Any
    ) -> None:
        try:
            now = time.time()
            with self._lock:
                if conn:
                    self._connected.add(pvname)
                else:
                    self._connected.discard(pvname)
                    self._store(pvname, (None, now, 3, UDF_ALARM, False))
            if conn and pvname not in self._subscribed:
                self._subscribed.add(pvname)
                self._todo.append(pvname)
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("connection", pvname)

    def _on_ctrl(self, args: Any) -> None:
        """DBR_CTRL event (property changes): keep the units."""
        from epics import dbr

        pvname = self._names.get(_chid_key(args.chid), "")
        try:
            units = getattr(dbr.cast_args(args)[0], "units", b"") or ""
            if isinstance(units, bytes):
                units = units.decode(errors="replace")
            with self._lock:
                if self._units.get(pvname) != str(units):
                    self._units[pvname] = str(units)
                    self._columns.changed()
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("control", pvname)

    def _on_time(self, args: Any) -> None:
        """DBR_TIME event: value, EPICS timestamp and alarm, kept raw and handed to the sinks."""
        from epics import ca, dbr

        pvname = self._names.get(_chid_key(args.chid), "")
        try:
            meta, data = dbr.cast_args(args)
            ftype, count = args.type, args.count
            if count == 1 and ftype in _FAST_TYPES:
                value: Any = data[0]
            else:
                value = ca._unpack(args.chid, (meta, data), count=count, ftype=ftype)
                if ftype % _DBR_FAMILY == _DBR_CHAR and getattr(value, "ndim", 0) == 1:
                    value = bytes(value.astype("uint8")).split(b"\0", 1)[0].decode(errors="replace")
                elif isinstance(value, bytes):
                    value = value.decode(errors="replace")
            stamp = meta.stamp
            timestamp = stamp.secs + EPICS_EPOCH + stamp.nsec * 1e-9 if stamp.secs else time.time()
            with self._lock:
                self._last_value[pvname] = value
                self._store(pvname, (value, timestamp, meta.severity, meta.status, True))
                self.updates += 1
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("monitor", pvname)

    # -- p4p callbacks (p4p's worker thread) -------------------------------------------
    def _on_pva(
        self, pv: str, value: Any, t: float, severity: int, status: int, units: str | None
    ) -> None:
        """A PVA update: connected, its units kept, as a CA update is."""
        with self._lock:
            self._connected.add(pv)
            units = units if units is not None else ""  # a type without display: none
            if self._units.get(pv) != units:
                self._units[pv] = units
                self._columns.changed()
            self._last_value[pv] = value
            self._store(pv, (value, t, severity, status, True))
            self.updates += 1

    def _on_pva_lost(self, pv: str, t: float | None = None) -> None:
        """A PVA channel (or a forwarder's source, at ``t``) disconnected: a disconnected
        point, as for CA."""
        with self._lock:
            if pv in self._connected:  # never connected: absent, as a CA PV is
                self._connected.discard(pv)
                self._store(pv, (None, t or time.time(), 3, UDF_ALARM, False))

    def _failed(self, callback: str, pvname: str) -> None:
        """A libca callback raised: counted (the IOC reports it on LastError) and logged."""
        self.callback_errors += 1
        log.exception("%s callback failed for %s", callback, pvname)

    def _store(self, pv: str, raw: Raw) -> None:
        """Under the lock: keep the update and hand it to the sinks (no objects built)."""
        self._latest[pv] = raw
        self._columns.changed_pv(pv)
        if self._history is not None:
            self._history.add(pv, *raw)
        for sink in self._sinks:
            sink.add(pv, *raw)

    # -- subscriptions (own thread: pyepics may block while creating them) ------------
    def _subscribe_loop(self) -> None:
        """Subscribe newly connected PVs in batches, flushing once per batch.

        A batch closes when no PV has connected for ``SETTLE_S``.

        pyepics' ``create_subscription`` polls libca twice per call (~170 us);
        at 10,000 PVs that alone is seconds, so the libca call is made here
        directly with pyepics' own event callback, then one flush per batch.
        """
        from epics import ca

        ca.use_initial_context()
        seen = 0
        while not self._stopping.wait(SETTLE_S):
            # subscribe once the connection burst settles: subscribing while thousands of
            # channels are still connecting slows the connecting down (libca locks, GIL).
            # Polling, not a queue: a wake-up per connection costs more than it saves.
            pending = len(self._todo)
            if pending == 0 or pending != seen:
                seen = pending
                continue
            seen = 0
            batch = [self._todo.popleft() for _ in range(pending)]
            for pv in batch:
                chid = self._chids.get(pv)
                if chid is None:
                    continue
                try:
                    ftype = ca.field_type(chid)
                    self._subs.append(_subscribe(chid, ftype, True, self._on_ctrl))
                    self._subs.append(_subscribe(chid, ftype, False, self._on_time))
                except Exception:
                    self.callback_errors += 1
                    self._subscribed.discard(pv)
                    log.exception("cannot subscribe to %s", pv)
            ca.flush_io()


def _on_event(args: Any) -> None:
    """libca event handler: hand the raw event to the PVMonitor method in ``args.usr``.

    pyepics' generic handler builds a dict of every metadata field and converts
    values through numpy for each update; this one leaves decoding to the
    monitor, which does the minimum for the scalars that are most updates.
    """
    try:
        from epics import dbr

        if args.status == dbr.ECA_NORMAL and callable(args.usr):
            args.usr(args)
    except Exception:
        log.exception("event handler failed")


_EVENT_CALLBACK: Any = None


def _subscribe(chid: Any, native: int, ctrl: bool, callback: Any) -> tuple[Any, Any, Any]:
    """``ca_create_subscription`` for DBR_CTRL (property changes) or DBR_TIME (value, alarm)."""
    import ctypes

    from epics import ca, dbr

    global _EVENT_CALLBACK
    if _EVENT_CALLBACK is None:
        _EVENT_CALLBACK = dbr.make_callback(_on_event, dbr.event_handler_args)
    ftype = ca.promote_fieldtype(native, use_time=not ctrl, use_ctrl=ctrl)
    mask = dbr.DBE_PROPERTY if ctrl else dbr.DBE_VALUE | dbr.DBE_ALARM
    uarg = ctypes.py_object(callback)
    evid = ctypes.c_void_p()
    ret = ca.libca.ca_create_subscription(
        ftype, 0, chid, mask, _EVENT_CALLBACK, uarg, ctypes.byref(evid)
    )
    ca.PySEVCHK("create_subscription", ret)
    # keep the callback argument alive as long as the subscription (pyepics' rule)
    return (_EVENT_CALLBACK, uarg, evid)
