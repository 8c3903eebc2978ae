"""Draining the outbox after a long outage: 10,000 events queued, then taken and removed
one by one as delivery does (the send itself aside), timed per 1,000. Flat is the aim: the
last 1,000 no slower than the first 1,000 by more than 1.2x. For contrast, the same drain of
2,000 events reading every file for each event, as the outbox did before its index.

    python -m bench.outbox [--events 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from assonant_ioc.lifecycle.outbox import Outbox


def _event() -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "file_path": "/data/x.nxs", "n": 1}


def _filled(n: int, work: Path) -> Outbox:
    box = Outbox(work)
    for _ in range(n):
        box.put("key", _event(), True)
    return box


def _timed(take: Callable[[], bool], per: int) -> list[float]:
    """Seconds per ``per`` events taken, in order, until ``take`` finds none."""
    times, t = [], time.perf_counter()
    done = 0
    while take():
        done += 1
        if done % per == 0:
            now = time.perf_counter()
            times.append(now - t)
            t = now
    return times


def drain(n: int, work: Path, per: int = 1000) -> list[float]:
    """Seconds per ``per`` events taken and removed, in order."""
    _filled(n, work)
    box = Outbox(work)  # a restart: the index read from disk once

    def take() -> bool:
        first = box.first()
        if first is None:
            return False
        box.remove(first)
        return True

    return _timed(take, per)


def drain_rescanning(n: int, work: Path, per: int = 500) -> list[float]:
    """The same, every event's take reading every file left (the outbox before its index)."""
    box = _filled(n, work)

    def take() -> bool:
        files = sorted(box.dir.glob("[0-9]*.json"))
        for path in files:
            json.loads(path.read_text())
        if files:
            files[0].unlink()
        return bool(files)

    return _timed(take, per)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        flat = drain(args.events, Path(tmp) / "a")
        old = drain_rescanning(2000, Path(tmp) / "b")
    print(f"drain of {args.events}: s per 1,000: " + ", ".join(f"{x:.3f}" for x in flat))
    print(f"last 1,000 / first 1,000: {flat[-1] / flat[0]:.2f}")
    print("before the index, 2,000 events: s per 500: " + ", ".join(f"{x:.3f}" for x in old))
    print(f"its first 500 / last 500: {old[0] / old[-1]:.2f}")


if __name__ == "__main__":
    main()
