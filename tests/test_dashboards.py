"""Grafana boards: the committed JSON is the generator's output, the boards carry what operators
need (thresholds, bands, variables), every query names a metric that exists, and a topic
declared in config gets its panels without code."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from shoppulse.commands.cli import main
from shoppulse.commands.dashboards import DATASOURCE, render
from shoppulse.streams.config import DEFAULT_PATH, load_config
from tests.metric_names import CONTRACT, names_in, worker_names

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "grafana" / "dashboards"
RECORDED = {r["record"] for g in yaml.safe_load(
    (ROOT / "prometheus/rules/recording.yml").read_text())["groups"] for r in g["rules"]}


def panels(board: dict) -> list[dict]:
    """Every non-row panel, rows' nested panels included."""
    out = []
    for p in board["panels"]:
        out.extend(p.get("panels", []) if p["type"] == "row" else [p])
    return out


def exprs(board: dict) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p.get("targets", [])]


def committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(BOARDS.glob("*.json"))}


def test_committed_json_is_the_generator_output():
    generated = render(load_config(DEFAULT_PATH, env={}))
    assert sorted(generated) == sorted(p.name for p in BOARDS.glob("*.json"))
    for name, text in generated.items():
        assert (BOARDS / name).read_text() == text, f"{name} is stale: run make dashboards"


def test_boards_are_well_formed():
    boards = committed()
    assert set(boards) == {"overview.json", "funnel.json", "logistics.json", "anomalies.json",
                           "alerts.json", "pipeline.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]] + [q["id"] for p in board["panels"]
                                                    for q in p.get("panels", [])]
        assert len(set(ids)) == len(ids), name
        for p in panels(board):
            assert p["datasource"] == {"type": "prometheus", "uid": DATASOURCE.uid}
            assert p["targets"] and p["title"] and p["description"], (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs)


def test_every_query_names_a_metric_that_exists():
    known = worker_names(load_config(DEFAULT_PATH, env={})) | CONTRACT | RECORDED
    for name, board in committed().items():
        unknown = names_in(exprs(board)) - known
        assert not unknown, f"{name} queries names no worker exposes: {sorted(unknown)}"
        for var in board["templating"].get("list", []):
            assert names_in([var["query"]]) <= known


def _panel(board: dict, title: str) -> dict:
    return next(p for p in panels(board) if p["title"] == title)


def test_overview_draws_the_plan_thresholds():
    board = committed()["overview.json"]
    expected = {"CTR": [None, 0.03], "Landing bounce": [None, 0.40],
                "Conversion": [None, 0.028, 0.036]}
    for title, steps in expected.items():
        graph = next(p for p in panels(board) if p["title"] == title
                     and p["type"] == "timeseries")
        defaults = graph["fieldConfig"]["defaults"]
        assert [s["value"] for s in defaults["thresholds"]["steps"]] == steps
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "line+area"
        assert defaults["unit"] == "percentunit"
    titles = {p["title"] for p in panels(board)}
    assert {"Orders / min", "GMV per window", "Payment success",
            "On-time delivery (carrier mean)", "Firing alerts", "Firing alerts by rule"} <= titles


def test_each_metric_has_its_panel_and_its_band():
    cfg = load_config(DEFAULT_PATH, env={})
    boards = committed()
    everything = " ".join(e for b in boards.values() for e in exprs(b))
    band = exprs(boards["anomalies.json"])
    for m in cfg.metrics:
        assert m.prometheus_name in everything, m.name
        for gauge in ("shoppulse_expected_value", "shoppulse_expected_lower",
                      "shoppulse_expected_upper"):
            assert any(gauge in e and f'metric="{m.name}"' in e for e in band), (m.name, gauge)
    funnel = " ".join(exprs(boards["funnel.json"]))
    assert 'channel=~"$channel"' in funnel and 'platform=~"$platform"' in funnel
    logistics = " ".join(exprs(boards["logistics.json"]))
    for needle in ("carrier=~\"$carrier\"", "by (warehouse)", "by (region)",
                   "shoppulse_dispatch_latency_p50_seconds",
                   "shoppulse_dispatch_latency_p95_seconds", "shoppulse_delay_ratio",
                   "shoppulse_exception_ratio", "shoppulse_on_time_delivery_by_region_ratio"):
        assert needle in logistics, needle
    kinds = {p["type"] for p in panels(boards["anomalies.json"])}
    assert {"heatmap", "table", "timeseries"} <= kinds


def test_template_variables():
    boards = committed()
    seen = set()
    for board in boards.values():
        for var in board["templating"].get("list", []):
            seen.add(var["name"])
            assert var["includeAll"] and var["allValue"] == ".*"
            assert var["query"].startswith("label_values(shoppulse_")
            assert var["query"].endswith(f", {var['name']})")
    assert seen == {"channel", "platform", "carrier"}
    names = {v["name"] for v in boards["funnel.json"]["templating"]["list"]}
    assert names == {"channel", "platform"}


def test_pipeline_and_alert_boards_cover_the_operations_view():
    boards = committed()
    pipeline = " ".join(exprs(boards["pipeline.json"]))
    for name in ("shoppulse:events:rate1m", "shoppulse:events_invalid:rate5m",
                 "shoppulse_late_events_total", "shoppulse_duplicate_events_total",
                 "shoppulse:consumer_lag_messages:sum", "shoppulse_window_close_delay_seconds",
                 "shoppulse:workers_up:count", "shoppulse_broker_up"):
        assert name in pipeline, name
    alerts = " ".join(exprs(boards["alerts.json"]))
    for name in ("shoppulse_alerts_firing", "shoppulse_playbook_runs_active",
                 "shoppulse_playbook_time_to_detect_seconds_bucket",
                 "shoppulse_playbook_time_to_acknowledge_seconds_bucket",
                 "shoppulse_playbook_time_to_recover_seconds_bucket",
                 "shoppulse_notifications_total"):
        assert name in alerts, name


def test_a_declared_topic_gets_panels(tmp_path):
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["topics"]["reviews"] = {"key": "product_id", "fields": {
        "event_id": {"type": "string"}, "ts": {"type": "timestamp"},
        "product_id": {"type": "string"}, "stars": {"type": "integer"},
        "market": {"type": "string", "enum": ["us", "eu"]}}}
    data["metrics"] += [
        {"name": "reviews", "kind": "count", "topic": "reviews", "dimensions": ["market"]},
        {"name": "low_star", "kind": "ratio", "dimensions": ["market"],
         "numerator": {"topic": "reviews", "filter": {"stars": {"le": 2}}},
         "denominator": {"topic": "reviews"}}]
    path = tmp_path / "shoppulse.yaml"
    path.write_text(yaml.safe_dump(data))
    boards = {k: json.loads(v) for k, v in render(load_config(path, env={})).items()}
    topics = exprs(boards["topics.json"])
    assert "60 * sum by (market) (rate(shoppulse_reviews_total[5m]))" in topics
    assert "max by (market) (shoppulse_low_star_ratio)" in topics
    assert _panel(boards["topics.json"], "low star by market")["fieldConfig"]["defaults"][
        "unit"] == "percentunit"
    band = exprs(boards["anomalies.json"])
    assert 'max by (market) (shoppulse_expected_upper{metric="low_star"})' in band
    assert "reviews" not in " ".join(exprs(boards["funnel.json"]))
    known = worker_names(load_config(path, env={})) | CONTRACT | RECORDED
    for board in boards.values():
        assert names_in(exprs(board)) <= known


def test_cli_check_reports_stale_boards(tmp_path):
    cli = CliRunner()
    args = ["dashboards", "--config", str(DEFAULT_PATH), "--out", str(tmp_path)]
    assert cli.invoke(main, args).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in
                                                                BOARDS.glob("*.json"))
    assert cli.invoke(main, [*args, "--check"]).exit_code == 0
    (tmp_path / "funnel.json").write_text("{}")
    out = cli.invoke(main, [*args, "--check"])
    assert out.exit_code == 1 and "funnel.json" in out.output


def test_provisioning_points_at_the_boards():
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert DATASOURCE.uid in {d["uid"] for d in ds["datasources"] if d["type"] == "prometheus"}
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/shoppulse.yml").read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
