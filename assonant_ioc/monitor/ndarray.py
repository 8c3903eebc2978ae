"""Frames over PVAccess: a camera's NTNDArray PV (areaDetector's ``NDPluginPva``) monitored
with p4p's client, each update decoded into a :class:`Frame` and handed to the sinks that
want that PV (a recording's frame log).

A frame keeps what NDPluginPva sends: the pixels (shaped by ``dimension``, the inner-most
first as NDArray says them, so numpy's shape is reversed), ``uniqueId``, ``dataTimeStamp``
(when the frame was exposed, POSIX seconds; the time of arrival when the server set none),
the alarm, and every NDAttribute's value by its name (a number or a string; an attribute
of another type is kept as its text). A compressed frame (a ``codec`` named, as
NDPluginCodec sends) is not decoded here: it is counted and logged, never recorded as if
it were pixels. Callbacks run in p4p's worker thread and never raise into it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from assonant_ioc.model.source import Attribute, Frame, FrameSink
from assonant_ioc.monitor.pva import Monitors

log = logging.getLogger(__name__)


class Undecodable(ValueError):
    """An NTNDArray update that is not pixels this service can record."""


def _attribute(value: Any) -> Attribute:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, np.generic):
        item = value.item()
        return item if isinstance(item, (int, float, str)) else str(item)
    return str(value)


def decode_frame(pv: str, v: Any) -> Frame:
    """A :class:`Frame` of one NTNDArray update (a p4p Value, ``nt=False``)."""
    codec = v["codec.name"] if "codec" in v.keys() else ""
    if codec:
        raise Undecodable(f"{pv}: frame {v['uniqueId']} compressed with {codec!r}")
    pixels = v["value"]
    if pixels is None:
        raise Undecodable(f"{pv}: frame {v['uniqueId']} has no pixels")
    shape = [int(d["size"]) for d in v["dimension"]][::-1]
    if not shape or int(np.prod(shape)) != pixels.size:
        raise Undecodable(
            f"{pv}: frame {v['uniqueId']} has {pixels.size} pixels, its dimensions say {shape}"
        )
    secs = v["dataTimeStamp.secondsPastEpoch"]
    t = secs + v["dataTimeStamp.nanoseconds"] * 1e-9 if secs else time.time()
    attributes = {str(a["name"]): _attribute(a["value"]) for a in v["attribute"]}
    return Frame(
        pv, int(v["uniqueId"]), t, pixels.reshape(shape), attributes, int(v["alarm.severity"])
    )


class ArrayStreams(Monitors):
    """p4p monitors of NTNDArray PVs (named ``pva://NAME``), each frame to its PV's sinks."""

    def __init__(self, pvs: Iterable[str], failed: Callable[[str, str], None]) -> None:
        self.pvs = list(dict.fromkeys(pvs))
        #: frames kept per camera while the callback catches up (pvxs' ``queueSize``)
        self.request = "record[queueSize=16]"
        self._failed = failed
        self._lock = threading.Lock()
        self._sinks: dict[str, list[FrameSink]] = {pv: [] for pv in self.pvs}
        self._ctx: Any = None
        self._subs: list[Any] = []
        self.connected: set[str] = set()
        self.types: dict[str, str] = {}  # the normative type each PV sent (NTNDArray)
        self.frames = 0  # frames received
        self.undecodable = 0  # frames received that were not pixels this service records

    def add_sink(self, sink: FrameSink, pvs: Iterable[str]) -> None:
        with self._lock:
            for pv in pvs:
                self._sinks.setdefault(pv, []).append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        with self._lock:
            for sinks in self._sinks.values():
                if sink in sinks:
                    sinks.remove(sink)

    def _on_update(self, pv: str, v: Any) -> None:
        try:
            if isinstance(v, Exception):  # disconnected, or the server ended the monitor
                self.connected.discard(pv)
                return
            self.connected.add(pv)
            self.types[pv] = v.getID()
            try:
                frame = decode_frame(pv, v)
            except Undecodable as err:
                self.undecodable += 1
                log.warning("%s", err)
                return
            self.frames += 1
            with self._lock:
                sinks = list(self._sinks.get(pv, ()))
            for sink in sinks:
                sink.add_frame(frame)
        except Exception:  # noqa: BLE001 (counted, logged with its traceback)
            self._failed("NTNDArray monitor", pv)
