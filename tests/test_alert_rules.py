"""Rules and lifecycle as plain code on event timestamps (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from shoppulse.alerting.engine import AlertEngine
from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.templates import render
from shoppulse.streams.config import DEFAULT_PATH, ConfigError, load_config
from shoppulse.streams.records import Alert, MetricPoint, Verdict

T0 = 1_767_254_400.0
W = 60.0


def config(*rules: dict[str, Any]):
    return load_config(DEFAULT_PATH, overrides={"rules": list(rules)}, env={})


def pay(i: int, value: float | None, den: float = 100.0, metric: str = "payment_success_overall",
        labels: dict[str, str] | None = None) -> MetricPoint:
    num = None if value is None else value * den
    return MetricPoint(metric=metric, labels=labels or {}, window_start=T0 + i * W,
                       window_end=T0 + (i + 1) * W, value=value, numerator=num,
                       denominator=den, kind="ratio")


LOW = {"name": "PayLow", "kind": "threshold", "metric": "payment_success_overall", "op": "<",
       "value": 0.9, "min_denominator": 20, "severity": "critical",
       "annotations": {"summary": "pay {{ value | pct }} peak {{ peak | pct }}"}}


def run(engine: AlertEngine, values: list[float | None], **kw: Any) -> list[Alert]:
    out: list[Alert] = []
    for i, v in enumerate(values):
        out += engine.on_point(pay(i, v, **kw))
    return out


def states(alerts: list[Alert]) -> list[tuple[str, int, float]]:
    return [(a.state, a.episode, a.at) for a in alerts]


def test_for_keeps_a_short_dip_pending_and_fires_a_long_one():
    eng = AlertEngine(config({**LOW, "for": "3m"}), {})
    got = run(eng, [0.97, 0.5, 0.5, 0.97, 0.5, 0.5, 0.4, 0.5, 0.97])
    # the first dip (2 windows) stays pending; the second fires after 3 minutes of trouble
    assert states(got) == [("pending", 1, T0 + 2 * W), ("firing", 1, T0 + 7 * W),
                           ("resolved", 1, T0 + 9 * W)]
    firing, resolved = got[1], got[2]
    assert firing.starts_at == T0 + 4 * W and firing.value == 0.4
    assert resolved.ends_at == T0 + 8 * W and resolved.value == 0.97 and resolved.peak == 0.4
    assert resolved.annotations["summary"] == "pay 97.0 % peak 40.0 %"
    assert firing.fingerprint == fingerprint("PayLow", {"metric": "payment_success_overall"})


def test_keep_firing_for_bridges_short_recoveries():
    eng = AlertEngine(config({**LOW, "keep_firing_for": "3m"}), {})
    got = run(eng, [0.5, 0.97, 0.97, 0.5, 0.97, 0.97, 0.97, 0.97])
    assert states(got) == [("firing", 1, T0 + W), ("resolved", 1, T0 + 7 * W)]
    assert got[1].ends_at == T0 + 4 * W


def test_small_denominator_neither_fires_nor_resolves():
    eng = AlertEngine(config(LOW), {})
    out = eng.on_point(pay(0, 0.0, den=3))
    assert out == []
    out = eng.on_point(pay(1, 0.0, den=3000))
    assert states(out) == [("firing", 1, T0 + 2 * W)]
    assert eng.on_point(pay(2, 1.0, den=3)) == []  # 3 of 3 does not resolve it either
    assert states(eng.on_point(pay(3, 1.0, den=300))) == [("resolved", 1, T0 + 4 * W)]


def test_flapping_for_an_hour_gives_one_firing_and_one_resolved():
    eng = AlertEngine(config({**LOW, "for": "2m", "flap_for": "15m"}), {})
    # bad 5 windows, good 4 windows, ... for an hour, then good
    pattern = ([0.5] * 5 + [0.97] * 4) * 7
    got = [a for a in run(eng, [*pattern, *[0.97] * 10]) if a.state != "pending"]
    assert [a.state for a in got] == ["firing", "resolved"]
    # a genuine incident after the flapping still fires, flap_for later
    more = []
    for i in range(80, 100):
        more += eng.on_point(pay(i, 0.5))
    fired = [a for a in more if a.state == "firing"]
    assert len(fired) == 1 and fired[0].episode == 2
    assert fired[0].at - fired[0].starts_at >= 15 * 60


def test_replayed_points_change_nothing():
    store: dict[str, bytes] = {}
    eng = AlertEngine(config(LOW), store)
    first = run(eng, [0.5, 0.5, 0.97])
    again = run(AlertEngine(config(LOW), store), [0.5, 0.5, 0.97])  # a restarted worker
    assert states(first) == [("firing", 1, T0 + W), ("resolved", 1, T0 + 3 * W)]
    assert again == []


def test_anomaly_rule_one_alert_per_verdict_episode():
    rule = {"name": "Anom", "kind": "anomaly", "metric": "*_overall", "flap_window": 0,
            "annotations": {"summary": "{{ labels.metric }} {{ value }} "
                                       "{{ lower }}..{{ upper }} "
                                       "{{ contributors[0].labels.platform if contributors "
                                       "else '-' }}"}}
    eng = AlertEngine(config(rule), {})
    contrib = [{"labels": {"platform": "ios"}, "expected": 30, "actual": 3, "share": 0.8}]

    def verdict(i: int, anomalous: bool, warming: bool = False) -> Verdict:
        return Verdict(score=0.999 if anomalous else 0.2, expected=0.97, lower=0.94,
                       upper=1.0, anomalous=anomalous, warming_up=warming,
                       metric="payment_success_overall", labels={}, window_start=T0 + i * W,
                       window_end=T0 + (i + 1) * W, value=0.4 if anomalous else 0.97,
                       contributors=contrib if anomalous else [])

    seq = [verdict(0, True, warming=True), verdict(1, False), verdict(2, True),
           verdict(3, True), verdict(4, False), verdict(5, True), verdict(6, False)]
    got = [a for v in seq for a in eng.on_verdict(v)]
    assert states(got) == [("firing", 1, T0 + 3 * W), ("resolved", 1, T0 + 5 * W),
                           ("firing", 2, T0 + 6 * W), ("resolved", 2, T0 + 7 * W)]
    f = got[0]
    assert (f.value, f.expected, f.lower, f.upper, f.score) == (0.4, 0.97, 0.94, 1.0, 0.999)
    assert f.contributors == contrib
    assert f.annotations["summary"] == "payment_success_overall 0.4 0.94..1.0 ios"
    assert f.labels == {"metric": "payment_success_overall"}
    assert got[1].annotations["summary"] == "payment_success_overall 0.97 0.94..1.0 -"
    # with flap damping (the default), the quick second episode waits for flap_for
    eng = AlertEngine(config({**rule, "flap_window": "1h"}), {})
    got = [a for v in seq for a in eng.on_verdict(v)]
    assert states(got) == [("firing", 1, T0 + 3 * W), ("resolved", 1, T0 + 5 * W),
                           ("pending", 2, T0 + 6 * W)]


def test_absence_of_a_topic_and_of_a_series_on_event_time():
    rules = [{"name": "OrdersSilent", "kind": "absence", "topic": "orders", "for": "5m"},
             {"name": "PaySilent", "kind": "absence", "metric": "payment_success_overall",
              "for": "3m"}]
    eng = AlertEngine(config(*rules), {}, partitions=1)
    out: list[Alert] = []
    for i in range(4):
        out += eng.on_point(pay(i, 0.97))
    assert out == []
    # orders go silent; clicks keep the clock moving
    for i in range(4, 14):
        out += eng.on_point(MetricPoint(metric="bounce_overall", labels={},
                                        window_start=T0 + i * W, window_end=T0 + (i + 1) * W,
                                        value=0.4, numerator=40, denominator=100))
    fired = [(a.rule, a.state, a.at, a.starts_at) for a in out]
    assert fired == [("PaySilent", "firing", T0 + 7 * W, T0 + 4 * W),
                     ("OrdersSilent", "firing", T0 + 9 * W, T0 + 4 * W)]
    assert out[1].labels == {"topic": "orders"}
    back = eng.on_point(pay(14, 0.97))
    assert sorted((a.rule, a.state) for a in back) == [("OrdersSilent", "resolved"),
                                                        ("PaySilent", "resolved")]


def test_change_against_a_day_and_a_week_earlier():
    rule = {"name": "OrdersDrop", "kind": "change", "metric": "orders_overall", "change": 0.5}
    eng = AlertEngine(config(rule), {})

    def orders(t: float, v: float) -> MetricPoint:
        return MetricPoint(metric="orders_overall", labels={}, window_start=t,
                           window_end=t + W, value=v)

    day, week = 86400.0, 7 * 86400.0
    assert eng.on_point(orders(T0 - week, 100)) == []
    assert eng.on_point(orders(T0 - day, 80)) == []
    assert eng.on_point(orders(T0, 45)) == []  # -55 % vs a week, -44 % vs a day: not both
    assert eng.on_point(orders(T0 - day + W, 100)) == []
    out = eng.on_point(orders(T0 + W, 30))  # no week-old value: the day alone decides
    assert states(out) == [("firing", 1, T0 + 2 * W)]
    assert out[0].expected == 100
    # a value leaves the store a week and a window after its own window
    kept = sorted(float(k.rsplit("|", 1)[1]) for k in eng.store if k.startswith("h|"))
    assert kept == [T0 - day, T0 - day + W, T0, T0 + W]


@pytest.mark.parametrize("text", [
    "{{ ''.__class__.__mro__ }}",
    "{{ labels.__class__ }}",
    "{{ labels.update({'a': 1}) }}",
    "{{ contributors.append(1) }}",
    "{{ range(10**9) | list }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_templates_refuse_sandbox_escapes(text):
    out = render(text, {"labels": {"metric": "x"}, "contributors": []})
    assert out.startswith("<template error:"), out


def test_template_errors_do_not_lose_the_alert():
    eng = AlertEngine(config({**LOW, "annotations": {"summary": "{{ nope.x }}"}}), {})
    got = run(eng, [0.5])
    assert got[0].state == "firing" and got[0].annotations["summary"].startswith("<template")


@pytest.mark.parametrize(("rule", "key", "needle"), [
    ({**LOW, "for": "10m", "flap_for": "5m"}, "rules[0]", "flap_for must not be shorter"),
    ({**LOW, "for": "30s"}, "rules[0].for", "shorter than the metric's window"),
    ({"name": "S", "kind": "absence", "topic": "orders", "for": "60s"}, "rules[0].for",
     "shorter than a window plus grace"),
    ({**LOW, "metric": "nope"}, "rules[0].metric", "no metric matches"),
    ({**LOW, "match": {"carrier": "x"}}, "rules[0].match.carrier", "not a dimension"),
    ({**LOW, "annotations": {"summary": "{{ x"}}, "rules[0].annotations", "template line"),
    ({**LOW, "labels": {"severity": "x"}}, "rules[0].labels", "set by shoppulse"),
    ({"name": "S", "kind": "absence", "topic": "nope", "for": "5m"}, "rules[0].topic",
     "unknown topic"),
])
def test_rule_config_errors_name_the_key(rule, key, needle):
    with pytest.raises(ConfigError) as exc:
        config(rule)
    assert any(k == key and needle in msg for _, k, msg in exc.value.problems), \
        exc.value.problems


def test_builtin_rules_load():
    cfg = load_config(DEFAULT_PATH, env={})
    names = {r.name for r in cfg.rules}
    assert {"CtrLow", "LandingBounceHigh", "ConversionLow", "PaymentSuccessLow",
            "OnTimeDeliveryLow", "HeadlineAnomaly"} <= names
    assert {r.kind for r in cfg.rules} == {"threshold", "anomaly", "absence", "change"}


def test_alerts_bench_runs_verdicts_through_the_rules():
    from shoppulse.commands.rules_bench import rules_throughput

    r = rules_throughput(series=40, windows=30, runs=1)
    assert r["verdicts"] == 1200 and r["verdicts_per_s"] > 0 and r["decode_only_per_s"] > 0
    assert r["transitions"] > 0  # the anomalous runs did fire and resolve
