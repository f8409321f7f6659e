"""The feed: one simulator producing history then live traffic without a seam.

The demo once ran two simulators (history, then live); every session in progress at the
seam was cut, its landing read as a bounce, and a bounce alert fired on normal traffic. The
feed goes on with the same simulator, so what reaches the broker is exactly one run of it.
"""

from __future__ import annotations

import orjson

from shoppulse.streams.broker import EmbeddedBroker
from shoppulse.streams.config import load_config
from shoppulse.streams.feed import Feed
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import TopicReader

T0 = 1_767_225_600.0


def test_history_then_live_is_one_uncut_run_of_the_simulator(kafka: EmbeddedBroker) -> None:
    cfg = ensure_topics(load_config(None, overrides={"broker": kafka.url}), kafka.bootstrap)
    feed = Feed(cfg, kafka.bootstrap, Simulator(seed=5, rate=20, start=T0),
                [T0 + 120, T0 + 150], [0.0, 30.0])  # history at full speed, then paced
    feed.release(1)  # goes on without a hold
    feed.start()
    feed.join(120)
    assert not feed.is_alive() and feed.error is None and feed.segment == 2
    got: dict[str, list[dict]] = {}
    for topic in ("clicks", "orders", "logistics"):
        reader = TopicReader(kafka.bootstrap, topic)
        got[topic] = [orjson.loads(r.value) for r in reader.new()]
        reader.close()
    want: dict[str, list[dict]] = {"clicks": [], "orders": [], "logistics": []}
    for ev in Simulator(seed=5, rate=20, start=T0).events(150):
        want[ev.topic].append(ev.value)

    def ids(events: list[dict]) -> list[str]:
        return sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS).decode() for e in events)

    for topic in want:
        assert ids(got[topic]) == ids(want[topic]), topic
    # the seam is crossed by sessions: clicks on both sides of it
    before = {e["session_id"] for e in got["clicks"] if e["ts"] < T0 + 120}
    after = {e["session_id"] for e in got["clicks"] if e["ts"] >= T0 + 120}
    assert len(before & after) >= 10


def test_a_held_segment_waits_for_its_release_and_stop_ends_an_endless_one(
        kafka: EmbeddedBroker) -> None:
    cfg = ensure_topics(load_config(None, overrides={"broker": kafka.url}), kafka.bootstrap)
    feed = Feed(cfg, kafka.bootstrap, Simulator(seed=5, rate=20, start=T0),
                [T0 + 30, float("inf")], [0.0, 1.0])
    feed.start()
    for _ in range(600):
        if feed.segment == 1:
            break
        feed.join(0.1)
    assert feed.segment == 1 and feed.produced == T0 + 30
    feed.join(1.0)
    assert feed.segment == 1 and feed.is_alive()  # held: not released
    feed.release(1)
    feed.join(2.0)
    feed.stop()
    feed.join(30)
    assert not feed.is_alive() and feed.error is None
    reader = TopicReader(kafka.bootstrap, "clicks")
    late = [e for r in reader.new() if (e := orjson.loads(r.value))["ts"] >= T0 + 30]
    reader.close()
    assert late, "the released live segment produced nothing"
