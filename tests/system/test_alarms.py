"""What an alarm handler and the archiver see: each status PV's severity read over Channel
Access in each bad state (Fault, the broker down, events pending over the config's limits)
and back to NO_ALARM; the devIocStats names beside the IOC's own."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

from caproto.threading.client import Context

from assonant_ioc.sim import procs
from tests.system.conftest import REPO, start_service
from tests.system.monitoring import health as _health
from tests.system.monitoring import scrape as _scrape
from tests.system.tcp_proxy import Proxy

NO_ALARM, MINOR, MAJOR = 0, 1, 2


def test_fault_broker_down_and_events_pending_raise_alarms_then_clear(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    port = procs.free_port()  # the broker comes up only at the end, behind a proxy
    config = (REPO / "configs" / "sim.yaml").read_text()
    config += "alarms:\n  events_pending: [1, 2]\n"
    metrics_port = procs.free_port()
    with Proxy(port) as proxy:
        args = ["--kafka-bootstrap", f"127.0.0.1:{proxy.port}", "--no-validate"]
        args += ["--metrics-port", str(metrics_port)]
        with start_service(log_dir, tmp_path, sim, args, config_text=config) as (client, P, _, _):
            _alarms_follow(client, P, tmp_path, metrics_port, proxy, log_dir, port)


def _alarms_follow(
    client: Any, P: str, tmp_path: Path, metrics_port: int, proxy: Proxy, log_dir: Path, port: int
) -> None:
    """Each bad state in turn (the broker not yet there, events pending, a Fault, the broker
    cut while idle) and back, as the alarm handler and Prometheus see it."""

    def alarm(pv: str) -> int:
        return client.alarm(f"{P}{pv}")[0]

    def wait_alarm(pv: str, severity: int, what: str) -> None:
        procs.wait_until(lambda: alarm(pv) == severity, 20, what)

    assert alarm("State") == NO_ALARM and alarm("EventsPending") == NO_ALARM
    wait_alarm("KafkaConnected", MINOR, "broker down: KafkaConnected MINOR")
    assert client.get(f"{P}KafkaConnected") == "No"
    for n, severity in ((1, MINOR), (2, MAJOR)):  # HIGH 1, HIHI 2
        client.put(f"{P}ExperimentId", f"alarm-{n}")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        procs.wait_until(lambda n=n: client.get(f"{P}EventsPending") == n, 20, f"{n} pending")
        wait_alarm("EventsPending", severity, f"{n} pending: severity {severity}")
    # a Fault: the data directory gone (a file in its place) when the file is written
    gone = tmp_path / "gone"
    gone.mkdir()
    client.put(f"{P}DataDir", str(gone))
    client.put(f"{P}ExperimentId", "alarm-fault")
    client.put(f"{P}Snapshot:Pre", 1)
    shutil.rmtree(gone)
    gone.write_text("not a directory")
    try:
        client.put(f"{P}EndOfExperiment", 1)
    except procs.PutFailed:
        pass
    assert client.get(f"{P}State") == "Fault"
    assert client.alarm(f"{P}State") == (MAJOR, 7)  # STATE
    client.put(f"{P}Abort", 1)
    assert client.get(f"{P}State") == "Idle" and alarm("State") == NO_ALARM
    # what Prometheus scrapes, read with prometheus_client's own parser; /health: 503
    scraped = _scrape(metrics_port)
    assert scraped[("assonant_events_pending", ())] == 2
    assert scraped[("assonant_kafka_connected", ())] == 0
    assert scraped[("assonant_files_written_total", ())] == 2
    assert scraped[("assonant_state", (("state", "Idle"),))] == 1
    assert scraped[("assonant_state", (("state", "Fault"),))] == 0
    assert _health(metrics_port) == (503, "Kafka broker unreachable")
    # the broker back: the events delivered, every alarm clears
    with procs.broker(log_dir, port, proxy.port):
        wait_alarm("EventsPending", NO_ALARM, "events delivered")
        wait_alarm("KafkaConnected", NO_ALARM, "broker back")
        assert client.get(f"{P}EventsPending") == 0
        assert client.get(f"{P}KafkaConnected") == "Yes"
        assert _health(metrics_port) == (200, "ok")
        assert _scrape(metrics_port)[("assonant_events_pending", ())] == 0
        # cut with nothing to send: seen without waiting for the next file
        proxy.cut()
        wait_alarm("KafkaConnected", MINOR, "broker cut: KafkaConnected MINOR")
        assert _health(metrics_port) == (503, "Kafka broker unreachable")
        assert _scrape(metrics_port)[("assonant_kafka_connected", ())] == 0
        proxy.restore()
        wait_alarm("KafkaConnected", NO_ALARM, "broker restored")
        assert _health(metrics_port) == (200, "ok")
    # devIocStats' names
    assert client.get(f"{P}HOSTNAME") == socket.gethostname()[:39]
    held = Context()  # a client that stays connected, as a panel does
    try:
        (pv,) = held.get_pvs(f"{P}Heartbeat")
        pv.wait_for_connection(timeout=10)
        procs.wait_until(lambda: client.get(f"{P}CA_CLNT_CNT") >= 1, 10, "a client counted")
    finally:
        held.disconnect()
    assert 3 < client.get(f"{P}FD_CNT") < client.get(f"{P}FD_MAX")
    assert client.get(f"{P}UPTIME").startswith("0 days, 00:")
    assert client.get(f"{P}STARTTOD") == client.get(f"{P}StartTime")
    assert client.alarm(f"{P}LoopLag")[0] == NO_ALARM


def test_a_broker_without_producer_ids_is_named_never_a_silent_downgrade(
    sim: tuple[str, int], kafka: str, log_dir: Path, tmp_path: Path
) -> None:
    """The test broker (Tansu) grants no producer id. With the config's idempotent producer
    on (the default for a real Kafka), the event is kept and the reason names the setting;
    the shipped sim configs turn it off for this broker, and the log says so at start."""
    args = ["--kafka-bootstrap", kafka, "--no-validate", "--kafka-idempotent", "on"]
    with start_service(log_dir, tmp_path, sim, args) as (client, P, _, _):
        client.put(f"{P}ExperimentId", "idempotent-on")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        procs.wait_until(
            lambda: "grants no producer id" in client.get(f"{P}LastError"), 30, "the reason"
        )
        assert "kafka: {idempotent: false}" in client.get(f"{P}LastError")
        # kept, not sent without idempotence
        procs.wait_until(lambda: client.get(f"{P}EventsPending") == 1, 10, "kept")
        assert client.get(f"{P}KafkaConnected") == "No"
    off = ["--kafka-bootstrap", kafka, "--no-validate"]  # sim.yaml: idempotent: false
    (tmp_path / "off").mkdir()
    with start_service(log_dir, tmp_path / "off", sim, off) as (client, P, _, proc):
        assert "is not idempotent (config kafka: idempotent: false)" in proc.tail(100)
        client.put(f"{P}ExperimentId", "idempotent-off")
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        procs.wait_until(lambda: client.get(f"{P}EventsPending") == 0, 30, "sent")
