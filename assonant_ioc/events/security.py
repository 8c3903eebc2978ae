"""How the services authenticate to the broker: TLS and SASL (PLAIN, SCRAM), for aiokafka.

The IOC takes them from its config (``kafka: {security: {...}}``), every service (the IOC
and the three consumers) from the environment, which overrides the config:

    KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    KAFKA_SASL_MECHANISM      PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    KAFKA_SASL_USERNAME       the service's account at the broker
    KAFKA_SASL_PASSWORD_FILE  a file holding its password (KAFKA_SASL_PASSWORD: the password
                              itself, for a container's secret)
    KAFKA_SSL_CAFILE          the CA that signed the broker's certificate (else the system's)
    KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE   a client certificate, when the broker asks one

A password is never in the config file itself, only the name of a file holding it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV = {
    "protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password_file": "KAFKA_SASL_PASSWORD_FILE",
    "ssl_cafile": "KAFKA_SSL_CAFILE",
    "ssl_certfile": "KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "KAFKA_SSL_KEYFILE",
}


@dataclass(frozen=True)
class BrokerSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: KAFKA_SASL_PASSWORD, when no file is given (never from the config)
    sasl_password: str | None = None

    def problems(self) -> list[str]:
        """What is wrong, each named (empty: usable)."""
        bad = []
        if self.protocol not in PROTOCOLS:
            bad.append(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        sasl = self.protocol.startswith("SASL_")
        if sasl:
            if self.sasl_mechanism not in MECHANISMS:
                bad.append(
                    f"sasl_mechanism {self.sasl_mechanism!r} is not one of {', '.join(MECHANISMS)}"
                )
            if not self.sasl_username:
                bad.append("sasl_username: needed with SASL")
            if not self.sasl_password_file and self.sasl_password is None:
                bad.append("sasl_password_file (or $KAFKA_SASL_PASSWORD): needed with SASL")
        elif self.sasl_mechanism or self.sasl_username:
            bad.append(f"SASL settings given but protocol is {self.protocol}: SASL_SSL?")
        for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                bad.append(f"{name} {value}: no such file")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            bad.append("ssl_certfile and ssl_keyfile: both or neither")
        if (self.ssl_cafile or self.ssl_certfile) and not self.protocol.endswith("SSL"):
            bad.append(f"TLS files given but protocol is {self.protocol}: SSL or SASL_SSL?")
        return bad

    def kwargs(self) -> dict[str, Any]:
        """The settings as aiokafka's producer and consumer take them (ValueError: bad)."""
        bad = self.problems()
        if bad:
            raise ValueError("Kafka security: " + "; ".join(bad))
        if self.protocol == "PLAINTEXT":
            return {}
        found: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            found["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.protocol.startswith("SASL_"):
            password = self.sasl_password
            if self.sasl_password_file:
                password = Path(self.sasl_password_file).read_text().strip()
            found |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": password,
            }
        return found

    def shown(self) -> str:
        """For logs: the protocol and mechanism and who, never the password."""
        if self.protocol == "PLAINTEXT":
            return "plaintext, no authentication"
        who = f" as {self.sasl_username} ({self.sasl_mechanism})" if self.sasl_username else ""
        return f"{self.protocol}{who}"


def security(
    config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> BrokerSecurity:
    """The config's settings (``kafka: {security: ...}``) with the environment's over them."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    known = {f.name for f in fields(BrokerSecurity)} - {"sasl_password"}
    for name, value in (config or {}).items():
        if name not in known:
            raise ValueError(
                f"Kafka security: unknown setting {name!r} (known: {', '.join(sorted(known))})"
            )
        values[name] = str(value)
    for name, variable in ENV.items():
        if env.get(variable):
            values[name] = env[variable]
    if values.get("protocol"):
        values["protocol"] = values["protocol"].upper()
    if values.get("sasl_mechanism"):
        values["sasl_mechanism"] = values["sasl_mechanism"].upper()
    if env.get("KAFKA_SASL_PASSWORD"):
        values["sasl_password"] = env["KAFKA_SASL_PASSWORD"]
    return BrokerSecurity(**values)
