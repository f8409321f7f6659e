"""The detector part of the config: kinds by name (River ones by dotted name), families
from the metric's kind, the hierarchy; bad detector config fails up front, naming where."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from shoppulse.agents.detection import DetectorStage
from shoppulse.streams.config import DEFAULT_PATH, ConfigError, load_config


def with_changes(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    change(data)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def metric(data: dict, name: str) -> dict:
    return next(m for m in data["metrics"] if m["name"] == name)


def test_families_come_from_the_metric_kind() -> None:
    stage = DetectorStage(load_config(DEFAULT_PATH, env={}), {}, CollectorRegistry())
    fam = {m: stage.params_for(m)[1]["family"] for m in (
        "orders", "sessions_started", "gmv", "conversion", "average_order_value",
        "dispatch_latency_p95")}
    assert fam == {"orders": "count", "sessions_started": "count", "gmv": "sum",
                   "conversion": "ratio", "average_order_value": "mean",
                   "dispatch_latency_p95": "real"}
    assert stage.config.hierarchy["conversion"] == "conversion_overall"


def test_a_river_kind_is_built_with_its_params(tmp_path: Path) -> None:
    def change(d: dict) -> None:
        metric(d, "orders")["detector"] = {"kind": "river.anomaly.HalfSpaceTrees",
                                           "params": {"n_trees": 5, "height": 6}}
    stage = DetectorStage(load_config(with_changes(tmp_path, change), env={}), {},
                          CollectorRegistry())
    kind, params = stage.params_for("orders")
    assert kind == "river.anomaly.HalfSpaceTrees" and "family" not in params
    assert params["params"] == {"n_trees": 5, "height": 6}


@pytest.mark.parametrize("kind", ["river.linear_model.LinearRegression", "river.anomaly.Nope",
                                  "river.anomaly.QuantileFilter", "river.compat"])
def test_names_outside_river_anomaly_are_a_config_error(tmp_path: Path, kind: str) -> None:
    def change(d: dict) -> None:
        metric(d, "orders")["detector"] = {"kind": kind}
    with pytest.raises(ConfigError) as exc:
        load_config(with_changes(tmp_path, change), env={})
    msg = str(exc.value)
    assert "detector" in msg and "river.anomaly" in msg and ":" in msg.split("\n")[0]


def test_bad_builtin_kind_or_param_stops_the_stage_naming_the_metric(tmp_path: Path) -> None:
    for det in ({"kind": "nope"}, {"no_such_param": 1},
                {"kind": "river.anomaly.HalfSpaceTrees", "params": {"bogus": 1}}):
        def change(d: dict, det: dict = det) -> None:
            metric(d, "gmv")["detector"] = det
        cfg = load_config(with_changes(tmp_path, change), env={})
        with pytest.raises(ValueError, match="metrics gmv: detector"):
            DetectorStage(cfg, {}, CollectorRegistry())


def test_hierarchy_references_are_checked(tmp_path: Path) -> None:
    def change(d: dict) -> None:
        d["hierarchy"] = {"conversion": "nope_overall", "orders": "conversion_overall"}
    with pytest.raises(ConfigError) as exc:
        load_config(with_changes(tmp_path, change), env={})
    msg = str(exc.value)
    assert "hierarchy.conversion: unknown metric 'nope_overall'" in msg
    assert "hierarchy.orders" in msg and "cannot pool" in msg
