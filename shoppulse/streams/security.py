"""Connecting to a secured Kafka cluster: SASL and TLS, passed to aiokafka and to Faust.

The config's ``kafka:`` section (or ``SHOPPULSE_KAFKA__<KEY>``; put the password only in
the environment, ``SHOPPULSE_KAFKA__SASL_PASSWORD``) says how every client of a worker, the
simulator and ``replay`` authenticates. The password is a ``SecretStr``: it never shows in a
repr, a log line or an error. The embedded broker needs none of it (``PLAINTEXT``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseModel):
    """``kafka:`` - how clients authenticate to the brokers (aiokafka's names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None  # CA bundle of the brokers' certificates (else system CAs)
    ssl_certfile: str | None = None  # client certificate (mutual TLS), with ssl_keyfile
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        if self.sasl:
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"{self.security_protocol} needs sasl_username and "
                                 "sasl_password (env SHOPPULSE_KAFKA__SASL_PASSWORD)")
        elif self.sasl_username or self.sasl_password is not None:
            raise ValueError("sasl_username/sasl_password need security_protocol "
                             "SASL_SSL or SASL_PLAINTEXT")
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not self.tls and any(files):
            raise ValueError("ssl_* files need security_protocol SSL or SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("give ssl_certfile and ssl_keyfile together")
        return self

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (system CAs unless ``ssl_cafile``), or None without TLS."""
        if not self.tls:
            return None
        from aiokafka.helpers import create_ssl_context

        ctx = create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile,
                                 keyfile=self.ssl_keyfile)
        ctx.check_hostname = self.ssl_check_hostname
        return ctx

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client (consumer, producer, admin)."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            opts["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.sasl_password is not None  # checked above
            opts.update(sasl_mechanism=self.sasl_mechanism,
                        sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password.get_secret_value())
        return opts

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT): the app's own clients."""
        from faust import SASLCredentials, SSLCredentials

        if self.sasl:
            assert self.sasl_password is not None
            return SASLCredentials(username=self.sasl_username,
                                   password=self.sasl_password.get_secret_value(),
                                   ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        if self.tls:
            return SSLCredentials(self.ssl_context())
        return None
