"""The services talk to a broker over TLS: the IOC from its config (``kafka: {security:
{protocol: SSL, ssl_cafile: ...}}``), the catalog consumer from the environment
(``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SSL_CAFILE``). The broker's TLS listener is a TLS
endpoint in front of the local broker (Tansu 0.6's own TLS and SASL could not be brought up
here: docs/access.md), with a certificate signed by a CA made for the test. A client
without TLS, and one trusting another CA, are refused."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
from pathlib import Path

import pytest

from assonant_ioc.events.kafka import consume_event
from assonant_ioc.sim import catalog_procs, procs
from tests.system.conftest import REPO, start_service
from tests.system.tcp_proxy import Proxy

pytestmark = pytest.mark.timeout(300)


def _ca_and_server(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    ca, ca_key = tmp / f"{name}-ca.pem", tmp / f"{name}-ca.key"
    cert, key, csr = tmp / f"{name}.pem", tmp / f"{name}.key", tmp / f"{name}.csr"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(ca_key), "-out", str(ca), "-subj", f"/CN={name} test CA")  # fmt: skip
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
        "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
    ext = tmp / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


def test_the_ioc_and_the_catalog_consumer_talk_tls_to_the_broker(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _ca_and_server(tmp_path, "broker")
    other_ca, _c, _k = _ca_and_server(tmp_path, "other")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    broker_port = procs.free_port()
    topic = f"assonant.tls.{secrets.token_hex(4)}"
    with (
        Proxy(broker_port, tls=tls) as endpoint,
        procs.broker(log_dir, port=broker_port, advertised_port=endpoint.port),
    ):
        bootstrap = f"127.0.0.1:{endpoint.port}"
        config = (
            (REPO / "configs" / "sim.yaml")
            .read_text()
            .replace("kafka:\n", f"kafka:\n  security: {{protocol: SSL, ssl_cafile: '{ca}'}}\n", 1)
        )
        args = ["--kafka-bootstrap", bootstrap, "--no-validate"]
        service = start_service(log_dir, tmp_path, sim, args, topic, config_text=config)
        with service as (client, P, data, proc):
            client.put(f"{P}ExperimentId", "over-tls")
            client.put(f"{P}Snapshot:Pre", 1)
            client.put(f"{P}EndOfExperiment", 1)
            said = proc.log_path
            procs.wait_until(lambda: "over-tls: event sent" in said.read_text(), 30, "TLS", proc)
        assert f"Kafka {bootstrap}: SSL" in said.read_text()
        # the consumers: TLS from the environment
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
        monkeypatch.setenv("KAFKA_SSL_CAFILE", str(ca))
        event = asyncio.run(consume_event(bootstrap, topic, "over-tls", timeout=60))
        assert event["experiment_id"] == "over-tls"
        db = f"sqlite:///{tmp_path / 'catalog.db'}"
        with catalog_procs.catalog_consumer(log_dir, bootstrap, topic, db, [data]) as (c, port):
            procs.wait_until(
                lambda: catalog_procs.consumer_status(port)["registered"] == 1, 60, "TLS", c
            )
        # without TLS, or trusting another CA: nothing is read
        for protocol, cafile in (("PLAINTEXT", ""), ("SSL", str(other_ca))):
            monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
            monkeypatch.setenv("KAFKA_SSL_CAFILE", cafile)
            with pytest.raises(Exception) as refused:
                asyncio.run(consume_event(bootstrap, topic, "over-tls", timeout=15))
            assert "over-tls" not in str(refused.value)
