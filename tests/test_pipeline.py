"""Window metrics against the pandas oracle: replay, crashes, two workers (real broker)."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import orjson
import pytest

from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import MetricPoint
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import input_records, produce, read_topic
from tests.oracle import compute_points

pytestmark = pytest.mark.broker
START = 1_767_261_600.0  # 2026-01-01 10:00 UTC: daytime traffic
PACED_IDLE = "20s"


def simulator(seed: int, rate: float) -> Simulator:
    incidents = [parse_incident("payment_outage@120s+120s:0.7", origin=START),
                 parse_incident("landing_bounce_spike@200s+100s", origin=START)]
    return Simulator(seed=seed, rate=rate, start=START, incidents=incidents,
                     late_fraction=0.03, duplicate_fraction=0.02, disorder_seconds=4)


def collect(bootstrap: str, topic: str, expected: set, timeout: float) -> dict:
    """Points on the metrics topic, polled until all expected keys are there and quiet."""
    deadline = time.monotonic() + timeout
    got: dict = {}
    while time.monotonic() < deadline:
        got = {}
        for rec in read_topic(bootstrap, topic):
            p = MetricPoint.loads(rec.value)
            key = (p.metric, tuple(p.labels.values()), p.window_start)
            got.setdefault(key, []).append((p.value, p.numerator, p.denominator, p.count))
        if expected <= set(got):
            time.sleep(3)  # anything still in flight would be a duplicate or a stray
            return collect_once(bootstrap, topic)
        time.sleep(2)
    return got


def collect_once(bootstrap: str, topic: str) -> dict:
    got: dict = {}
    for rec in read_topic(bootstrap, topic):
        p = MetricPoint.loads(rec.value)
        key = (p.metric, tuple(p.labels.values()), p.window_start)
        got.setdefault(key, []).append((p.value, p.numerator, p.denominator, p.count))
    return got


def assert_equal_to_oracle(got: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(got))[:5]
    extra = [(k, got[k]) for k in sorted(set(got) - set(expected))[:5]]
    wrong = [(k, got[k], expected[k]) for k in sorted(expected) if k in got
             and any(v != expected[k] for v in got[k])][:5]
    assert not missing, f"{len(set(expected) - set(got))} points missing, e.g. {missing}"
    assert not extra, f"{len(set(got) - set(expected))} unexpected points, e.g. {extra}"
    assert not wrong, f"points differing from the oracle: {wrong}"


@pytest.fixture
def config(kafka, app_name):
    return ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app_name}),
                         kafka.bootstrap)


def test_replay_equals_oracle(kafka, config, workers):
    n = produce(kafka.bootstrap, config, simulator(seed=11, rate=3).events(600))
    records = input_records(kafka.bootstrap, config)
    assert len(records) == n
    expected = compute_points(config, records)
    assert len(expected) > 500
    assert sum(1 for t, *_ in records if t == "clicks") > 1000
    w = workers(DEFAULT_PATH)
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=120)
    assert_equal_to_oracle(got, expected)
    dup = {k: v for k, v in got.items() if len(v) > 1}
    assert not dup, f"series emitted more than once without any crash: {list(dup)[:3]}"
    metrics = _scrape(w.metrics_url)
    assert "shoppulse_late_events_total" in metrics
    assert "shoppulse_conversion_ratio{" in metrics
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def _series(text: str) -> set[str]:
    """The metric series (gauge lines) a worker exports."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if line.startswith("shoppulse_") and "_ratio{" in line}


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _paced_producer(bootstrap, config, sim, seconds, speed) -> threading.Thread:
    t = threading.Thread(target=produce, args=(bootstrap, config, sim.events(seconds), speed),
                         daemon=True)
    t.start()
    return t


def test_sigkill_during_stream_keeps_points_exact(kafka, config, workers):
    rng = random.Random(5)
    sim = simulator(seed=12, rate=3)
    # 10 minutes of event time over ~25 s of wall time, while the worker is killed 3 times
    producer = _paced_producer(kafka.bootstrap, config, sim, 600, speed=24)
    # sparse partitions (logistics, orders) pause for seconds at this pace: a longer idle
    # timeout keeps them holding windows open, as the oracle's per-partition lateness assumes
    w = workers(DEFAULT_PATH, idle_timeout=PACED_IDLE)
    for _ in range(3):
        w.wait_web()
        time.sleep(rng.uniform(4, 9))
        w.kill()
        w = workers(DEFAULT_PATH, idle_timeout=PACED_IDLE)
    producer.join(120)
    assert not producer.is_alive()
    expected = compute_points(config, input_records(kafka.bootstrap, config))
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=180)
    assert_equal_to_oracle(got, expected)


def test_two_workers_share_and_take_over(kafka, config, workers):
    sim = simulator(seed=13, rate=3)
    producer = _paced_producer(kafka.bootstrap, config, sim, 600, speed=20)
    a, b = workers(DEFAULT_PATH, PACED_IDLE), workers(DEFAULT_PATH, PACED_IDLE)
    a.wait_web()
    b.wait_web()
    time.sleep(12)
    deadline = time.monotonic() + 60
    while True:
        both = [_series(_scrape(x.metrics_url)) for x in (a, b)]
        if all(both) or time.monotonic() > deadline:
            break
        time.sleep(2)
    # each worker exports only the series of the partitions it owns
    assert all(both), "a worker carries no series"
    assert not both[0] & both[1], f"series on both workers: {sorted(both[0] & both[1])[:3]}"
    a.kill()
    producer.join(120)
    expected = compute_points(config, input_records(kafka.bootstrap, config))
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=180)
    assert_equal_to_oracle(got, expected)


def test_invalid_events_go_to_deadletter(kafka, config, workers):
    good = Simulator(seed=14, rate=20, start=START).events(300)  # no late or duplicates
    good = [e for e in good if e.topic == "orders"][:20]
    assert good
    base = good[0].value
    bad = {
        "bad_json": b'{"event_id": "x",',
        "missing_field": orjson.dumps({k: v for k, v in base.items() if k != "channel"}),
        "wrong_type": orjson.dumps({**base, "amount": "12.5"}),
        "bad_enum": orjson.dumps({**base, "event_type": "teleported"}),
        "not_finite": orjson.dumps({**base, "amount": 0.5}).replace(b":0.5", b":NaN"),
        "out_of_range": orjson.dumps({**base, "amount": -5}),
        "bad_timestamp": orjson.dumps({**base, "ts": 12}),
        "oversize": orjson.dumps({**base, "pad": "x" * 70000}),
    }

    class Ev:
        def __init__(self, value):
            self.topic, self.key, self.value = "orders", "o-bad", value

    stream = []
    for i, raw in enumerate(bad.values()):
        stream.extend([good[i], Ev(raw)])
    stream.extend(good[len(bad):])
    produce(kafka.bootstrap, config, stream)
    w = workers(DEFAULT_PATH)
    w.wait_web()
    deadline = time.monotonic() + 60
    dead = []
    while time.monotonic() < deadline and len(dead) < len(bad):
        dead = read_topic(kafka.bootstrap, config.topic_name("deadletter"))
        time.sleep(1)
    reasons = {dict(r.headers)["shoppulse.reason"].decode(): r for r in dead}
    assert set(reasons) == set(bad)
    for reason, rec in reasons.items():
        headers = dict(rec.headers)
        assert rec.value == bad[reason], f"{reason}: original bytes not preserved"
        assert headers["shoppulse.topic"] == b"orders"
        assert int(headers["shoppulse.offset"]) >= 0
        if reason not in ("bad_json", "oversize"):
            field = headers["shoppulse.field"].decode()
            assert field and field in headers["shoppulse.error"].decode()
    valid = f'shoppulse_events_total{{topic="orders"}} {float(len(good))}'
    deadline = time.monotonic() + 30
    while valid not in (metrics := _scrape(w.metrics_url)) and time.monotonic() < deadline:
        time.sleep(1)
    assert valid in metrics, "the valid events around the invalid ones were not all processed"
    for reason in bad:
        assert f'shoppulse_events_invalid_total{{reason="{reason}",topic="orders"}} 1.0' in metrics

