"""Shared fixtures: the embedded broker (same code as the CLI) and worker processes."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups

ROOT = Path(__file__).resolve().parent.parent
_app_ids = itertools.count(1)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu for the session; each test isolates itself with its own app name."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # one log per xdist worker
    b = EmbeddedBroker(log_path=str(ROOT / f".pytest-tansu-{worker}.log")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def kafka() -> Iterator[EmbeddedBroker]:
    """A Tansu of this test's own: input topics (clicks, orders, ...) are not shared."""
    b = EmbeddedBroker().start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    base = "".join(c for c in request.node.name if c.isalnum())[:24].lower()
    return f"t{os.getpid()}{next(_app_ids)}{base}"


class WorkerProcess:
    """``shoppulse worker`` in a subprocess, stopped (by its own pid) on exit."""

    def __init__(self, broker_url: str, config: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker", broker_url,
             "--config", str(config), "--web-port", str(self.port), "--loglevel", "info"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
            start_new_session=True,
            preexec_fn=die_with_parent,  # no stray worker if pytest itself is killed
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def wait_web(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker web port never opened: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a crashed machine."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop_groups([self.proc])

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture
def workers(tmp_path: Path, kafka: EmbeddedBroker, app_name: str):
    """Factory of worker processes for this test's app; all stopped afterwards."""
    started: list[WorkerProcess] = []
    env = {**os.environ, "SHOPPULSE_APP": app_name, "PYTHONUNBUFFERED": "1"}  # logs survive SIGKILL

    def start(config: Path, idle_timeout: str | None = None) -> WorkerProcess:
        """``idle_timeout``: for streams paced so slowly that a partition may pause."""
        extra = {"SHOPPULSE_WINDOWS__IDLE_TIMEOUT": idle_timeout} if idle_timeout else {}
        w = WorkerProcess(kafka.url, config, {**env, **extra},
                          tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            w.stop()
