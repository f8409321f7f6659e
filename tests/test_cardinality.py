"""The cardinality cap is a function of the events: replays and worker layouts agree.

61 categories against a cap of 50, popularity drifting from period to period: the
folded points must not depend on how the input is cut into fetches, which worker
runs which partition, or how many workers there are, and must equal the oracle's
own implementation of the rule (tests/oracle.py).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoppulse.agents.cardinality import cardinality_of, kept_values
from shoppulse.agents.offline import run_offline
from shoppulse.agents.plan import compile_plan
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.topics import ensure_topics
from tests.conftest import WorkerProcess
from tests.kafka_io import input_records, produce
from tests.oracle import compute_points
from tests.test_offline import records_of
from tests.test_pipeline import assert_equal_to_oracle, collect

START = 1_767_261_600.0
CATEGORIES = [f"cat-{i:02d}" for i in range(61)]
ALWAYS = "cat-60"  # the rarest, kept because config lists it


@dataclass
class Ev:
    topic: str
    key: str
    value: dict


def orders(seconds: float = 600, rate: float = 5.0, seed: int = 8) -> list[Ev]:
    """Orders over 61 categories whose popularity order changes every two minutes."""
    rng = random.Random(seed)
    out, ts, i = [], START, 0
    ranking = CATEGORIES[:]
    while ts < START + seconds:
        ts += rng.expovariate(rate)
        if int((ts - START) // 120) != int((ts - START - 1e-9) // 120) or i == 0:
            rng.shuffle(ranking)  # a new period, new favourites
        cat = rng.choices(ranking, weights=[1 / (k + 1) ** 0.6 for k in range(61)])[0]
        i += 1
        ev = {"event_id": f"o{i}", "ts": ts, "order_id": f"ord{i}", "visitor_id": f"v{i % 97}",
              "event_type": rng.choice(["placed"] * 8 + ["refunded", "cancelled"]),
              "channel": rng.choice(["search", "ads", "social", "direct", "email"]),
              "platform": rng.choice(["web", "ios", "android", "miniapp"]),
              "device": rng.choice(["desktop", "mobile", "tablet"]), "category": cat,
              "amount": round(rng.lognormvariate(3.5, 0.8), 2), "currency": "USD"}
        out.append(Ev("orders", ev["order_id"], ev))
    return out


def capped_config(tmp_path: Path) -> Path:
    """The built-in config with a two-minute ranking period and one listed category."""
    text = DEFAULT_PATH.read_text()
    text, n = re.subn(r"(?m)^cardinality_period: .*$", "cardinality_period: 120s", text)
    text, m = re.subn(r"(?m)^dimensions_keep: .*$", f"dimensions_keep: {{category: [{ALWAYS}]}}",
                      text)
    assert n == m == 1 and "cardinality_cap: 50 " in text
    path = tmp_path / "capped.yaml"
    path.write_text(text)
    return path


def points(stream) -> dict:
    got: dict = {}
    for p in stream:
        key = (p.metric, tuple(p.labels.values()), p.window_start)
        got.setdefault(key, []).append((p.value, p.numerator, p.denominator, p.count))
    return got


def test_kept_values_rule():
    counts = {"b": 3, "a": 3, "c": 9, "none": 50, "other": 40, "d": 1}
    assert kept_values(counts, [], 2) == {"c", "a", "none", "other"}  # tie by value
    assert kept_values(counts, ["d"], 2) == {"d", "c", "none", "other"}
    assert kept_values(counts, ["x", "y", "z"], 2) == {"x", "y", "z", "none", "other"}


def test_replays_fold_the_same_values_offline(tmp_path):
    cfg = load_config(capped_config(tmp_path), env={})
    events = orders()
    expected = compute_points(cfg, records_of(cfg, events))
    gmv = {k for k in expected if k[0] == "gmv"}
    assert any(k[1] == ("other",) for k in gmv), "nothing folded: the test would prove nothing"
    assert any(k[1] == (ALWAYS,) for k in gmv)
    per_window: dict = {}
    for _, labels, ws in gmv:
        per_window.setdefault(ws, set()).add(labels[0])
    assert max(len(v) for v in per_window.values()) <= 50 + 2  # cap + the listed + other
    kept = [{labels for _, labels, ws in gmv if ws == w} for w in sorted(per_window)]
    assert len({frozenset(k) for k in kept}) > 1, "the kept set never changed with the periods"
    # three replays of the same input, cut into fetches differently
    runs = [points(run_offline(cfg, events, batch=b)) for b in (997, 64, 5000)]
    for got in runs:
        assert_equal_to_oracle(got, expected)
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.broker
def test_one_and_two_workers_fold_the_same_values(tmp_path, kafka, app_name):
    path = capped_config(tmp_path)
    events = orders(seconds=480, rate=4.0, seed=9)
    base = load_config(path, env={"SHOPPULSE_APP": app_name})
    produce(kafka.bootstrap, ensure_topics(base, kafka.bootstrap), events)
    records = input_records(kafka.bootstrap, base)
    assert len(records) == len(events)
    expected = compute_points(base, records)
    assert any(k[0] == "gmv" and k[1] == ("other",) for k in expected)
    results = []
    for run, n_workers in (("one", 1), ("two", 2)):
        app = f"{app_name}{run}"
        env = {**os.environ, "SHOPPULSE_APP": app, "PYTHONUNBUFFERED": "1"}
        procs: list[WorkerProcess] = []
        try:
            for i in range(n_workers):
                procs.append(WorkerProcess(kafka.url, path, env, tmp_path / f"{run}{i}.log"))
            cfg = load_config(path, env={"SHOPPULSE_APP": app})
            got = collect(kafka.bootstrap, cfg.topic_name("metrics"), set(expected), timeout=150)
        finally:
            for w in procs:
                w.stop()
        assert_equal_to_oracle(got, expected)
        results.append(got)
    assert results[0] == results[1]


def test_fold_merges_exactly_and_counts_each_window_once(tmp_path):
    cfg = load_config(capped_config(tmp_path), env={})
    plan = compile_plan(cfg)
    rule = cardinality_of(cfg, plan)
    gmv, refund = plan.metric_index("gmv"), plan.metric_index("refund")
    sep = "\x1f"
    # gmv: [sum in millionths, events]; 52 categories against a cap of 50 with one listed
    series = {f"gmv{sep}cat-{i:02d}": [1_000_000 * (i + 1), i + 1] for i in range(51)}
    series[f"gmv{sep}{ALWAYS}"] = [5, 1]
    folded = rule.fold(gmv, START, dict(series), None)
    assert set(folded) == ({f"gmv{sep}cat-{i:02d}" for i in range(2, 51)}
                           | {f"gmv{sep}{ALWAYS}", f"gmv{sep}other"})
    assert folded[f"gmv{sep}other"] == [1_000_000 * 3, 3]  # cat-00 and cat-01, added exactly
    hist = rule.record(gmv, START, series, None)
    assert hist is not None
    assert rule.record(gmv, START, series, hist) is None  # a re-emitted window: counted once
    # the next period ranks by this one: cat-00 (1 event here) stays folded even if it leads now
    later = {f"gmv{sep}cat-00": [9, 99], f"gmv{sep}cat-50": [1, 1]}
    assert set(rule.fold(gmv, START + 120, later, hist)) == {f"gmv{sep}other",
                                                             f"gmv{sep}cat-50"}
    # a ratio folds numerator and denominator alike; equal counts: the smaller values stay
    ratio = {f"refund{sep}cat-{i:02d}": [1, 10, 11] for i in range(52)}
    out = rule.fold(refund, START, ratio, None)
    assert out[f"refund{sep}other"] == [3, 30, 33]  # cat-49, cat-50, cat-51 (1 slot listed)
    assert f"refund{sep}cat-48" in out and f"refund{sep}cat-49" not in out
