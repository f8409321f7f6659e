"""Verdicts per second through rules and lifecycle (plain code, no broker).

The piece of ``bench alerts`` that measures the alert engine alone: encoded verdicts of
many series, some in anomalous episodes, decoded and run through the built-in rules
with a dict as the state table. The baseline, measured in the same run, is decoding
the same verdicts without the rules, so the ratio says what the rules cost on top of
reading the topic.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from shoppulse.alerting.engine import AlertEngine
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.records import Verdict

T0 = 1_767_254_400.0


def make_verdicts(series: int, windows: int, *, seed: int = 1, anomalous: float = 0.02,
                  run: int = 4) -> list[bytes]:
    """``series`` x ``windows`` encoded verdicts in window order; each series starts an
    anomalous run of ``run`` windows with probability ``anomalous`` per window."""
    rnd = random.Random(seed)
    metrics = ["payment_success", "orders_overall", "bounce_overall", "conversion_overall"]
    left = [0] * series
    out = []
    for w in range(windows):
        for s in range(series):
            if left[s] == 0 and rnd.random() < anomalous:
                left[s] = run
            bad = left[s] > 0
            left[s] = max(0, left[s] - 1)
            metric = metrics[s % len(metrics)]
            labels = {"platform": f"p{s}"} if metric == "payment_success" else {"shard": str(s)}
            value = 0.4 if bad else 0.97
            out.append(Verdict(
                score=0.999 if bad else 0.3, expected=0.97, lower=0.94, upper=1.0,
                anomalous=bad, warming_up=False, metric=metric, labels=labels,
                window_start=T0 + 60 * w, window_end=T0 + 60 * (w + 1), value=value,
                detector="bench",
                contributors=[{"labels": {"channel": "ads"}, "expected": 30, "actual": 3,
                               "share": 0.8}] if bad else []).dumps())
    return out


def rules_throughput(*, series: int = 2000, windows: int = 50, runs: int = 3,
                     seed: int = 1) -> dict[str, Any]:
    """Median verdicts/s of decode + rules + lifecycle, and of decode alone (baseline)."""
    config = load_config(DEFAULT_PATH, env={})
    data = make_verdicts(series, windows, seed=seed)
    full, base, transitions = [], [], 0
    for _ in range(runs):
        t = time.perf_counter()
        for raw in data:
            Verdict.loads(raw)
        base.append(len(data) / (time.perf_counter() - t))
        engine = AlertEngine(config, {}, kinds={"anomaly"}, partitions=1)
        t = time.perf_counter()
        n = 0
        for raw in data:
            n += len(engine.on_verdict(Verdict.loads(raw)))
        full.append(len(data) / (time.perf_counter() - t))
        transitions = n
    v, b = statistics.median(full), statistics.median(base)
    return {"verdicts": len(data), "series": series, "transitions": transitions,
            "verdicts_per_s": v, "decode_only_per_s": b, "ratio": v / b, "runs": runs}


def main() -> None:  # pragma: no cover - a manual run: python -m shoppulse.commands.rules_bench
    r = rules_throughput()
    print(f"{r['verdicts']:,} verdicts of {r['series']:,} series, {r['transitions']:,} "
          f"transitions: {r['verdicts_per_s']:,.0f} verdicts/s through rules + lifecycle; "
          f"decode alone {r['decode_only_per_s']:,.0f}/s (ratio {r['ratio']:.2f}); "
          f"median of {r['runs']}")


if __name__ == "__main__":  # pragma: no cover
    main()
