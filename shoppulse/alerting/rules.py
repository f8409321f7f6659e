"""Rules: from a point or a verdict to a :class:`Sample` (condition plus evidence).

Plain code on event timestamps. A rule says whether its condition holds for one
window (``cond``: True, False, or None for "cannot tell", e.g. a ratio below its
minimum denominator or a detector still warming up) and carries the numbers an alert
shows. Timing (``for``, ``keep_firing_for``, flapping) is the lifecycle's business.

Two judgements keep alerts honest on the numbers they show:

* a proportion (``0 <= numerator <= denominator``) is judged with its uncertainty: it is
  bad only when its whole Wilson interval (:data:`WILSON_Z`) lies on the bad side of the
  threshold, good when the observed value is on the good side, and "cannot tell" in
  between. A thin window that is low by chance (13 clicks of 500 impressions against a
  4.5 % CTR) therefore does not page, while an outage (12 paid of 20) does.
* an anomaly alert starts on the detector's verdict, and lasts while the detector's
  evidence is still above its release level (:attr:`~shoppulse.streams.records.Verdict.
  alarm_now`: the alarm episode without its 15-minute cooldown) *or* the value is outside
  its expected band (:attr:`Sample.holds`): it never resolves with the value still far off
  because the detector's level absorbed the shift, and it resolves once the value is back
  inside the band and the evidence has faded, the notion the playbooks' recovery uses
  (:attr:`~shoppulse.streams.records.Verdict.inside_band`). It may start
  with the latest value inside the band: the detector's evidence runs over several
  windows (a stock-out's basket rate at 0 for 9 windows against a per-window band floored
  at 0 leaves the band in none of them), which an alert on single windows would miss.
"""

from __future__ import annotations

import fnmatch
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoppulse.streams.config import Config
from shoppulse.streams.records import MetricPoint, Verdict
from shoppulse.streams.rules_config import DAY, WEEK, RuleSpec, topics_of

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

WILSON_Z = 3.0
"""Width of the Wilson interval a proportion is judged with, in standard errors (99.7 %
two-sided). Each rule judges thousands of windows a day: at 95 % the bounce rule (normal
38 %, threshold 40 %) went pending on one window in about 120 of normal traffic (57 bounced
of 116 in a demo window), at 3 standard errors on about one in 5 000."""


def wilson(numerator: float, denominator: float, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of ``numerator / denominator``: sound on thin windows and at
    0 % or 100 %, where the normal approximation's interval collapses to a point."""
    n = denominator
    p = numerator / n
    d = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / d
    half = z / d * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Sample:
    """What one evaluation saw, between event times ``start`` and ``end``."""

    cond: bool | None
    start: float
    end: float
    value: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    score: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    contributors: list[dict[str, Any]] = field(default_factory=list)
    distance: float = 0.0
    """How far into trouble: the peak of an episode is the sample farthest in."""
    holds: bool | None = None
    """The condition for an alert already pending or firing, when it differs from the
    one that starts it (``None``: the same, ``cond``)."""


class Rule:
    """A compiled :class:`RuleSpec`; subclasses judge points or verdicts."""

    def __init__(self, spec: RuleSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.name = spec.name
        self.kind = spec.kind
        self.severity = spec.severity

    @property
    def hold_for(self) -> float:
        """The lifecycle's ``for``: an absence rule's ``for`` is the silence itself."""
        return 0.0 if self.kind == "absence" else self.spec.for_

    def applies(self, metric: str, labels: dict[str, str]) -> bool:
        spec = self.spec
        if spec.metric is None or not fnmatch.fnmatchcase(metric, spec.metric):
            return False
        return all(labels.get(k) == v for k, v in spec.match.items())

    def alert_labels(self, metric: str, labels: dict[str, str]) -> dict[str, str]:
        """Series labels, ``metric``, then the rule's own labels."""
        return {**labels, "metric": metric, **self.spec.labels}

    def _enough(self, point: MetricPoint | Verdict, denominator: float | None) -> bool:
        if point.value is None or (isinstance(point.value, float) and math.isnan(point.value)):
            return False
        return denominator is None or denominator >= self.spec.min_denominator


class ThresholdRule(Rule):
    def evaluate(self, p: MetricPoint) -> Sample:
        level = float(self.spec.value)  # type: ignore[arg-type]
        base = {"start": p.window_start, "end": p.window_end, "value": p.value,
                "numerator": p.numerator, "denominator": p.denominator, "expected": level}
        if not self._enough(p, p.denominator):
            return Sample(cond=None, **base)
        value = float(p.value)  # type: ignore[arg-type]
        op = self.spec.op
        cond: bool | None = _OPS[op](value, level)  # type: ignore[index]
        num, den = p.numerator, p.denominator
        if cond and num is not None and den and 0.0 <= num <= den:
            lo, hi = wilson(float(num), float(den))
            # bad only if the whole interval is: else the window cannot tell
            cond = _OPS[op](hi if op in ("<", "<=") else lo, level) or None  # type: ignore[index]
        return Sample(cond=cond, distance=abs(value - level), **base)


class AnomalyRule(Rule):
    def evaluate(self, v: Verdict) -> Sample:
        base = {"start": v.window_start, "end": v.window_end, "value": v.value,
                "expected": v.expected, "lower": v.lower, "upper": v.upper, "score": v.score,
                "contributors": list(v.contributors)}
        if v.warming_up or v.value is None or v.value != v.value:
            return Sample(cond=None, **base)  # no value: the band cannot be judged
        level = self.spec.min_score
        # the evidence now, not the episode: that lasts the detector's cooldown, in which
        # an alert would neither resolve nor, once resolved, stay so
        alarm = v.alarm_now if level is None else v.score >= level
        return Sample(cond=alarm, holds=alarm or not v.inside_band,
                      distance=_outside(v.value, v.lower, v.upper, v.expected), **base)


class ChangeRule(Rule):
    """Relative change against the same window a day and a week earlier."""

    offsets = (DAY, WEEK)

    def evaluate(self, p: MetricPoint, refs: list[float | None]) -> Sample:
        known = [r for r in refs if r is not None and r > 0]
        expected = sum(known) / len(known) if known else None
        base = {"start": p.window_start, "end": p.window_end, "value": p.value,
                "numerator": p.numerator, "denominator": p.denominator, "expected": expected}
        if not known or not self._enough(p, p.denominator):
            return Sample(cond=None, **base)
        value = float(p.value)  # type: ignore[arg-type]
        rels = [(value - r) / r for r in known]
        c = float(self.spec.change)  # type: ignore[arg-type]
        drop, rise = max(rels) <= -c, min(rels) >= c
        cond = {"drop": drop, "rise": rise, "any": drop or rise}[self.spec.direction]
        return Sample(cond=cond, distance=abs(value - expected), **base)  # type: ignore[operator]


class AbsenceRule(Rule):
    """Silence: no point of a series (``metric``) or of a topic's metrics for ``for``."""

    def evaluate(self, seen: float, clock: float) -> Sample:
        silent = clock - seen
        return Sample(cond=silent >= self.spec.for_, start=seen, end=clock,
                      value=silent, expected=self.spec.for_, distance=silent)


_KINDS = {"threshold": ThresholdRule, "anomaly": AnomalyRule, "change": ChangeRule,
          "absence": AbsenceRule}


class RuleSet:
    """All rules of a config, indexed by metric name (globs resolved once per name)."""

    def __init__(self, config: Config, kinds: set[str] | None = None) -> None:
        self.config = config
        self.rules = [_KINDS[s.kind](s, i) for i, s in enumerate(config.rules)
                      if kinds is None or s.kind in kinds]
        self.by_name = {r.name: r for r in self.rules}
        self._metric_topics = {m.name: topics_of(config, m) for m in config.metrics}
        self._for_metric: dict[str, list[Rule]] = {}
        self._topic_rules: dict[str, list[AbsenceRule]] = {}

    def for_metric(self, metric: str) -> list[Rule]:
        """Rules that look at this metric's series (absence by topic excluded)."""
        got = self._for_metric.get(metric)
        if got is None:
            got = self._for_metric[metric] = [
                r for r in self.rules
                if r.spec.metric is not None and fnmatch.fnmatchcase(metric, r.spec.metric)]
        return got

    def topic_absence(self, metric: str) -> list[AbsenceRule]:
        """Absence rules on a topic that this metric's points prove alive."""
        got = self._topic_rules.get(metric)
        if got is None:
            topics = self._metric_topics.get(metric, set())
            got = self._topic_rules[metric] = [
                r for r in self.rules
                if isinstance(r, AbsenceRule) and r.spec.topic in topics]
        return got


def _outside(value: float | None, lower: float | None, upper: float | None,
             expected: float | None) -> float:
    """Distance of a value outside its band (or from the expected value without one)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    if lower is not None and value < lower:
        return lower - value
    if upper is not None and value > upper:
        return value - upper
    return abs(value - expected) * 1e-9 if expected is not None else 0.0
