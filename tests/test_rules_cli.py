"""``shoppulse rules test FILE``: fixtures in, exit code out (like ``promtool test rules``)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shoppulse.commands.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "rules_payment.yaml"


def test_rules_test_passes_on_the_fixture():
    res = CliRunner().invoke(main, ["rules", "test", str(FIXTURE)])
    assert res.exit_code == 0, res.output
    assert "2 passed, 0 failed" in res.output


def test_rules_test_fails_on_a_difference(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIXTURE.read_text().replace("peak: 0.2", "peak: 0.3")
                   .replace("at: 5m", "at: 6m"))
    res = CliRunner().invoke(main, ["rules", "test", str(bad)])
    assert res.exit_code == 1
    assert "peak is 0.2, expected 0.3" in res.output
    assert "firing at 6m: missing" in res.output
    assert "unexpected: PaymentSuccessLow firing at 300s" in res.output


def test_rules_test_reports_a_bad_rule_with_its_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: X, kind: threshold, metric: ctr, op: '<', value: 1,"
                   " for: 10m, flap_for: 1m}\ntests: []\n")
    res = CliRunner().invoke(main, ["rules", "test", str(bad)])
    assert res.exit_code == 1
    assert "rules[0]" in res.output and "flap_for must not be shorter" in res.output


GROUPING = Path(__file__).parent / "fixtures" / "rules_grouping.yaml"


def test_rules_test_checks_notifications_after_grouping():
    res = CliRunner().invoke(main, ["rules", "test", str(GROUPING)])
    assert res.exit_code == 0, res.output
    assert "2 passed, 0 failed" in res.output


def test_rules_test_fails_on_a_notification_difference(tmp_path):
    text = GROUPING.read_text()
    # the on-call group of the two anomalies says 2 firing; claim 1, at the wrong time,
    # and drop the pager's resolve of gmv_overall: three differences, all reported
    bad = tmp_path / "bad.yaml"
    gmv_resolve = ("      - {receiver: pager, group: {alertname: HeadlineAnomaly, metric: "
                   "gmv_overall, severity: critical},\n         at: 11m, firing: 0, resolved: 1}\n")
    assert gmv_resolve in text
    bad.write_text(text.replace("at: 270s, firing: 2", "at: 240s, firing: 1")
                   .replace(gmv_resolve, ""))
    res = CliRunner().invoke(main, ["rules", "test", str(bad)])
    assert res.exit_code == 1, res.output
    assert "at 270s, expected 240s" in res.output
    assert "firing is 2, expected 1" in res.output
    assert ("unexpected notification: pager {'alertname': 'HeadlineAnomaly', 'metric': "
            "'gmv_overall', 'severity': 'critical'} at 660s firing=0 resolved=1") in res.output
    assert "1 passed, 1 failed" in res.output


def test_rules_test_notifications_need_receivers(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIXTURE.read_text().replace("    expect:\n", "    notifications: []\n"
                                               "    expect:\n", 1))
    res = CliRunner().invoke(main, ["rules", "test", str(bad)])
    assert res.exit_code == 1
    assert "the config has no receivers" in res.output
