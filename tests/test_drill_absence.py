"""Absence at a fast replay: judged on the slowest live emitter, not the newest window seen.

The global stage's destinations close their windows at their own pace; at full speed one
can be several windows ahead of another on the same metrics partition. Plain code on event
time, no broker.
"""

from __future__ import annotations

from shoppulse.alerting.engine import AlertEngine
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.records import Alert, MetricPoint

T0 = 1_767_254_400.0
W = 60.0
SILENT = {"name": "OrdersSilent", "kind": "absence", "topic": "orders", "for": "5m"}
# lane 1 emits orders_overall and conversion_overall, lane 0 everything else
LANES = {"orders_overall": 1, "conversion_overall": 1}


def engine() -> AlertEngine:
    config = load_config(DEFAULT_PATH, overrides={"rules": [SILENT]}, env={})
    return AlertEngine(config, {}, partitions=1, lane=lambda m: LANES.get(m, 0))


def point(metric: str, i: int, value: float = 1.0) -> MetricPoint:
    return MetricPoint(metric=metric, labels={}, window_start=T0 + i * W,
                       window_end=T0 + (i + 1) * W, value=value)


def feed(eng: AlertEngine, metrics: list[str], windows: range) -> list[Alert]:
    return [a for i in windows for m in metrics for a in eng.on_point(point(m, i))]


def test_a_lane_running_ahead_does_not_make_the_slow_lanes_topic_silent():
    eng = engine()
    assert feed(eng, ["orders_overall", "conversion_overall", "bounce_overall"], range(3)) == []
    # lane 0 runs 9 windows (nearly 2 x for) ahead: a fast destination at full-speed replay
    assert feed(eng, ["bounce_overall"], range(3, 12)) == []
    # the slow lane catches up with orders in every window: nothing was ever silent
    assert feed(eng, ["orders_overall", "conversion_overall"], range(3, 12)) == []
    assert eng.state("x") is None and not eng.firing


def test_silence_while_every_lane_moves_fires_after_for_and_resolves():
    eng = engine()
    feed(eng, ["orders_overall", "conversion_overall", "bounce_overall"], range(3))
    # orders stop; both lanes keep closing windows with click metrics
    out = feed(eng, ["conversion_overall", "bounce_overall"], range(3, 12))
    assert [(a.rule, a.state, a.at) for a in out] == [
        ("OrdersSilent", "firing", T0 + 8 * W)]  # last orders point ended at T0 + 3W
    back = feed(eng, ["orders_overall", "conversion_overall", "bounce_overall"], range(12, 14))
    assert [(a.rule, a.state) for a in back] == [("OrdersSilent", "resolved")]


def test_a_lane_that_falls_silent_itself_stops_holding_the_clock():
    eng = engine()
    feed(eng, ["orders_overall", "conversion_overall", "bounce_overall"], range(3))
    # lane 1 (all of it reads orders or stops) goes quiet; lane 0 moves on alone
    assert feed(eng, ["bounce_overall"], range(3, 12)) == []  # maybe only slow: wait
    out = feed(eng, ["bounce_overall"], range(12, 15))
    assert [(a.rule, a.state) for a in out] == [("OrdersSilent", "firing")]
    assert out[0].value >= 600.0  # silent for 2 x for before the lane counted as dead
