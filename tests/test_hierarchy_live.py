"""Hierarchy pooling in the live pipeline: one channel's conversion drop raises one alarm,
and the overall's verdicts name that channel first.

A real worker on the embedded broker with the built-in config cut to ``conversion``
(channel x platform) and ``conversion_overall``: the ingest routes both to one
destination, the global stage closes them together, and the ``detect`` agent judges a
window's children before the overall (``DetectorStage.route`` / ``judge``). The simulator
breaks checkout for the ``search`` channel only (conversion x 0 for 12 minutes, about half
of the site's purchases); each search child carries under one purchase a window, so the
overall (or, by chance, a child) carries the alarm.
"""

from __future__ import annotations

import time

import pytest
import yaml

from shoppulse.streams.config import load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import Verdict
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.configs import builtin_with_metrics
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.broker
START = 1_767_254_400.0  # 2026-01-01 08:00 UTC
HIT = "search"


def test_a_channels_conversion_drop_is_called_once_and_named(kafka, app_name, workers,
                                                              tmp_path):
    path = tmp_path / "hierarchy.yaml"
    data = builtin_with_metrics("conversion", "conversion_overall")
    data["rules"] = []
    path.write_text(yaml.safe_dump(data))
    cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    drop = parse_incident(f"checkout_conversion_drop@36m+12m:1.0/channel={HIT}", origin=START)
    sim = Simulator(seed=7, rate=10, start=START, incidents=[drop])
    produce(kafka.bootstrap, cfg, sim.events(52 * 60))
    w = workers(path)
    w.wait_web()
    deadline = time.monotonic() + 150
    verdicts: list[Verdict] = []
    while time.monotonic() < deadline:
        verdicts = [Verdict.loads(r.value)
                    for r in read_topic(kafka.bootstrap, cfg.topic_name("anomalies"))]
        if any(v.metric == "conversion_overall" and v.window_start >= drop.end for v in verdicts):
            break
        time.sleep(3)
    overall = {v.window_start: v for v in verdicts if v.metric == "conversion_overall"}
    assert overall and max(overall) >= drop.end, f"the overall was not judged: {w.tail()}"
    kids: dict[float, list[Verdict]] = {}
    for v in verdicts:
        if v.metric == "conversion":
            kids.setdefault(v.window_start, []).append(v)
    during = [t for t in sorted(overall) if drop.start <= t < drop.end + 120]
    alarms = 0
    for t in during:
        hit_kids = [v for v in kids.get(t, []) if v.anomalous and v.labels["channel"] == HIT]
        # one alarm at the most specific level: never the overall and a search child at once
        assert not (overall[t].anomalous and hit_kids), (t, overall[t], hit_kids)
        alarms += overall[t].anomalous or bool(hit_kids)
    assert alarms, "the drop raised no alarm, on the overall or on a search child"
    # the overall names the channel first, with most of the deviation, once evidence is in
    named = [overall[t] for t in during if overall[t].contributors]
    assert named, "no contributors on the overall during the drop"
    late = [v for v in named if v.window_start >= drop.start + 5 * 60]
    assert late, named
    for v in late:
        top = v.contributors[0]
        assert top["labels"].get("channel") == HIT and top["share"] >= 0.6, v.contributors
        assert len(v.contributors) <= 3
    first_alarm = next(v for v in named if v.anomalous) if any(v.anomalous for v in named) \
        else None
    if first_alarm is not None:
        assert first_alarm.contributors[0]["labels"].get("channel") == HIT
    # before the drop, nothing alarmed after the warm-up
    quiet = [v for v in verdicts if v.window_end <= drop.start and v.anomalous]
    assert len(quiet) <= 1, [(v.metric, v.labels, v.window_start) for v in quiet]
