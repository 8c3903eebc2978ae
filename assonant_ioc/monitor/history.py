"""The last seconds of every recorded PV's updates, so that a recording can start with what
the PVs did just before it began (``record: {before_start_s: 10}``, the ESS file writer's
"time before start").

A ring of fixed capacity (``before_start_max_updates``), its columns numpy arrays: 32
bytes an update whatever the rate (a float's value in the float column; any other value,
an integer, a string or an array, kept as it came by its slot beside it), so memory is
bounded by the config, never by the beamline. When the ring is full the oldest update goes
first: the window then begins later than asked.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: bytes an update takes in the ring's columns
BYTES_PER_UPDATE = 4 + 8 + 8 + 1 + 2 + 1 + 8


class History:
    def __init__(self, pvs: list[str], seconds: float, capacity: int) -> None:
        self.pvs = pvs
        self.index = {pv: i for i, pv in enumerate(pvs)}
        self.seconds, self.capacity = seconds, capacity
        self.pv = np.zeros(capacity, np.int32)
        self.t = np.zeros(capacity, np.float64)
        self.value = np.zeros(capacity, np.float64)
        self.severity = np.zeros(capacity, np.int8)
        self.status = np.zeros(capacity, np.int16)
        self.connected = np.zeros(capacity, np.bool_)
        self.arrival = np.zeros(capacity, np.float64)
        self.other: dict[int, Any] = {}  # slot -> a value that is not a number
        self.n = 0  # updates ever added (the next slot: n % capacity)

    def add(self, pv: str, value: Any, t: float, severity: int, status: int, conn: bool) -> None:
        """Under the monitor's lock, for every update of a PV it keeps."""
        i = self.index.get(pv)
        if i is None:
            return
        slot = self.n % self.capacity
        self.other.pop(slot, None)
        self.pv[slot], self.t[slot], self.arrival[slot] = i, t, time.time()
        self.severity[slot], self.status[slot], self.connected[slot] = severity, status, conn
        if type(value) is float or type(value) is np.float64:  # kept as it came
            self.value[slot] = value
        else:
            self.value[slot] = np.nan
            self.other[slot] = value
        self.n += 1

    def since(self, start: float) -> list[tuple[str, Any, float, int, int, bool]]:
        """The updates that arrived from ``start`` on, oldest first."""
        count = min(self.n, self.capacity)
        first = self.n - count
        slots = np.arange(first, self.n) % self.capacity
        slots = slots[self.arrival[slots] >= start]
        out = []
        for s in slots.tolist():
            value = self.other[s] if s in self.other else self.value[s]
            out.append(
                (
                    self.pvs[self.pv[s]],
                    value,
                    float(self.t[s]),
                    int(self.severity[s]),
                    int(self.status[s]),
                    bool(self.connected[s]),
                )
            )
        return out
