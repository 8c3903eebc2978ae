"""Where the lifecycle's readings come from, as it sees it: the latest value of each PV (a
snapshot), and every update of some PVs while a sink wants them (a recording, the detector
files). The Channel Access monitor (``monitor.ca.PVMonitor``) is one; the lifecycle imports
none, so the data flows config -> source -> lifecycle, with no arrow back.

A Bluesky run's documents enter after the moments, not through this: a run already says
what was read at each moment (``documents``), so it goes to the same build, outbox and
delivery without commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from assonant_ioc.model.readings import RawSnapshot


class Sink(Protocol):
    """Takes every update of the PVs it wants (a recording, the detector files).

    ``add`` runs in the source's threads (libca's) for every update: it must be cheap and
    never raise.
    """

    def wants(self, pv: str) -> bool: ...

    def add(
        self, pv: str, value: Any, t: float, severity: int, status: int, connected: bool
    ) -> None: ...


Attribute = float | int | str


@dataclass(frozen=True)
class Frame:
    """One camera frame as it came over PVA (NDPluginPva's NTNDArray)."""

    pv: str
    unique_id: int
    t: float  # dataTimeStamp, POSIX seconds
    pixels: np.ndarray
    attributes: dict[str, Attribute] = field(default_factory=dict)
    severity: int = 0


class FrameSink(Protocol):
    """Takes every frame of a camera's array PV (a recording's frame log); runs in the
    source's thread, must never raise."""

    def add_frame(self, frame: Frame) -> None: ...


class ReadingSource(Protocol):
    def snapshot(self) -> RawSnapshot:
        """The latest update of every PV heard from (a copy)."""

    def units_of(self, pv: str) -> str: ...

    def add_sink(self, sink: Sink, pvs: Iterable[str], since: float | None = None) -> None:
        """From now on, ``sink`` takes every update of ``pvs`` (first those kept since
        ``since``, when the source keeps them: ``keep_history``)."""

    def keep_history(self, pvs: Iterable[str], seconds: float, capacity: int) -> None: ...

    def remove_sink(self, sink: Sink) -> None: ...

    def add_frame_sink(self, sink: FrameSink, pv: str) -> None:
        """From now on, ``sink.add_frame`` takes every frame of the camera's array PV."""

    def remove_frame_sink(self, sink: FrameSink) -> None: ...
