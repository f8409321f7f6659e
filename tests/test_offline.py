"""Window semantics against the oracle without a broker, and a topic the built-in config lacks."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from shoppulse.agents.offline import run_offline
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import input_records, produce
from tests.oracle import compute_points
from tests.test_pipeline import assert_equal_to_oracle, collect

START = 1_767_261_600.0

REVIEWS = """
app: reviewsapp
windows: {size: 30s, grace: 20s}
topics:
  reviews:
    partitions: 3
    key: product_id
    fields:
      event_id: {type: string}
      ts: {type: timestamp}
      product_id: {type: string}
      stars: {type: integer, min: 1, max: 5}
      market: {type: string, enum: [us, eu, apac]}
      verified: {type: boolean}
      helpful_votes: {type: integer, min: 0, required: false}
metrics:
  - {name: reviews, kind: count, topic: reviews, dimensions: [market]}
  - name: low_star
    kind: ratio
    numerator: {topic: reviews, filter: {stars: {le: 2}}}
    denominator: {topic: reviews}
    dimensions: [market, verified]
  - {name: helpful_votes, kind: sum, topic: reviews, field: helpful_votes,
     filter: {helpful_votes: {exists: true}}, dimensions: [market]}
  - {name: reviewed_products, kind: distinct, topic: reviews, distinct: product_id}
  - {name: stars_p50, kind: quantile, q: 0.5, topic: reviews, field: stars, dimensions: [market]}
"""


@dataclass
class Ev:
    topic: str
    key: str
    value: dict


def reviews(n: int, seed: int = 4) -> list[Ev]:
    rng = random.Random(seed)
    out, ts = [], START
    for i in range(n):
        ts += rng.expovariate(20)
        late = rng.random() < 0.03
        ev = {"event_id": f"r{i}", "ts": ts - (rng.uniform(5, 60) if late else 0),
              "product_id": f"p{rng.randrange(300)}", "stars": rng.choice([1, 2, 3, 4, 5, 5, 4]),
              "market": rng.choice(["us", "eu", "apac"]), "verified": rng.random() < 0.7}
        if rng.random() < 0.6:
            ev["helpful_votes"] = rng.randrange(20)
        out.append(Ev("reviews", ev["product_id"], ev))
        if rng.random() < 0.02:
            out.append(Ev("reviews", ev["product_id"], dict(ev)))  # duplicate delivery
    return out


def records_of(config, events) -> list[tuple[str, int, int, bytes]]:
    """Partition and number events as Kafka would (murmur2), for the oracle."""
    part = DefaultPartitioner()
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for ev in events:
        n = config.topics[ev.topic].partitions
        p = part(ev.key.encode(), list(range(n)), list(range(n)))
        o = offsets.get((ev.topic, p), 0)
        offsets[(ev.topic, p)] = o + 1
        out.append((ev.topic, p, o, orjson.dumps(ev.value)))
    return out


def points_of(config, events) -> dict:
    got: dict = {}
    for p in run_offline(config, events, batch=997):
        key = (p.metric, tuple(p.labels.values()), p.window_start)
        got.setdefault(key, []).append((p.value, p.numerator, p.denominator, p.count))
    return got


def test_builtin_metrics_offline_equal_oracle():
    cfg = load_config(DEFAULT_PATH, env={})
    incidents = [parse_incident("checkout_conversion_drop@100s+200s", origin=START)]
    sim = Simulator(seed=21, rate=2, start=START, incidents=incidents, late_fraction=0.05,
                    duplicate_fraction=0.03, disorder_seconds=5)
    events = list(sim.events(900))
    expected = compute_points(cfg, records_of(cfg, events))
    assert len(expected) > 300
    assert_equal_to_oracle(points_of(cfg, events), expected)


def test_declared_topic_needs_no_code_offline(tmp_path):
    path = tmp_path / "reviews.yaml"
    path.write_text(REVIEWS)
    cfg = load_config(path, env={})
    events = reviews(3000)
    expected = compute_points(cfg, records_of(cfg, events))
    assert {k[0] for k in expected} == {m.name for m in cfg.metrics}
    assert_equal_to_oracle(points_of(cfg, events), expected)


@pytest.mark.broker
def test_declared_topic_through_a_worker(tmp_path, kafka, app_name, workers):
    path = tmp_path / "reviews.yaml"
    path.write_text(REVIEWS)
    cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    produce(kafka.bootstrap, cfg, reviews(2000, seed=5))
    expected = compute_points(cfg, input_records(kafka.bootstrap, cfg))
    workers(path)
    got = collect(kafka.bootstrap, cfg.topic_name("metrics"), set(expected), timeout=120)
    assert_equal_to_oracle(got, expected)
