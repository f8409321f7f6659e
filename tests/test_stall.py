"""A broker stall longer than ``idle_timeout`` under paced traffic (real broker, SIGSTOP).

While the broker is stopped no fetch is answered: no partition may be taken for
idle (that would close open windows with partial data and turn the backlog into
late events), the worker must say the broker is down, and every final point must
still equal the oracle.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import input_records, produce
from tests.oracle import compute_points
from tests.test_pipeline import assert_equal_to_oracle, collect

pytestmark = pytest.mark.broker
START = 1_767_261_600.0
IDLE = "3s"
STALL_SECONDS = 14.0  # > idle_timeout and > the worker's broker timeout (10 s)


def small_windows(tmp_path: Path) -> Path:
    """The built-in config with 10 s windows, 5 s grace and bounce timeout."""
    text = Path(DEFAULT_PATH).read_text()
    for old, new in (("size: 60s", "size: 10s"), ("grace: 30s", "grace: 5s"),
                     ("bounce_timeout: 30s", "bounce_timeout: 5s")):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return path


def scrape(url: str) -> dict[str, float]:
    """Unlabelled and labelled samples of /metrics, by their full series name."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def sample(url: str) -> dict[str, float]:
    try:
        return scrape(url)
    except OSError:
        return {}


def test_broker_stall_keeps_points_exact(kafka, app_name, workers, tmp_path):
    path = small_windows(tmp_path)
    config = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    sim = Simulator(seed=21, rate=3, start=START, late_fraction=0.03, duplicate_fraction=0.02,
                    disorder_seconds=2)
    events = [e for e in sim.events(45) if e.topic == "clicks"]  # dense: no partition pauses
    w = workers(path, idle_timeout=IDLE)
    w.wait_web()
    producer = threading.Thread(target=produce, args=(kafka.bootstrap, config, events, 1.5),
                                daemon=True)
    producer.start()
    deadline = time.monotonic() + 60
    while sample(w.metrics_url).get('shoppulse_events_total{topic="clicks"}', 0) < 200:
        assert time.monotonic() < deadline, f"worker never counted events: {w.tail()}"
        time.sleep(0.5)
    during: list[dict[str, float]] = []
    pid = kafka.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stop_at = time.monotonic() + STALL_SECONDS
        while time.monotonic() < stop_at:
            time.sleep(0.5)
            during.append(sample(w.metrics_url))
    finally:
        os.kill(pid, signal.SIGCONT)
    producer.join(90)
    assert not producer.is_alive()
    expected = compute_points(config, input_records(kafka.bootstrap, config))
    assert len(expected) > 100
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=90)
    assert_equal_to_oracle(got, expected)

    # the outage was visible: broker_up 0 with a growing fetch age, then back to 1
    ups = [s.get("shoppulse_broker_up") for s in during]
    assert 0.0 in ups, f"shoppulse_broker_up never went to 0 during the stall: {ups}"
    ages = [s.get("shoppulse_broker_last_fetch_age_seconds", 0.0) for s in during]
    assert max(ages) >= STALL_SECONDS / 2, ages
    lag = [k for s in during if s.get("shoppulse_broker_up") == 0.0 for k in s
           if k.startswith("shoppulse_consumer_lag_messages{")]
    assert not lag, f"a lag gauge stayed while the broker was down: {lag[:3]}"
    after = scrape(w.metrics_url)
    assert after["shoppulse_broker_up"] == 1.0
    assert after["shoppulse_broker_last_fetch_age_seconds"] < 3.0
    log = w.tail(10**7)
    assert len(re.findall(r"broker lost", log)) == 1, log[-3000:]
    assert len(re.findall(r"broker back", log)) == 1, log[-3000:]
