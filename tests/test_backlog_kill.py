"""Effectively-once while a worker catches up a backlog and is SIGKILLed (real broker).

The paced crash test of test_pipeline kills a worker whose fetches are small and whose
checkpoints keep up. Here the whole input is produced first, so the worker reads it in
large rounds, sends partials for partitions it has not checkpointed yet, and is killed
while it does: the next owner must find what was sent, resume past it without cutting a
batch across the global stage's offset guard, and never re-create a window already emitted.
"""

from __future__ import annotations

import re
import time

import pytest

from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import produce, read_topic
from tests.oracle import compute_points
from tests.test_pipeline import _scrape, assert_equal_to_oracle, collect

pytestmark = pytest.mark.broker
START = 1_767_261_600.0
#: events the worker has counted (its own events_total) when it is killed: right after it
#: starts, then twice further into the catch-up
KILL_AFTER = (1, 3_000, 7_000)
_EVENTS = re.compile(r'^shoppulse_events_total\{topic="[^"]+"\} (\S+)$', re.M)


@pytest.fixture
def config(kafka, app_name):
    return ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app_name}),
                         kafka.bootstrap)


def counted(url: str) -> float:
    """Events the worker has counted so far (0 while its web server is busy or not up)."""
    try:
        return sum(float(v) for v in _EVENTS.findall(_scrape(url)))
    except OSError:
        return 0.0


def test_sigkill_during_backlog_catch_up(kafka, config, workers):
    # 20 minutes of event time: emitted windows are forgotten after ten more windows, so a
    # restart that re-sends old partials would show as a second point of an old window
    sim = Simulator(seed=21, rate=3, start=START, late_fraction=0.03, duplicate_fraction=0.02,
                    disorder_seconds=4)
    n = produce(kafka.bootstrap, config, sim.events(1200))
    assert n > 40_000
    records = [(t, r.partition, r.offset, r.value) for t in config.topics
               for r in read_topic(kafka.bootstrap, t, timeout=90)]
    assert len(records) == n
    w = workers(DEFAULT_PATH)
    for threshold in KILL_AFTER:
        w.wait_web()
        deadline = time.monotonic() + 60
        while counted(w.metrics_url) < threshold and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() < deadline, f"worker never counted {threshold}: {w.tail()}"
        w.kill()
        w = workers(DEFAULT_PATH)
    expected = compute_points(config, records)  # while the last worker catches up
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=150)
    twice = {k: sorted(set(v), key=repr) for k, v in got.items() if len(set(v)) > 1}
    assert not twice, (f"{len(twice)} (series, window) emitted with different values, e.g. "
                       f"{list(twice.items())[:3]}")
    assert_equal_to_oracle(got, expected)
