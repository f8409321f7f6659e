"""Exporter: names, labels and forgetting the series of a revoked partition."""

from __future__ import annotations

import math

from prometheus_client import generate_latest

from shoppulse.agents.exporter import Exporter
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.records import MetricPoint


def point(metric: str, labels: dict[str, str], value: float | None) -> MetricPoint:
    return MetricPoint(metric=metric, labels=labels, window_start=0.0, window_end=60.0,
                       value=value, numerator=1.0, denominator=3.0, count=4, kind="ratio")


def test_gauges_follow_points_and_leave_with_their_partition():
    ex = Exporter(load_config(DEFAULT_PATH, env={}))
    r = ex.registry
    ex.observe(point("ctr", {"channel": "ads"}, 0.05), dest=1)
    ex.observe(point("ctr", {"channel": "search"}, 0.04), dest=2)
    ex.observe(point("payment_success", {"platform": "web"}, None), dest=2)
    assert r.get_sample_value("shoppulse_ctr_ratio", {"channel": "ads"}) == 0.05
    assert math.isnan(r.get_sample_value("shoppulse_payment_success_ratio", {"platform": "web"}))
    assert r.get_sample_value("shoppulse_metric_points_total", {"metric": "ctr"}) == 2
    ex.observe(point("orders", {"channel": "ads"}, 7.0), dest=1)
    ex.observe(point("orders", {"channel": "ads"}, 5.0), dest=1)
    assert r.get_sample_value("shoppulse_orders_total", {"channel": "ads"}) == 12
    ex.forget(2)
    assert r.get_sample_value("shoppulse_ctr_ratio", {"channel": "search"}) is None
    assert r.get_sample_value("shoppulse_payment_success_ratio", {"platform": "web"}) is None
    assert r.get_sample_value("shoppulse_ctr_ratio", {"channel": "ads"}) == 0.05


def test_names_follow_prometheus_conventions():
    ex = Exporter(load_config(DEFAULT_PATH, env={}))
    text = generate_latest(ex.registry).decode()
    for line in text.splitlines():
        if line.startswith("# TYPE") and line.endswith("counter"):
            assert line.split()[2].startswith("shoppulse_")
    assert "shoppulse_events_invalid_total" in text or "# TYPE shoppulse_events_invalid" in text
    assert "_created" not in text


def test_promtool_accepts_the_exposition():
    import shutil
    import subprocess

    import pytest

    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: install the Debian package prometheus (.ci/run does)")
    ex = Exporter(load_config(DEFAULT_PATH, env={}))
    ex.observe(point("ctr", {"channel": "ads"}, 0.05), dest=0)
    ex.events.labels("clicks").inc(3)
    ex.invalid.labels("clicks", "bad_json").inc()
    out = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(ex.registry),
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
