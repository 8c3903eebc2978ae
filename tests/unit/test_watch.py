"""Health tells the truth: a consumer whose loop has not moved past one message for longer
than its bound says so (503 with which message), and counts what it refused by reason."""

from __future__ import annotations

import time

from assonant_ioc.catalog.consumer import Stats, health, metrics
from assonant_ioc.monitoring.http import exposition
from assonant_ioc.monitoring.watch import Watch


def test_a_loop_held_by_one_message_past_its_bound_is_unhealthy() -> None:
    stats = Stats(broker_connected=True)
    watch = Watch(stall_s=30)
    assert health(stats, watch) == ""
    watch.begin("files[0]@41")
    now = time.monotonic()
    assert watch.stalled(now + 29) == "" and health(stats, watch) == ""
    said = watch.stalled(now + 31)
    assert said.startswith("stuck on files[0]@41 for 3") and "(bound 30 s)" in said
    watch.since = now - 31  # as if it began 31 s ago
    assert health(stats, watch).startswith("stuck on files[0]@41")
    watch.end()
    assert health(stats, watch) == "" and watch.held() == 0.0


def test_refusals_are_counted_by_reason_on_metrics() -> None:
    watch = Watch()
    for reason in ("outside_roots", "outside_roots", "not_regular"):
        watch.refuse(reason)
    text = exposition(metrics(Stats(), watch)).decode()
    assert 'assonant_catalog_refused_total{reason="outside_roots"} 2.0' in text
    assert 'assonant_catalog_refused_total{reason="not_regular"} 1.0' in text
    assert "assonant_catalog_stalled_seconds 0.0" in text
