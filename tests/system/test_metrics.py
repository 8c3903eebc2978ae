"""The catalog consumer as a monitoring system sees it: ``/metrics`` scraped and parsed by
prometheus_client, ``/health`` 503 while the broker is cut (a proxy in front of it) and
200 once it is back; ``/status`` the JSON counts as before; any other path 404."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from assonant_ioc.sim import catalog_procs, procs
from tests.system.monitoring import health as _health
from tests.system.monitoring import scrape as _scrape
from tests.system.tcp_proxy import Proxy


def test_catalog_consumer_metrics_and_health_follow_the_broker(
    log_dir: Path, tmp_path: Path
) -> None:
    broker_port = procs.free_port()
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    topic = f"files-{secrets.token_hex(4)}"
    with Proxy(broker_port) as proxy, procs.broker(log_dir, broker_port, proxy.port):
        kafka = f"127.0.0.1:{proxy.port}"
        with catalog_procs.catalog_consumer(log_dir, kafka, topic, catalog, [tmp_path]) as (
            proc,
            port,
        ):
            procs.wait_until(lambda: _health(port) == (200, "ok"), 60, "healthy", proc)
            scraped = _scrape(port)
            assert scraped[("assonant_catalog_broker_up", ())] == 1
            assert scraped[("assonant_catalog_registered_total", ())] == 0
            assert scraped[("assonant_catalog_invalid_events_total", ())] == 0
            proxy.cut()
            procs.wait_until(
                lambda: _health(port) == (503, "Kafka broker unreachable"), 60, "503", proc
            )
            assert _scrape(port)[("assonant_catalog_broker_up", ())] == 0
            proxy.restore()
            procs.wait_until(lambda: _health(port) == (200, "ok"), 60, "healthy again", proc)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
                assert json.loads(r.read())["broker_connected"] is True
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5).close()
                raise AssertionError("a path that is not there answered")
            except urllib.error.HTTPError as err:
                err.close()
                assert err.code == 404
