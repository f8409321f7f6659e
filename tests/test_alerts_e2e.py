"""End to end on the embedded broker: a simulated incident fires an alert on
``<app>.alerts`` and resolves after recovery; a worker SIGKILLed while the alert fires
leaves exactly one FIRING and one RESOLVED per episode."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from shoppulse.alerting.rules import wilson
from shoppulse.commands.cli import main
from shoppulse.streams.config import load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import Alert
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.configs import builtin_with_metrics
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.broker
START = 1_767_254_400.0  # 2026-01-01 08:00 UTC
RULE = "PaymentSuccessLow"


def alerts(bootstrap: str, cfg) -> list[Alert]:
    return [Alert.loads(r.value) for r in read_topic(bootstrap, cfg.topic_name("alerts"))]


def wait_for(bootstrap: str, cfg, done, timeout: float = 150.0) -> list[Alert]:
    deadline = time.monotonic() + timeout
    got: list[Alert] = []
    while time.monotonic() < deadline:
        got = alerts(bootstrap, cfg)
        if done(got):
            return got
        time.sleep(2)
    raise AssertionError(f"timed out; alerts so far: {[(a.rule, a.state) for a in got]}")


def recovered_at(events, since: float, *, min_den: int, keep: float) -> float:
    """Where the firing alert's trouble ends, computed from the events: the start of the
    first window after ``since`` whose payment success is >= 90 % on at least ``min_den``
    attempts and stays so (windows with fewer attempts are not judged) for ``keep``
    seconds (keep_firing_for). A noisy thin window after the outage moves it on, if it is
    surely bad (its Wilson interval wholly below 90 %); one that is merely low is not judged."""
    paid: Counter = Counter()
    tried: Counter = Counter()
    for e in events:
        if e.topic == "orders" and e.value["event_type"] in ("paid", "payment_failed"):
            w = e.value["ts"] // 60 * 60
            tried[w] += 1
            paid[w] += e.value["event_type"] == "paid"
    clear = None
    for w in sorted(w for w in tried if w >= since and tried[w] >= min_den):
        if paid[w] / tried[w] < 0.9:
            if wilson(paid[w], tried[w])[1] < 0.9:
                clear = None
            continue
        clear = w if clear is None else clear
        if w + 60 - clear >= keep:
            return clear
    raise AssertionError("the events never recover")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def get_json_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def one_per_transition(got: list[Alert]) -> None:
    keys = Counter(a.key for a in got)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    for fp, ep, state in keys:
        if state == "resolved":
            assert (fp, ep, "firing") in keys, f"resolved without firing: {fp} #{ep}"


def setup(kafka, app_name, tmp_path: Path):
    """The built-in config cut down to the metrics these rules read (a lighter pipeline),
    with the built-in PaymentSuccessLow rule; a quiet morning has few payments per window,
    so its minimum denominator is lowered."""
    data = builtin_with_metrics("payment_success_overall", "orders_overall")
    rule = next(r for r in data["rules"] if r["name"] == RULE)
    data["rules"] = [{**rule, "min_denominator": 5},
                     next(r for r in data["rules"] if r["name"] == "OrdersSilent")]
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    outage = parse_incident("payment_outage@12m+8m:0.7", origin=START)
    sim = Simulator(seed=5, rate=8, start=START, incidents=[outage])
    return path, cfg, outage, list(sim.events(32 * 60))


def test_payment_outage_fires_and_resolves(kafka, app_name, workers, tmp_path):
    path, cfg, outage, events = setup(kafka, app_name, tmp_path)
    produce(kafka.bootstrap, cfg, events)
    w = workers(path)
    w.wait_web()

    def resolved(got: list[Alert]) -> bool:
        return any(a.rule == RULE and a.state == "resolved" for a in got)

    got = wait_for(kafka.bootstrap, cfg, resolved)
    one_per_transition(got)
    pay = [a for a in got if a.rule == RULE]
    # a noisy window later may start another pending, never a firing
    assert [a.state for a in pay if a.episode == 1] == ["pending", "firing", "resolved"], pay
    assert all(a.state == "pending" for a in pay if a.episode > 1), pay
    _, firing, resolved_ = pay[:3]
    assert outage.start <= firing.starts_at <= outage.start + 3 * 60
    assert firing.at - firing.starts_at >= 120  # for: 2m
    assert firing.value < 0.9 and firing.denominator >= 5
    assert "Payment success" in firing.annotations["summary"]
    assert firing.annotations["playbook"] == "payment_outage"
    assert resolved_.ends_at == recovered_at(events, outage.start, min_den=5, keep=120)
    assert resolved_.ends_at >= outage.end
    assert resolved_.value >= 0.9 and resolved_.peak <= firing.value
    # audit views and metrics on the worker's web server
    listed = get_json(f"http://127.0.0.1:{w.port}/alerts")["alerts"]
    row = next(r for r in listed if r["fingerprint"] == firing.fingerprint)
    assert row["state"] in ("resolved", "pending")  # pending: a later noisy window
    assert row["annotations"]["summary"].startswith("Payment success")
    tl = get_json(f"http://127.0.0.1:{w.port}/alerts/{firing.fingerprint}/timeline")
    assert [t["state"] for t in tl["transitions"]][:3] == ["pending", "firing", "resolved"]
    assert get_json_status(f"http://127.0.0.1:{w.port}/alerts/0000000000000000/timeline") == 404
    cli = CliRunner().invoke(main, ["alerts", "--url", f"http://127.0.0.1:{w.port}", "--all"],
                             env={"COLUMNS": "250"})
    assert cli.exit_code == 0 and RULE in cli.output and "payment_success_overall" in cli.output
    cli = CliRunner().invoke(main, ["alerts", "--url", f"http://127.0.0.1:{w.port}",
                                    firing.fingerprint], env={"COLUMNS": "250"})
    assert cli.exit_code == 0 and cli.output.count(RULE) >= 1 and "firing" in cli.output
    with urllib.request.urlopen(w.metrics_url, timeout=10) as r:
        text = r.read().decode()
    assert f'shoppulse_alert_transitions_total{{rule="{RULE}",state="firing"}} 1.0' in text
    assert f'shoppulse_alerts_firing{{rule="{RULE}",severity="critical"}} 0.0' in text


def test_sigkill_while_firing_gives_one_firing_and_one_resolved(kafka, app_name, workers,
                                                                tmp_path):
    path, cfg, outage, events = setup(kafka, app_name, tmp_path)
    cut = outage.start + 8 * 60
    produce(kafka.bootstrap, cfg, (e for e in events if e.value["ts"] < cut))
    w = workers(path)
    w.wait_web()
    wait_for(kafka.bootstrap, cfg,
             lambda got: any(a.rule == RULE and a.state == "firing" for a in got))
    w.kill()  # while the alert fires, mid-stream
    produce(kafka.bootstrap, cfg, (e for e in events if e.value["ts"] >= cut))
    w2 = workers(path)
    w2.wait_web()
    got = wait_for(kafka.bootstrap, cfg,
                   lambda got: any(a.rule == RULE and a.state == "resolved" for a in got),
                   timeout=200)
    time.sleep(5)  # anything the restart would duplicate has had time to show
    got = alerts(kafka.bootstrap, cfg)
    one_per_transition(got)
    pay = [(a.episode, a.state) for a in got if a.rule == RULE]
    assert [s for e, s in pay if s != "pending"] == ["firing", "resolved"], pay
    resolved = next(a for a in got if a.rule == RULE and a.state == "resolved")
    assert resolved.ends_at >= outage.end  # it did not resolve early after the restart


def test_a_transition_already_on_the_topic_is_not_sent_again(kafka, app_name, workers,
                                                              tmp_path):
    """The crash between sending a transition and writing the state: the next owner of the
    partition decides the same transition again and finds it on the alerts topic."""
    from kafka import KafkaProducer

    from shoppulse.alerting.engine import AlertEngine
    from shoppulse.streams.records import MetricPoint

    path, cfg, _, _ = setup(kafka, app_name, tmp_path)
    values = [0.97, 0.5, 0.5, 0.4, 0.5, 0.97, 0.97, 0.97]
    points = [MetricPoint(metric="payment_success_overall", labels={},
                          window_start=START + i * 60, window_end=START + (i + 1) * 60,
                          value=v, numerator=v * 50, denominator=50.0, kind="ratio")
              for i, v in enumerate(values)]
    engine = AlertEngine(cfg, {})
    expected = [a for p in points for a in engine.on_point(p)]
    assert [a.state for a in expected] == ["pending", "firing", "resolved"]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    try:
        # the previous owner got the pending and the firing out, then died
        for a in expected[:2]:
            producer.send(cfg.topic_name("alerts"), key=a.fingerprint.encode(),
                          value=a.dumps(), partition=2)
        for p in points:
            producer.send(cfg.topic_name("metrics"), key=p.series.encode(), value=p.dumps(),
                          partition=2)
        producer.flush()
    finally:
        producer.close()
    w = workers(path)
    w.wait_web()
    got = wait_for(kafka.bootstrap, cfg,
                   lambda got: any(a.state == "resolved" for a in got))
    time.sleep(3)
    got = alerts(kafka.bootstrap, cfg)
    assert [(a.state, a.at) for a in got] == [(a.state, a.at) for a in expected]
    assert "already on the topic" in w.tail(20000)

