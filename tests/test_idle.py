"""Late data after every partition went idle, and the late counter in events.

Once a window is emitted it is never emitted again with another value: data that
reaches it later is late, counted once per event on its topic. Driven twice:
through the local and global stage in process (fast, exact counts), and through a
worker on the embedded broker, reading ``<app>.metrics`` with kafka-python.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from shoppulse.agents.cardinality import cardinality_of
from shoppulse.agents.global_stage import GlobalStage, encode_partials
from shoppulse.agents.ingest import split_by_dest, tally_dest, window_spans, wm_json
from shoppulse.agents.local_stage import PartitionAggregator, Record
from shoppulse.agents.plan import compile_plan
from shoppulse.streams.config import load_config
from shoppulse.streams.records import MetricPoint
from shoppulse.streams.schemas import compile_topic
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import produce, read_topic
from tests.test_stall import small_windows

START = 1_767_261_600.0  # a 10 s window starts here
N_DEST = 4


@dataclass
class Ev:
    topic: str
    key: str
    value: dict[str, Any]


def clicks(kind: str, n: int, first: int, *, ts0: float = START + 1.0) -> list[Ev]:
    """``n`` click events of one type, all ads/web/desktop, in the window at START."""
    out = []
    for i in range(first, first + n):
        out.append(Ev("clicks", f"s{i}", {
            "event_id": f"e{i}", "ts": ts0 + (i % 40) * 0.2, "session_id": f"s{i}",
            "visitor_id": f"v{i}", "event_type": kind, "channel": "ads", "platform": "web",
            "device": "desktop"}))
    return out


class InProcess:
    """Local + global stage as the worker wires them, with dicts for tables."""

    def __init__(self, path: Path) -> None:
        self.config = load_config(path, env={})
        self.plan = compile_plan(self.config)
        self.sources = [(t, p) for t, s in self.config.topics.items() for p in range(s.partitions)]
        self.aggs = {(t, p): PartitionAggregator(
            self.config, self.plan, t, compile_topic(t, self.config.topics[t]))
            for t, p in self.sources}
        self.offsets = dict.fromkeys(self.sources, 0)
        self.stage = GlobalStage(self.plan, {}, {}, [f"{t}:{p}" for t, p in self.sources],
                                 cardinality_of(self.config, self.plan))
        self.points: list[MetricPoint] = []
        self.late: dict[str, int] = {}

    def round(self, events: list[Ev], *, idle: bool) -> None:
        """One fetch: ``events`` all on partition 0 of their topic; silent sources idle."""
        by_src: dict[tuple[str, int], list[Record]] = {}
        for ev in events:
            src = (ev.topic, 0)
            by_src.setdefault(src, []).append(
                Record(self.offsets[src], ev.key.encode(), orjson.dumps(ev.value)))
            self.offsets[src] += 1
        sections: list[list[dict[str, Any]]] = [[] for _ in range(N_DEST)]
        for src in self.sources:
            agg, recs = self.aggs[src], by_src.get(src)
            batch = agg.process(recs) if recs else None
            if batch is not None and batch.late:
                self.late[src[0]] = self.late.get(src[0], 0) + batch.late
            per_dest = split_by_dest(batch.parts if batch else {}, self.plan, N_DEST)
            fed = window_spans(batch, agg.windows) if batch else []
            for d in range(N_DEST):
                sections[d].append({
                    "topic": src[0], "partition": src[1], "first": batch.first if batch else -1,
                    "last": batch.last if batch else -1, "wm": wm_json(agg.wm),
                    "idle": idle and not recs, "parts": per_dest[d], "w": fed,
                    "tally": d == tally_dest(src[1], N_DEST)})
        for d in range(N_DEST):
            result = self.stage.apply(d, orjson.loads(encode_partials(sections[d])))
            for topic, n in (result.late_topics or {}).items():
                self.late[topic] = self.late.get(topic, 0) + n
            for wkey, points in self.stage.close_ready(d):
                self.points.extend(points)
                self.stage.mark_emitted(wkey)

    def series(self, metric: str) -> list[float | None]:
        return [p.value for p in self.points if p.metric == metric and p.window_start == START]


def test_late_after_all_idle_in_process(tmp_path):
    pipe = InProcess(small_windows(tmp_path))
    pipe.round(clicks("impression", 20, 0) + clicks("landing_view", 4, 100), idle=False)
    assert pipe.points == []  # other sources have not reported: nothing closes
    pipe.round([], idle=True)  # every partition idle: everything closes
    assert pipe.series("impressions") == [20.0]
    assert pipe.series("landing_views") == [4.0]
    emitted = len(pipe.points)

    pipe.round(clicks("impression", 10, 200), idle=False)
    pipe.round([], idle=True)
    assert pipe.late == {"clicks": 10}, "10 late impressions are 10 late events"
    pipe.round(clicks("landing_view", 10, 300), idle=False)
    pipe.round([], idle=True)
    assert pipe.late == {"clicks": 20}, "10 late landing views are 10 more late events"
    # nothing of the closed window came out again (session resolutions included)
    assert len(pipe.points) == emitted, [p for p in pipe.points[emitted:]][:3]

    # the next window is still open to the same partition: late is about closed windows only
    pipe.round(clicks("impression", 5, 400, ts0=START + 11), idle=False)
    pipe.round([], idle=True)
    nxt = [p.value for p in pipe.points if p.metric == "impressions"
           and p.window_start == START + 10]
    assert nxt == [5.0]
    assert pipe.late == {"clicks": 20}


def test_late_counted_by_local_stage_once_per_event(tmp_path):
    pipe = InProcess(small_windows(tmp_path))
    pipe.round(clicks("impression", 3, 0, ts0=START + 30), idle=False)  # watermark: 30 s on
    pipe.round(clicks("landing_view", 10, 100), idle=False)  # window START ended 20 s ago
    assert pipe.late == {"clicks": 10}


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _late_total(url: str) -> float:
    for line in _scrape(url).splitlines():
        if line.startswith('shoppulse_late_events_total{topic="clicks"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _points(bootstrap: str, topic: str) -> dict[tuple[Any, ...], list[float | None]]:
    out: dict[tuple[Any, ...], list[float | None]] = {}
    for rec in read_topic(bootstrap, topic):
        p = MetricPoint.loads(rec.value)
        out.setdefault((p.metric, tuple(p.labels.values()), p.window_start), []).append(p.value)
    return out


def _settled(bootstrap: str, topic: str) -> dict[tuple[Any, ...], list[float | None]]:
    """The points once two reads 3 s apart agree."""
    points = _points(bootstrap, topic)
    for _ in range(20):
        time.sleep(3)
        again = _points(bootstrap, topic)
        if again == points:
            return points
        points = again
    return points


@pytest.mark.broker
def test_late_after_all_idle_on_broker(kafka, app_name, workers, tmp_path):
    path = small_windows(tmp_path)
    config = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    metrics_topic = config.topic_name("metrics")
    w = workers(path, idle_timeout="2s")
    w.wait_web()
    produce(kafka.bootstrap, config, clicks("impression", 20, 0) + clicks("landing_view", 4, 100))
    key = ("impressions", ("ads", "web"), START)
    deadline = time.monotonic() + 60
    while key not in _points(kafka.bootstrap, metrics_topic):
        assert time.monotonic() < deadline, f"window never closed on idle: {w.tail()}"
        time.sleep(1)
    before = _settled(kafka.bootstrap, metrics_topic)  # the other destinations close too
    assert before[key] == [20.0]
    assert _late_total(w.metrics_url) == 0.0

    produce(kafka.bootstrap, config, clicks("impression", 10, 200))
    produce(kafka.bootstrap, config, clicks("landing_view", 10, 300))
    deadline = time.monotonic() + 40
    while _late_total(w.metrics_url) < 20 and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(6)  # all idle again, anything re-emitted would be out by now
    assert _late_total(w.metrics_url) == 20.0, "late events are counted once each"
    after = _points(kafka.bootstrap, metrics_topic)
    assert after == before, {k: v for k, v in after.items() if before.get(k) != v}


def test_late_counted_once_across_window_sizes(tmp_path):
    path = small_windows(tmp_path)
    text = path.read_text()
    line = "{name: impressions, kind: count, topic: clicks,"
    assert line in text
    path.write_text(text.replace(line, line + " window: 30s,", 1))
    pipe = InProcess(path)
    pipe.round(clicks("impression", 20, 0), idle=False)
    pipe.round([], idle=True)
    assert pipe.series("impressions") == [20.0]  # the 30 s window also starts at START
    assert pipe.series("ctr") == [0.0]  # 10 s window: 0 clicks of 20 impressions
    pipe.round(clicks("impression", 10, 200), idle=False)
    pipe.round([], idle=True)
    assert pipe.late == {"clicks": 10}, "late for both window sizes, counted once"
    assert pipe.series("impressions") == [20.0]
