"""The demo's view leads with the site-wide series and the alerts (value, band, contributors)."""

from __future__ import annotations

import time

from rich.console import Console

from shoppulse.commands.demo import render, summary

FIRING = {"fingerprint": "abc", "episode": 1, "state": "firing", "rule": "HeadlineAnomaly",
          "severity": "critical", "labels": {"metric": "payment_success_overall"},
          "starts_at": 1_767_254_400.0, "at": 1_767_254_460.0, "value": 0.41, "peak": 0.35,
          "expected": 0.97, "lower": 0.94, "upper": 0.99, "score": 0.999,
          "contributors": [{"labels": {"platform": "ios"}, "share": 0.62}],
          "annotations": {"summary": "payment success low"}}


def test_view_leads_with_site_wide_series_and_alerts():
    site = {"metric": "payment_success_overall", "channel": "", "platform": ""}
    samples = {
        "shoppulse_payment_success_overall_ratio": [({}, 0.41)],
        "shoppulse_expected_value": [(site, 0.97)],
        "shoppulse_expected_lower": [(site, 0.94)],
        "shoppulse_expected_upper": [(site, 0.99)],
        "shoppulse_anomaly_score": [(site, 0.999),
                                    ({**site, "platform": "ios"}, 0.5)],
        "shoppulse_orders_overall_total": [({}, 130.0)],
        "shoppulse_ctr_ratio": [({"channel": "ads"}, 0.035)],
    }
    prev = {"shoppulse_orders_overall_total": [({}, 100.0)]}
    console = Console(record=True, width=200)
    console.print(render(samples, prev, 10.0, "http://x/metrics", time.time(), [FIRING]))
    text = console.export_text()
    site_at, alerts_at, funnel_at = (text.index("Site-wide"), text.index("Alerts"),
                                     text.index("Funnel"))
    assert site_at < alerts_at < funnel_at
    row = next(line for line in text.splitlines() if line.lstrip("│ ").startswith(
        "payment success"))
    assert "0.410" in row and "0.940..0.990" in row and "firing HeadlineAnomaly" in row
    assert "3.0/s" in next(line for line in text.splitlines() if "orders" in line)
    alert_row = next(line for line in text.splitlines() if "platform=ios 62%" in line)
    assert "HeadlineAnomaly" in alert_row and "0.94..0.99" in alert_row
    line = summary(samples, prev, 10.0, [FIRING])
    assert "firing: HeadlineAnomaly(payment_success_overall=0.410 band 0.940..0.990)" in line
