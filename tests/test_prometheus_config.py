"""prometheus/: promtool checks the config and rules and runs their unit tests; amtool checks
Alertmanager's config and routes; rules name only metrics that exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shoppulse.streams.config import DEFAULT_PATH, load_config
from tests.metric_names import CONTRACT, names_in, worker_names

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # never a skip: scripts/setup-system.sh installs it
        pytest.fail(f"{name} missing: run scripts/setup-system.sh test (make test does)")
    return path


def run(*args: str | Path, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def rules(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def test_promtool_accepts_config_and_rules():
    out = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 rule files found" in out.stdout + out.stderr


def test_promtool_unit_tests_pass():
    out = run(tool("promtool"), "test", "rules", "tests/alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("old", "new", "alert"), [
    ("or vector(0)", "", "ShoppulseNoPointsEmitted"),  # a worker that never emitted a point
    ("> 10000", "> 100000", "ShoppulseConsumerLagGrowing"),
    ('result="failed"', 'result="sent"', "ShoppulseNotifierFailing"),
])
def test_unit_tests_catch_a_broken_rule(tmp_path, old, new, alert):
    """The promtool tests have teeth: each mutation of a rule makes them fail on that alert."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM, copy)
    path = copy / "rules" / "alerts.yml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    out = run(tool("promtool"), "test", "rules", "tests/alerts_test.yml", cwd=copy)
    assert out.returncode != 0
    assert alert in out.stdout + out.stderr


def test_every_alert_has_a_unit_test():
    alerts = {r["alert"] for r in rules(PROM / "rules" / "alerts.yml")}
    tested = {t["alertname"] for case in yaml.safe_load(
        (PROM / "tests" / "alerts_test.yml").read_text())["tests"]
        for t in case.get("alert_rule_test", [])}
    assert alerts == tested
    for r in rules(PROM / "rules" / "alerts.yml"):
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(r["annotations"])


def test_rules_name_only_metrics_that_exist():
    known = worker_names(load_config(DEFAULT_PATH, env={})) | CONTRACT
    recorded = {r["record"] for r in rules(PROM / "rules" / "recording.yml")}
    exprs = [r["expr"] for f in ("recording.yml", "alerts.yml") for r in rules(PROM / "rules" / f)]
    unknown = names_in(exprs) - known - recorded
    assert not unknown, f"rules use names no worker exposes: {sorted(unknown)}"
    for name in recorded:  # level:metric:operations
        assert name.startswith("shoppulse:") and name.count(":") == 2, name


def test_amtool_accepts_alertmanager_config():
    out = run(tool("amtool"), "check-config", "alertmanager.yml")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=ShoppulseWorkerDown", "severity=critical", "component=shoppulse"],
     "shoppulse-webhook"),
    (["alertname=payment_success_drop", "severity=critical", "metric=payment_success"],
     "shoppulse-webhook"),
    (["alertname=payment_success_drop", "severity=critical", 'drill=true'], "drills"),
])
def test_alertmanager_routes(labels, receiver):
    out = run(tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml",
              *labels)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == [receiver]
