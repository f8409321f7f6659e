"""End to end: a simulated incident becomes an anomalous Verdict on the topic and in /metrics."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import Verdict
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import TopicReader, produce, read_topic

pytestmark = pytest.mark.broker
START = 1_767_254_400.0  # 2026-01-01 08:00 UTC


def test_payment_outage_raises_anomalous_verdicts(kafka, app_name, workers):
    cfg = ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app_name}),
                        kafka.bootstrap)
    outage = parse_incident("payment_outage@60m+30m:0.6", origin=START)
    # 12 sessions/s: ~580 000 events, enough orders per platform and minute to judge
    sim = Simulator(seed=31, rate=12, start=START, incidents=[outage])
    produce(kafka.bootstrap, cfg, sim.events(90 * 60))
    w = workers(DEFAULT_PATH)
    w.wait_web()
    # the worker's pace sets the wait: give up only after 90 s without a new verdict
    deadline = time.monotonic() + 90
    hits: list[Verdict] = []
    verdicts: list[Verdict] = []
    stable = 0
    reader = TopicReader(kafka.bootstrap, cfg.topic_name("anomalies"))
    while time.monotonic() < deadline and stable < 2:
        before = len(verdicts)
        verdicts += [Verdict.loads(r.value) for r in reader.new()]
        hits = [v for v in verdicts if v.metric == "payment_success" and v.anomalous]
        last = max((v.window_start for v in verdicts), default=0)
        # done when the worker has judged the outage and nothing new arrives
        stable = stable + 1 if verdicts and len(verdicts) == before and \
            last >= outage.start + 20 * 60 else 0
        if len(verdicts) > before:
            deadline = time.monotonic() + 90
        time.sleep(3)
    reader.close()
    assert verdicts, "no verdicts on the anomalies topic"
    assert hits, "the payment outage raised no anomalous payment_success verdict"
    assert all(outage.start - 60 <= v.window_start <= outage.end + 300 for v in hits), \
        "payment_success alarms outside the outage"
    first = min(v.window_start for v in hits)
    assert first - outage.start <= 3 * 60, f"detected {first - outage.start:.0f}s after start"
    quiet = [v for v in verdicts if v.window_end <= outage.start and v.anomalous
             and not v.warming_up]
    assert len(quiet) <= 3, f"alarms before the incident: {[(v.metric, v.labels) for v in quiet]}"
    # /metrics shows each series' last verdict: compared on a scrape and a read of the topic
    # taken together, again while a window that closed late moves one past the other
    for _ in range(10):
        text, gauges = payment_gauges(w.metrics_url)
        latest = latest_scores(kafka.bootstrap, cfg.topic_name("anomalies"))
        if gauges == {k: v.score for k, v in latest.items()}:
            break
        time.sleep(2)
    assert gauges == {k: v.score for k, v in latest.items()}
    assert any(v.anomalous and v.score >= 0.9 for v in latest.values()), gauges  # still on
    assert 'shoppulse_expected_upper{' in text and 'shoppulse_expected_lower{' in text


def payment_gauges(url: str) -> tuple[str, dict[str, float]]:
    """The /metrics text and its payment_success anomaly scores by platform."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    gauges = {}
    for line in text.splitlines():
        if line.startswith('shoppulse_anomaly_score{') and 'metric="payment_success"' in line:
            labels, value = line[len("shoppulse_anomaly_score{"):].rsplit("} ", 1)
            platform = re.search(r'platform="([^"]*)"', labels)
            gauges[platform.group(1) if platform else ""] = float(value)
    return text, gauges


def latest_scores(bootstrap: str, topic: str) -> dict[str, Verdict]:
    """The last payment_success verdict of each platform on the anomalies topic."""
    latest: dict[str, Verdict] = {}
    verdicts = [Verdict.loads(r.value) for r in read_topic(bootstrap, topic)]
    for v in sorted(verdicts, key=lambda v: v.window_start):
        if v.metric == "payment_success":
            latest[v.labels.get("platform", "")] = v
    return latest
