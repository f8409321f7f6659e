"""``bench alerts``: its config is valid and every bench point is one transition.

The benchmark counts each point of a bench category as one transition (rows without an
alert or a receipt are reported missing), so that assumption is checked here with the
worker's own engine on the benchmark's own config.
"""

from __future__ import annotations

import yaml

from shoppulse.alerting.engine import AlertEngine
from shoppulse.commands.alerts_bench import HIGH, LOW, RULE, bench_config, categories, is_high
from shoppulse.streams.config import load_config
from shoppulse.streams.records import MetricPoint


def test_every_bench_point_is_a_transition(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(bench_config("http://127.0.0.1:9/hook", window=2.0,
                                                grace=1.0, n_series=8)))
    config = load_config(path, env={"BENCH_WEBHOOK_SECRET": "x"})
    assert config.windows.size == 2.0 and config.windows.grace == 1.0
    engine = AlertEngine(config, {}, partitions=1)
    cats = categories(8)
    t0 = 1_767_261_600.0
    out = []
    for w in range(6):
        start = t0 + 2.0 * w
        for c, cat in enumerate(cats):
            amount = 5 * (HIGH if is_high(c, start, 2.0) else LOW)
            out += engine.on_point(MetricPoint(
                metric="gmv", labels={"category": cat}, window_start=start,
                window_end=start + 2.0, value=amount, kind="sum"))
    bench = [a for a in out if a.rule == RULE]
    # 8 series x 6 windows, half start high: 4 fire at once, then every point flips one
    assert len(bench) == 8 * 6 - 4
    assert {a.state for a in bench} == {"firing", "resolved"}
    per_window = {}
    for a in bench:
        per_window.setdefault(a.at, []).append(a.state)
    assert all(sorted(s) == ["firing"] * 4 + ["resolved"] * 4 for at, s in per_window.items()
               if at > t0 + 2.0)
