"""Hierarchy pooling in the live pipeline: one channel's conversion drop raises one alarm,
and the overall's verdicts name that channel first.

A real worker on the embedded broker with the built-in config cut to ``conversion``
(channel x platform) and ``conversion_overall``: the ingest routes both to one
destination, the global stage closes them together, and the ``detect`` agent judges a
window's children before the overall (``DetectorStage.route`` / ``judge``). The clicks
are generated here with a known conversion (5 % of 10 sessions a second, half of them
from ``search``), because the simulator's checkout drop moves the overall conversion too
little for any detector within minutes (measured: -27 % of about 9 purchases a window,
over-dispersed). Checkout breaks for ``search`` only for 15 minutes; each search child
then has about 3.7 purchases a window missing, the overall about 15 of 30.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import yaml

from shoppulse.streams.config import load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import Verdict
from shoppulse.streams.simulator import SimEvent
from shoppulse.streams.topics import ensure_topics
from tests.configs import builtin_with_metrics
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.broker
START = 1_767_254_400.0  # 2026-01-01 08:00 UTC
HIT = "search"
CHANNELS = {"search": 0.5, "ads": 0.2, "direct": 0.12, "social": 0.1, "email": 0.08}
PLATFORMS = ("web", "ios", "android", "miniapp")


def clicks(minutes: int, rate: float, conversion: float, drop: tuple[float, float],
           seed: int = 3) -> Iterator[SimEvent]:
    """Sessions at ``rate`` a second: a landing view, and a purchase 5-25 s later with
    probability ``conversion`` (0 for ``HIT`` sessions starting within ``drop``)."""
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * minutes * 60))
    starts = np.sort(rng.uniform(START, START + minutes * 60, n))
    chans = rng.choice(list(CHANNELS), n, p=list(CHANNELS.values()))
    plats = rng.choice(PLATFORMS, n)
    buys = rng.random(n) < conversion
    delays = rng.uniform(5.0, 25.0, n)
    events = []
    for i in range(n):
        t, ch = float(starts[i]), str(chans[i])
        base = {"session_id": f"s{i}", "visitor_id": f"v{i}", "channel": ch,
                "platform": str(plats[i]), "device": "mobile"}
        events.append((t, SimEvent("clicks", f"s{i}", {**base, "event_id": f"e{i}a", "ts": t,
                                                         "event_type": "landing_view"})))
        if buys[i] and not (ch == HIT and drop[0] <= t < drop[1]):
            tb = t + float(delays[i])
            events.append((tb, SimEvent("clicks", f"s{i}", {**base, "event_id": f"e{i}b",
                                                              "ts": tb,
                                                              "event_type": "purchase"})))
    events.sort(key=lambda e: e[0])
    return (e for _, e in events)


def test_a_channels_conversion_drop_is_called_once_and_named(kafka, app_name, workers,
                                                              tmp_path):
    path = tmp_path / "hierarchy.yaml"
    data = builtin_with_metrics("conversion", "conversion_overall")
    data["rules"] = []
    path.write_text(yaml.safe_dump(data))
    cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    drop = parse_incident("checkout_conversion_drop@35m+15m:1.0/channel=search", origin=START)
    produce(kafka.bootstrap, cfg, clicks(54, 10.0, 0.05, (drop.start, drop.end)))
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
