"""What a consumer of the topics refused, and whether its loop still advances.

Each consumer (catalog, processor, Bluesky) counts what it refused by reason
(``assonant_<service>_refused_total{reason="outside_roots"}``) and marks the message it is
on: a loop that has not moved past one message for longer than its bound says so on
``/health`` (503) and ``/metrics`` (``assonant_<service>_stalled_seconds``), so a consumer
wedged by a hostile message is seen, never reported healthy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from assonant_ioc.monitoring.http import Metric


@dataclass
class Watch:
    #: seconds a message may hold the loop before health says it is stuck
    stall_s: float = 900.0
    refused: dict[str, int] = field(default_factory=dict)
    #: the message the loop is on ("" between messages), and since when (monotonic)
    on: str = ""
    since: float | None = None

    def begin(self, where: str) -> None:
        self.on, self.since = where, time.monotonic()

    def end(self) -> None:
        self.on, self.since = "", None

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def held(self, now: float | None = None) -> float:
        """Seconds the current message has held the loop (0 between messages)."""
        if self.since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.since

    def stalled(self, now: float | None = None) -> str:
        """Why the loop is stuck ("" when it is not)."""
        held = self.held(now)
        if held <= self.stall_s:
            return ""
        return f"stuck on {self.on} for {held:.0f} s (bound {self.stall_s:g} s)"

    def metrics(self, service: str) -> list[Metric]:
        return [
            (
                f"assonant_{service}_refused_total",
                "counter",
                "messages or paths refused, by reason",
                [({"reason": r}, n) for r, n in sorted(self.refused.items())],
            ),
            (
                f"assonant_{service}_stalled_seconds",
                "gauge",
                "seconds the loop has been on one message",
                [({}, self.held())],
            ),
        ]
