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


def _started(port: int, proc: procs.Proc) -> bool:
    """The consumer has its broker: its status says so (the Bluesky consumer's log does)."""
    if "consuming Bluesky documents" in proc.tail(200):
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
            status: dict[str, Any] = json.loads(reply.read())
    except OSError:
        return False
    return bool(status.get("broker_connected"))


@pytest.mark.parametrize("service", ["catalog", "process", "bluesky"])
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
        elif service == "bluesky":
            from tests.system.test_bluesky import _config
            from tests.system.test_bluesky import consumer as bluesky

            config = _config(tmp_path, "gone.files", validate=False)
            proc = consumer.enter_context(
                bluesky(
                    log_dir, kafka, config, "gone.docs", tmp_path / "state", tmp_path / "data",
                    extra=["--status-port", str(port)],
                )
            )  # fmt: skip
        else:
            proc = consumer.enter_context(
                catalog_procs.processor(
                    log_dir, kafka, "gone.files", db, tmp_path / "out", "gone.derived",
                    extra=["--status-port", str(port)], read=[tmp_path],
                )
            )  # fmt: skip
        procs.wait_until(lambda: _started(port, proc), 60, "the broker connected", proc)
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
