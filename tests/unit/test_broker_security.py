"""The broker's TLS and SASL settings: from the config and the environment, every bad one
named, the password never from the config file, and aiokafka's arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from assonant_ioc.events.security import security


def test_nothing_set_is_plaintext() -> None:
    assert security({}, env={}).kwargs() == {}


def test_sasl_scram_over_tls_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "assonant-catalog",
        "KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    found = security({"protocol": "PLAINTEXT"}, env=env)  # the environment wins
    kwargs = found.kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "assonant-catalog",
        "s3cret",
    )
    assert kwargs["ssl_context"] is not None
    assert "s3cret" not in found.shown() and "assonant-catalog" in found.shown()


def test_every_bad_setting_is_named(tmp_path: Path) -> None:
    bad = security(
        {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "ssl_cafile": "/nope.pem"},
        env={},
    )
    problems = "; ".join(bad.problems())
    for said in ("GSSAPI", "sasl_username", "sasl_password_file", "/nope.pem", "TLS files"):
        assert said in problems, problems
    with pytest.raises(ValueError, match="Kafka security"):
        bad.kwargs()
    with pytest.raises(ValueError, match="unknown setting 'sasl_password'"):
        security({"sasl_password": "in the config file"}, env={})
