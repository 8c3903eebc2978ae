"""A consumer whose broker is gone still stops at once on SIGTERM, as a service manager
stops it: exit 0, no traceback (aiokafka's fetcher, closing, awaits its own cancelled
requests: its stop used to end the process with a CancelledError and exit 1)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.sim import catalog_procs, procs

pytestmark = pytest.mark.timeout(300)


def _connected(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
        status: dict[str, Any] = json.loads(reply.read())
    return bool(status["broker_connected"])


@pytest.mark.parametrize("service", ["catalog", "process"])
def test_sigterm_stops_a_consumer_whose_broker_is_gone(
    service: str, log_dir: Path, tmp_path: Path
) -> None:
    db, port = f"sqlite:///{tmp_path / 'catalog.db'}", procs.free_port()
    with contextlib.ExitStack() as consumer, contextlib.ExitStack() as broker:
        kafka = broker.enter_context(procs.broker(log_dir))
        if service == "catalog":
            proc, _ = consumer.enter_context(
                catalog_procs.catalog_consumer(
                    log_dir, kafka, "gone.files", db, [tmp_path], status_port=port
                )
            )
        else:
            proc = consumer.enter_context(
                catalog_procs.processor(
                    log_dir, kafka, "gone.files", db, tmp_path / "out", "gone.derived",
                    extra=["--status-port", str(port)], read=[tmp_path],
                )
            )  # fmt: skip
        procs.wait_until(lambda: _connected(port), 60, "the broker connected", proc)
        broker.close()  # the broker stops; the consumer goes on without it
        procs.wait_until(
            lambda: "Connect call failed" in proc.tail(50), 60, "the broker's loss seen", proc
        )
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(30)
        took = time.monotonic() - started
        log = proc.tail(300)
    assert code == 0 and took < 20, (code, took, log[-3000:])
    assert "Traceback" not in log, log[-3000:]
