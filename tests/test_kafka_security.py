"""The ``kafka:`` config section: SASL / TLS settings parsed, checked and handed to aiokafka and
Faust the same way, the password never shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from shoppulse.agents.app import faust_settings
from shoppulse.streams.config import DEFAULT_PATH, ConfigError, load_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA and a client certificate signed by it (openssl, as an operator would make)."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "c.key", "c.csr", "c.pem"))
    for cmd in (
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test-ca"],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=shoppulse"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2"],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True, timeout=60)
    return {"ca": ca, "cert": cert, "key": key}


def config_with(tmp_path: Path, kafka: dict, env: dict[str, str] | None = None):
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["kafka"] = kafka
    path = tmp_path / "shoppulse.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, env=env or {})


def test_default_is_plaintext():
    cfg = load_config(DEFAULT_PATH, env={})
    assert cfg.kafka.client_options() == {"security_protocol": "PLAINTEXT"}
    assert cfg.kafka.faust_credentials() is None
    assert "broker_credentials" not in faust_settings(cfg, "127.0.0.1:9092", 6066)


def test_sasl_ssl_with_the_password_from_the_environment(tmp_path, pki):
    cfg = config_with(tmp_path, {"security_protocol": "SASL_SSL",
                                 "sasl_mechanism": "SCRAM-SHA-512",
                                 "sasl_username": "shoppulse", "ssl_cafile": str(pki["ca"])},
                      env={"SHOPPULSE_KAFKA__SASL_PASSWORD": "0123: yes"})
    opts = cfg.kafka.client_options()
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "shoppulse"
    assert opts["sasl_plain_password"] == "0123: yes"  # not read as YAML
    assert opts["ssl_context"].check_hostname
    assert "0123: yes" not in repr(cfg) and "0123: yes" not in str(cfg.kafka)
    creds = faust_settings(cfg, "b:9093", 6066)["broker_credentials"]
    assert "0123" not in repr(creds)
    # Faust's own clients get exactly what ours get
    faust_opts = credentials_to_aiokafka_auth(creds)
    assert {k: v for k, v in faust_opts.items() if k != "ssl_context"} == \
        {k: v for k, v in opts.items() if k != "ssl_context"}
    assert faust_opts["ssl_context"] is not None


def test_mutual_tls(tmp_path, pki):
    cfg = config_with(tmp_path, {"security_protocol": "SSL", "ssl_cafile": str(pki["ca"]),
                                 "ssl_certfile": str(pki["cert"]),
                                 "ssl_keyfile": str(pki["key"]),
                                 "ssl_check_hostname": False})
    opts = cfg.kafka.client_options()
    assert opts["security_protocol"] == "SSL" and not opts["ssl_context"].check_hostname
    assert credentials_to_aiokafka_auth(cfg.kafka.faust_credentials())["security_protocol"] \
        == "SSL"


def test_sasl_plaintext_over_env_only(tmp_path):
    cfg = config_with(tmp_path, {}, env={"SHOPPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                         "SHOPPULSE_KAFKA__SASL_USERNAME": "svc",
                                         "SHOPPULSE_KAFKA__SASL_PASSWORD": "pw"})
    assert cfg.kafka.client_options() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw"}


@pytest.mark.parametrize(("kafka", "message"), [
    ({"security_protocol": "SASL_SSL", "sasl_username": "svc"}, "needs sasl_username and"),
    ({"sasl_username": "svc", "sasl_password": "pw"}, "need security_protocol SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "no such file"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
      "sasl_password": "p"}, "kafka.sasl_mechanism"),
    ({"security_protocol": "TLS"}, "kafka.security_protocol"),
    ({"sasl_pasword": "x"}, "unknown key"),
])
def test_bad_settings_name_the_key(tmp_path, kafka, message):
    with pytest.raises(ConfigError) as err:
        config_with(tmp_path, kafka)
    text = str(err.value)
    assert "kafka" in text and message in text
    assert "pw" not in text.replace("pwd", "")


def test_half_a_client_certificate(tmp_path, pki):
    with pytest.raises(ConfigError, match="ssl_certfile and ssl_keyfile together"):
        config_with(tmp_path, {"security_protocol": "SSL", "ssl_certfile": str(pki["cert"])})
