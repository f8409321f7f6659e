"""Config validation: every error names file, line, key path and expectation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shoppulse.commands.cli import main
from shoppulse.streams.config import DEFAULT_PATH, ConfigError, load_config, parse_duration

GOOD_TOPIC = """
topics:
  visits:
    key: vid
    fields:
      vid: {type: string}
      ts: {type: timestamp}
      kind: {type: string, enum: [a, b]}
"""


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    return exc.value, str(exc.value)


def test_builtin_config_is_valid():
    cfg = load_config(DEFAULT_PATH, env={})
    assert set(cfg.topics) == {"clicks", "orders", "logistics"}
    names = {m.prometheus_name for m in cfg.metrics}
    assert {"shoppulse_ctr_ratio", "shoppulse_bounce_ratio", "shoppulse_orders_total",
            "shoppulse_dispatch_latency_p95_seconds"} <= names


def test_unknown_topic_names_line_and_path(tmp_path):
    metric = "metrics:\n  - {name: x, kind: count, topic: vists}\n"
    _, text = problems(tmp_path, GOOD_TOPIC + metric)
    assert "c.yaml:10: metrics[0].topic: unknown topic 'vists' (known: visits)" in text


def test_bad_type_and_duration(tmp_path):
    _, text = problems(tmp_path, GOOD_TOPIC.replace("type: string}", "type: str}", 1)
                       + "windows: {size: 10 parsecs}\n")
    assert ":6: topics.visits.fields.vid.type:" in text
    assert "windows.size: expected a duration like 30s, 5m, 2h" in text


def test_missing_and_unknown_keys(tmp_path):
    _, text = problems(tmp_path, GOOD_TOPIC.replace("    key: vid\n", "") + "colour: blue\n")
    assert "topics.visits.key: required key is missing" in text
    assert "colour: unknown key" in text


def test_ratio_and_dimension_references(tmp_path):
    _, text = problems(tmp_path, GOOD_TOPIC + """metrics:
  - name: share
    kind: ratio
    numerator: {topic: visits, filter: {colour: a}}
    denominator: {topic: visits}
    dimensions: [region]
""")
    assert "metrics[0].numerator.filter.colour: 'colour' is not a field of 'visits'" in text
    assert "metrics[0].dimensions[0]: dimension 'region' is not a field of topic 'visits'" in text
    assert text.count("dimensions[0]") == 1, "one problem reported once"


def test_metric_name_must_leave_suffix_to_unit(tmp_path):
    _, text = problems(tmp_path, GOOD_TOPIC + """metrics:
  - {name: share_ratio, kind: ratio, numerator: {topic: visits}, denominator: {topic: visits}}
""")
    assert "leave the '_ratio' suffix out of the name" in text


def test_yaml_syntax_error_has_a_line(tmp_path):
    _, text = problems(tmp_path, "topics: {\n  a: [\n")
    assert "invalid YAML" in text and "c.yaml:" in text


def test_env_overrides(tmp_path):
    cfg = load_config(write(tmp_path, GOOD_TOPIC),
                      env={"SHOPPULSE_BROKER": "kafka://h:9", "SHOPPULSE_WINDOWS__SIZE": "10s"})
    assert cfg.broker == "kafka://h:9" and cfg.windows.size == 10.0


def test_bounce_timeout_cannot_exceed_grace(tmp_path):
    text = GOOD_TOPIC + """sessions: {topic: visits, key: vid, bounce_timeout: 2m}
metrics:
  - {name: started, kind: session, session: started}
"""
    _, msg = problems(tmp_path, text)
    assert "sessions.bounce_timeout: must not exceed windows.grace" in msg


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200
    with pytest.raises(ValueError):
        parse_duration("-3s")


def test_config_check_cli(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(DEFAULT_PATH)])
    assert ok.exit_code == 0 and "metric shoppulse_conversion_ratio (ratio)" in ok.output
    bad = runner.invoke(main, ["config", "check", str(write(tmp_path, "topics: 3\n"))])
    assert bad.exit_code != 0 and "topics: " in bad.output


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    runner = CliRunner()
    no_broker = runner.invoke(main, ["simulate", "--duration", "1s"], env={"SHOPPULSE_BROKER": ""})
    assert no_broker.exit_code != 0 and "needs a running broker" in no_broker.output
    bad = runner.invoke(main, ["simulate", "--incident", "nope@1m+1m", "--out",
                               str(tmp_path / "x.jsonl")])
    assert bad.exit_code != 0 and "unknown scenario 'nope'" in bad.output
