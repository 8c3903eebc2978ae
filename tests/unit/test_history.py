"""The ring of the seconds before a recording's start: updates since a time, oldest first,
values as they came; its memory fixed by its capacity whatever the beamline sends
(10,000 PVs at 10 Hz for 10 s: 1,000,000 updates in 30 MB)."""

from __future__ import annotations

import time

import numpy as np

from assonant_ioc.monitor.history import BYTES_PER_UPDATE, History


def _nbytes(h: History) -> int:
    columns = (h.pv, h.t, h.value, h.severity, h.status, h.connected, h.arrival)
    return sum(a.nbytes for a in columns)


def test_updates_since_a_time_as_they_came() -> None:
    h = History(["a", "b"], 5.0, 1000)
    h.add("a", 1.5, 10.0, 0, 0, True)
    h.add("c", 9.0, 10.5, 0, 0, True)  # not kept: not a recorded PV
    h.add("b", "text", 11.0, 1, 4, True)
    h.add("a", np.arange(3), 12.0, 0, 0, True)
    got = h.since(0.0)
    assert [(pv, t) for pv, _, t, *_ in got] == [("a", 10.0), ("b", 11.0), ("a", 12.0)]
    assert got[0][1] == 1.5 and got[1][1:] == ("text", 11.0, 1, 4, True)
    assert np.array_equal(got[2][1], np.arange(3))
    assert h.since(time.time() + 1) == []


def test_a_full_ring_drops_the_oldest_and_its_memory_is_its_capacity() -> None:
    pvs = [f"pv{i:05d}" for i in range(10_000)]
    h = History(pvs, 10.0, 1_000_000)
    before = _nbytes(h)
    assert before == 1_000_000 * BYTES_PER_UPDATE <= 32_000_000
    for k in range(2_000_000):  # twice the capacity: 10,000 PVs at 10 Hz for 20 s
        h.add(pvs[k % 10_000], float(k), float(k), 0, 0, True)
    assert _nbytes(h) == before and not h.other
    got = h.since(0.0)
    assert len(got) == 1_000_000 and got[0][1] == 1_000_000.0 and got[-1][1] == 1_999_999.0
