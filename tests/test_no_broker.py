"""A worker started before its broker waits for it (one line per attempt), then works."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest
from kafka import KafkaProducer

from shoppulse.streams.broker import EmbeddedBroker, free_port
from shoppulse.streams.config import DEFAULT_PATH
from shoppulse.streams.simulator import Simulator
from tests.conftest import WorkerProcess
from tests.test_pipeline import START, _scrape

pytestmark = pytest.mark.broker
RETRY = "not reachable (Connection refused), retrying in "


def test_worker_gives_up_after_broker_wait_with_one_line():
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker",
         f"kafka://127.0.0.1:{port}", "--broker-wait", "2.5"],
        capture_output=True, timeout=120, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (f"Error: broker 127.0.0.1:{port} not reachable after waiting 2.5s: "
                         "Connection refused"), lines
    retries = [line for line in lines[:-1] if RETRY in line]
    assert retries == lines[:-1] and len(retries) >= 2, lines  # one clear line per attempt


def test_worker_started_before_the_broker_waits_then_processes_events(tmp_path, app_name):
    port = free_port()
    env = {**os.environ, "SHOPPULSE_APP": app_name, "PYTHONUNBUFFERED": "1"}
    w = WorkerProcess(f"kafka://127.0.0.1:{port}", DEFAULT_PATH, env, tmp_path / "worker.log")
    broker = EmbeddedBroker(port=port)
    try:
        deadline = time.monotonic() + 60
        while w.tail().count(RETRY) < 2 and time.monotonic() < deadline:
            assert w.proc.poll() is None, f"worker exited without a broker: {w.tail()}"
            time.sleep(0.3)
        assert w.tail().count(RETRY) >= 2, w.tail()
        assert f"broker 127.0.0.1:{port} {RETRY}" in w.tail()
        broker.start()
        w.wait_web(timeout=90)
        events = list(Simulator(seed=3, rate=2, start=START).events(60))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
        try:
            for ev in events:
                producer.send(ev.topic, key=ev.key.encode(), value=orjson.dumps(ev.value))
            producer.flush(60)
        finally:
            producer.close(10)
        assert events
        deadline = time.monotonic() + 60
        counted = 0.0
        while time.monotonic() < deadline and counted < len(events):
            time.sleep(1)
            counted = sum(float(line.rsplit(" ", 1)[1])
                          for line in _scrape(w.metrics_url).splitlines()
                          if line.startswith("shoppulse_events_total{"))
        assert counted == len(events), w.tail()
        assert "Traceback" not in w.tail()
    finally:
        w.stop()
        broker.stop()
