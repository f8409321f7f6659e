"""``shoppulse rules test FILE``: fixture points and verdicts -> expected alerts.

Like ``promtool test rules``: a YAML file of test cases, each with input series on
event time and the transitions it must produce; any difference is reported and the
command exits non-zero. The same engine as the worker runs the rules, so a test that
passes here passes in the pipeline. Format::

    config: ../shoppulse.yaml      # optional, relative to this file (default: built-in)
    rules: [...]                   # optional: replaces the config's rules
    tests:
      - name: payment outage pages once
        start: 1767254400          # event-time origin (default 0)
        interval: 1m               # window size (default: the config's)
        pending: false             # compare pending transitions too (default false)
        series:                    # MetricPoints, one per interval
          - metric: payment_success_overall
            labels: {}
            values: "0.97x3 0.4x4 _ 0.97x4"   # vxN = v N times; _ = no point
            denominator: 50        # optional, for ratio metrics
        verdicts:                  # Verdicts, one per interval
          - metric: orders_overall
            anomalous: "0x3 1x2 0x3"
            values: "100x3 20x2 100x3"
            expected: 100
            lower: 80
            upper: 120
        expect:                    # at: event time since start (end of the window judged)
          - {rule: PaymentSuccessLow, state: firing, at: 6m, value: 0.4}
          - {rule: PaymentSuccessLow, state: resolved, at: 9m,
             annotations: {summary: "Payment success 97.0 % (expected >= 90.0 %)"}}
        notifications:             # optional: what each receiver gets after grouping
          - {receiver: oncall, group: {alertname: PaymentSuccessLow}, at: 390s,
             firing: 1, resolved: 0}

``notifiers:`` at the top (optional) replaces the config's receivers, like ``rules:``.
With ``notifications`` a case is also checked after grouping, as the receivers would get
it (:mod:`shoppulse.alerting.notifiers.timeline`: Alertmanager's ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval`` on event time): per notification
the receiver, the group's labels exactly, and optionally ``at`` (event time since start),
``firing`` and ``resolved`` (counts in that message) and ``repeat``. Every notification
produced must be expected, in order per receiver and group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shoppulse.alerting.engine import AlertEngine
from shoppulse.streams.config import DEFAULT_PATH, load_config, parse_duration
from shoppulse.streams.records import Alert, MetricPoint, Verdict

_FIELDS = ("episode", "severity", "value", "peak", "expected", "lower", "upper", "score",
           "numerator", "denominator", "starts_at", "ends_at")


@dataclass
class CaseResult:
    name: str
    problems: list[str] = field(default_factory=list)
    produced: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def expand(values: Any) -> list[float | None]:
    """``"1 2x3 _"`` -> [1, 2, 2, 2, None]; a list is taken as is.

    >>> expand("0.5x2 _ 1")
    [0.5, 0.5, None, 1.0]
    """
    if isinstance(values, list):
        return [None if v is None or v == "_" else float(v) for v in values]
    out: list[float | None] = []
    for tok in str(values).split():
        v, _, n = tok.partition("x")
        item = None if v == "_" else float(v)
        out.extend([item] * (int(n) if n else 1))
    return out


def run_file(path: str | Path) -> list[CaseResult]:
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    cfg_path = doc.get("config")
    cfg_file = (path.parent / cfg_path) if cfg_path else DEFAULT_PATH
    overrides = {k: doc[k] for k in ("rules", "notifiers") if k in doc} or None
    config = load_config(cfg_file, overrides=overrides, env={})
    return [run_case(config, case, i) for i, case in enumerate(doc.get("tests") or [])]


def run_case(config: Any, case: dict[str, Any], index: int) -> CaseResult:
    res = CaseResult(case.get("name") or f"tests[{index}]")
    start = float(case.get("start", 0.0))
    step = parse_duration(case.get("interval", config.windows.size))
    inputs: list[tuple[float, int, Any]] = []  # (window start, order, record)
    for s in case.get("series") or []:
        den = s.get("denominator")
        for i, v in enumerate(expand(s.get("values", []))):
            if v is None:
                continue
            t = start + i * step
            inputs.append((t, 0, MetricPoint(
                metric=s["metric"], labels=s.get("labels") or {}, window_start=t,
                window_end=t + step, value=v, numerator=None if den is None else v * den,
                denominator=den, kind="ratio" if den is not None else "count")))
    for s in case.get("verdicts") or []:
        flags = expand(s.get("anomalous", []))
        vals = expand(s.get("values", [])) or [None] * len(flags)
        scores = expand(s["scores"]) if "scores" in s else [
            None if f is None else (0.999 if f else 0.1) for f in flags]
        for i, f in enumerate(flags):
            if f is None:
                continue
            t = start + i * step
            inputs.append((t, 1, Verdict(
                score=scores[i], expected=s.get("expected"), lower=s.get("lower"),
                upper=s.get("upper"), anomalous=bool(f), warming_up=False,
                metric=s["metric"], labels=s.get("labels") or {}, window_start=t,
                window_end=t + step, value=vals[i] if i < len(vals) else None,
                contributors=s.get("contributors") or [])))
    engine = AlertEngine(config, {}, partitions=1)
    produced: list[Alert] = []
    for _, _, rec in sorted(inputs, key=lambda x: (x[0], x[1])):
        if isinstance(rec, MetricPoint):
            produced += engine.on_point(rec)
        else:
            produced += engine.on_verdict(rec)
    if not case.get("pending", False):
        produced = [a for a in produced if a.state != "pending"]
    res.produced = len(produced)
    left = list(produced)
    for j, exp in enumerate(case.get("expect") or []):
        at = start + parse_duration(exp.get("at", 0))
        match = next((a for a in left if a.rule == exp.get("rule") and
                      a.state == exp.get("state") and math.isclose(a.at, at) and
                      ("labels" not in exp or a.labels == _labels(exp, a))), None)
        where = f"expect[{j}] {exp.get('rule')} {exp.get('state')} at {exp.get('at')}"
        if match is None:
            res.problems.append(f"{where}: missing")
            continue
        left.remove(match)
        for key in _FIELDS:
            if key in exp and not _same(getattr(match, key), exp[key], start, key):
                res.problems.append(f"{where}: {key} is {getattr(match, key)!r}, "
                                    f"expected {exp[key]!r}")
        for key, text in (exp.get("annotations") or {}).items():
            if match.annotations.get(key) != text:
                res.problems.append(f"{where}: annotation {key} is "
                                    f"{match.annotations.get(key)!r}, expected {text!r}")
    for a in left:
        res.problems.append(f"unexpected: {a.rule} {a.state} at {a.at - start:g}s "
                            f"{a.labels} value={a.value!r}")
    if "notifications" in case:
        until = max((x[2].window_end for x in inputs), default=start)
        res.problems += check_notifications(config, produced, case["notifications"] or [],
                                            start, until)
    return res


def check_notifications(config: Any, produced: list[Alert], expected: list[dict[str, Any]],
                        start: float, until: float) -> list[str]:
    """Differences between the notifications the receivers would get and ``expected``."""
    from shoppulse.alerting.notifiers.timeline import notifications

    if not config.notifiers:
        return ["notifications: the config has no receivers (add 'notifiers:')"]
    sent = notifications(config.notifiers, produced, until)
    problems = []
    left = list(sent)
    for j, exp in enumerate(expected):
        group = {k: str(v) for k, v in (exp.get("group") or {}).items()}
        at = None if "at" not in exp else start + parse_duration(exp["at"])
        where = f"notifications[{j}] {exp.get('receiver')} {group}"
        match = next((n for n in left if n.receiver == exp.get("receiver") and
                      n.group == group), None)
        if match is None:
            problems.append(f"{where}: missing")
            continue
        left.remove(match)
        if at is not None and not math.isclose(match.at, at):
            problems.append(f"{where}: at {match.at - start:g}s, expected {exp['at']}")
        for key in ("firing", "resolved", "repeat"):
            if key in exp and getattr(match, key) != exp[key]:
                problems.append(f"{where}: {key} is {getattr(match, key)!r}, "
                                f"expected {exp[key]!r}")
    for n in left:
        problems.append(f"unexpected notification: {n.receiver} {n.group} at "
                        f"{n.at - start:g}s firing={n.firing} resolved={n.resolved}"
                        + (" (repeat)" if n.repeat else ""))
    return problems


def _labels(exp: dict[str, Any], a: Alert) -> dict[str, str]:
    """Expected labels; ``metric`` may be left out (it is the series' metric)."""
    want = {k: str(v) for k, v in exp["labels"].items()}
    want.setdefault("metric", a.labels.get("metric", ""))
    return want


def _same(got: Any, want: Any, start: float, key: str) -> bool:
    if key in ("starts_at", "ends_at") and want is not None:
        want = start + parse_duration(want)
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)
    return got == want
