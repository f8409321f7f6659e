"""Records that travel on shoppulse's internal topics.

They live in ``streams/`` because they are streams too: the global stage writes
:class:`MetricPoint` to ``<app>.metrics``, the detector stage writes
:class:`Verdict` to ``<app>.anomalies``, the alert stage writes :class:`Alert`
transitions to ``<app>.alerts``. Both are plain dataclasses encoded
with orjson so that any consumer (and any language) can read them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


class _JsonRecord:
    """orjson in and out: any consumer, in any language, can read the topic."""

    __slots__ = ()

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def loads(cls, data: bytes | str | dict[str, Any]) -> Any:
        d = data if isinstance(data, dict) else orjson.loads(data)
        return cls(**d)


@dataclass(frozen=True, slots=True)
class MetricPoint(_JsonRecord):
    """The value of one metric series over one closed window.

    ``numerator``/``denominator`` are kept for ratio metrics so that
    consumers can tell 0 of 3 from 0 of 3 000; ``count`` is the number of
    events that contributed.
    """

    metric: str
    labels: dict[str, str]
    window_start: float
    window_end: float
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    count: int = 0
    kind: str = "count"

    @property
    def series(self) -> str:
        """Stable key of the series: metric name plus sorted labels."""
        return series_key(self.metric, self.labels)


@dataclass(frozen=True, slots=True)
class Verdict(_JsonRecord):
    """A detector's judgement of one point: scored first, then learned."""

    score: float
    expected: float | None
    lower: float | None
    upper: float | None
    anomalous: bool
    warming_up: bool
    metric: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    window_start: float = 0.0
    window_end: float = 0.0
    value: float | None = None
    detector: str = ""
    contributors: list[dict[str, Any]] = field(default_factory=list)
    """Children that drive a parent's deviation, largest share first (at most three):
    ``{"labels": {...}, "expected": x, "actual": y, "share": 0..1}``."""
    alarming: bool | None = None
    """The alarm without its cooldown: the detector's evidence is still above its release
    level in this window (``None``: not told, :attr:`anomalous` stands for it)."""

    @property
    def alarm_now(self) -> bool:
        """What an alert holds on: the episode (``anomalous``) lasts a cooldown (15 min by
        default) past the evidence, so that one incident raises one episode; a responder
        asks whether the evidence is there now."""
        return self.anomalous if self.alarming is None else self.alarming

    @property
    def inside_band(self) -> bool:
        """Back to normal: judged, and the value inside the expected band.

        Not the ``anomalous`` flag: that is the detector's alarm *episode*, which ends only
        after its evidence stayed low for a cooldown (15 min by default), so one incident
        raises one episode. Alerts and playbook runs ask whether the business is back,
        window by window."""
        if self.warming_up or self.value is None:
            return False
        lo = -math.inf if self.lower is None else self.lower
        hi = math.inf if self.upper is None else self.upper
        return lo <= self.value <= hi


ALERT_STATES = ("pending", "firing", "resolved")


@dataclass(frozen=True, slots=True)
class Alert(_JsonRecord):
    """One transition of an alert's lifecycle, as written to ``<app>.alerts``.

    ``fingerprint`` is stable for (rule, labels); ``episode`` counts the times it
    went from inactive to firing, so (fingerprint, episode, state) names a
    transition exactly once: notifiers deduplicate deliveries on it. Times are
    event time (epoch seconds); ``ends_at`` is set on ``resolved``. ``peak`` is the
    value farthest from the expected band during the episode, so a resolve shows
    both where the series is now (``value``) and how bad it got.
    """

    fingerprint: str
    episode: int
    state: str
    rule: str
    severity: str
    labels: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    at: float = 0.0
    value: float | None = None
    peak: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    score: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    contributors: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, str]:
        """(fingerprint, episode, state): one delivery per transition."""
        return (self.fingerprint, self.episode, self.state)


@dataclass(frozen=True, slots=True)
class PlaybookStep(_JsonRecord):
    """One step of a playbook run, as written to ``<app>.playbook-runs``: the audit log.

    ``who`` is ``shoppulse``, ``auto`` or the approving human; ``at`` is wall time,
    ``event_at`` the event time of the alert that started the run; ``inputs`` never
    carry secrets (the runner redacts them). ``status`` is one of started, attached,
    succeeded, failed, dry_run, skipped, awaiting_approval, approved, rejected,
    escalated, recovered, unknown (a non-idempotent call interrupted by a crash: never
    repeated, escalated instead).
    """

    run_id: str
    playbook: str
    fingerprint: str
    stage: str
    status: str
    at: float
    step: str = ""
    who: str = "shoppulse"
    event_at: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    dry_run: bool = False
    drill: bool = False


def series_key(metric: str, labels: dict[str, str]) -> str:
    """``metric{a=x,b=y}`` with labels sorted: the key of a series everywhere."""
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{metric}{{{inner}}}"
