"""Alert rules in config: the ``rules:`` list, validated with key paths like the rest.

Four kinds, each with ``for``, ``keep_firing_for``, severity, labels and templated
annotations (Jinja2, rendered in an immutable sandbox by ``alerting.templates``):

* ``threshold``: a metric's value compared with a level; ratio metrics skip windows
  whose denominator is below ``min_denominator`` (0 of 3 does not page);
* ``anomaly``: the detector's verdict is anomalous (or its score reaches ``min_score``);
* ``absence``: no points of a series (``metric``) or of any metric read from a
  ``topic`` for ``for`` of event time;
* ``change``: relative change against the same window a day and a week earlier.

Timings that contradict each other are config errors, not surprises at 3 a.m.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from shoppulse.streams.config import Config

_RULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ANNOTATION_KEYS = ("summary", "description", "runbook_url", "dashboard_url", "playbook")
RESERVED_LABELS = ("alertname", "metric", "rule", "severity")
DAY, WEEK = 86400.0, 7 * 86400.0


def _duration(v: Any) -> float:
    from shoppulse.streams.config import parse_duration  # config imports this module

    return parse_duration(v)


class RuleSpec(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    kind: Literal["threshold", "anomaly", "absence", "change"]
    metric: str | None = None
    """Metric name, or a glob over metric names (``*_overall``)."""
    topic: str | None = None
    match: dict[str, str] = Field(default_factory=dict)
    """Series labels that must equal these values (``{channel: ads}``)."""
    op: Literal["<", "<=", ">", ">="] | None = None
    value: float | None = None
    min_denominator: float = Field(default=0.0, ge=0)
    min_score: float | None = Field(default=None, ge=0, le=1)
    change: float | None = Field(default=None, gt=0)
    """Relative change that counts, e.g. 0.5 = 50 %."""
    direction: Literal["drop", "rise", "any"] = "drop"
    for_: float = Field(default=0.0, alias="for")
    keep_firing_for: float = 0.0
    flap_window: float = 3600.0
    """After a resolve, for this long a new episode needs ``flap_for`` of trouble."""
    flap_for: float = 900.0
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    _d = field_validator("for_", "keep_firing_for", "flap_window", "flap_for",
                         mode="before")(_duration)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _RULE_NAME.match(v):
            raise ValueError("expected a name of letters, digits and _ (PaymentSuccessLow)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k in RESERVED_LABELS:
                raise ValueError(f"label {k!r} is set by shoppulse")
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        env = jinja2.Environment(autoescape=False)
        for k, text in v.items():
            if k not in ANNOTATION_KEYS:
                raise ValueError(f"annotation {k!r}: expected one of {', '.join(ANNOTATION_KEYS)}")
            try:
                env.parse(text)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"annotation {k!r}: template line {exc.lineno}: "
                                 f"{exc.message}") from None
        return v

    @model_validator(mode="after")
    def _shape(self) -> RuleSpec:
        k = self.kind
        if k == "absence":
            if (self.metric is None) == (self.topic is None):
                raise ValueError("an absence rule needs exactly one of 'metric' or 'topic'")
            if self.for_ <= 0:
                raise ValueError("an absence rule needs 'for': how long the silence lasts")
        elif self.metric is None:
            raise ValueError(f"a {k} rule needs 'metric'")
        elif self.topic is not None:
            raise ValueError(f"a {k} rule takes no 'topic'")
        if k == "threshold" and (self.op is None or self.value is None):
            raise ValueError("a threshold rule needs 'op' (<, <=, >, >=) and 'value'")
        if k != "threshold" and (self.op is not None or self.value is not None):
            raise ValueError(f"a {k} rule takes no 'op'/'value'")
        if k == "change" and self.change is None:
            raise ValueError("a change rule needs 'change': the relative change, e.g. 0.5")
        if k != "change" and self.change is not None:
            raise ValueError(f"a {k} rule takes no 'change'")
        if k != "anomaly" and self.min_score is not None:
            raise ValueError("'min_score' belongs to anomaly rules")
        if self.flap_for < self.for_:
            raise ValueError("flap_for must not be shorter than 'for': a flapping alert "
                             "would re-fire sooner than a new one")
        if self.flap_window and self.flap_window < self.keep_firing_for:
            raise ValueError("flap_window must not be shorter than keep_firing_for")
        return self


def check_rules(config: Config) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-references and timings that need the rest of the config."""
    errors: list[tuple[tuple[Any, ...], str]] = []
    metrics = {m.name: m for m in config.metrics}
    seen: dict[str, int] = {}
    for i, r in enumerate(config.rules):
        base: tuple[Any, ...] = ("rules", i)
        if r.name in seen:
            errors.append(((*base, "name"), f"duplicate rule name {r.name!r} "
                                            f"(also rules[{seen[r.name]}])"))
        seen.setdefault(r.name, i)
        if r.topic is not None and r.topic not in config.topics:
            errors.append(((*base, "topic"), f"unknown topic {r.topic!r} "
                                             f"(known: {', '.join(config.topics)})"))
            continue
        if r.metric is None:
            chosen = [m for m in config.metrics if r.topic in topics_of(config, m)]
            if not chosen:
                errors.append(((*base, "topic"), f"no metric reads topic {r.topic!r}: "
                                                 "its silence would not show"))
                continue
        else:
            chosen = [m for n, m in metrics.items() if fnmatch.fnmatchcase(n, r.metric)]
        if not chosen:
            errors.append(((*base, "metric"), f"no metric matches {r.metric!r}"))
            continue
        for key in r.match:
            if not all(key in m.dimensions for m in chosen):
                errors.append(((*base, "match", key),
                               f"{key!r} is not a dimension of every metric {r.metric!r} "
                               "matches"))
        windows = {config.window_of(m) for m in chosen}
        slowest = max(windows)
        if r.kind == "absence" and r.for_ < slowest + config.windows.grace:
            errors.append(((*base, "for"),
                           f"{r.for_:g}s is shorter than a window plus grace "
                           f"({slowest + config.windows.grace:g}s): it would fire between "
                           "any two points"))
        if r.kind == "change" and any(DAY % w or WEEK % w for w in windows):
            errors.append(((*base, "metric"), "a change rule needs windows that divide a day"))
        if 0 < r.for_ < slowest and r.kind != "absence":
            errors.append(((*base, "for"),
                           f"{r.for_:g}s is shorter than the metric's window ({slowest:g}s): "
                           "conditions are judged once per window"))
        if 0 < r.keep_firing_for < slowest:
            errors.append(((*base, "keep_firing_for"),
                           f"{r.keep_firing_for:g}s is shorter than the metric's window "
                           f"({slowest:g}s)"))
    return errors


def topics_of(config: Config, metric: Any) -> set[str]:
    """The input topics a metric reads (a session component reads the sessions topic)."""
    return {config.sessions.topic if c.session else c.topic for c in metric.components()}
