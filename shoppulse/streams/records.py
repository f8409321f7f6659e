"""Records that travel on shoppulse's internal topics.

They live in ``streams/`` because they are streams too: the global stage writes
:class:`MetricPoint` to ``<app>.metrics``, the detector stage writes
:class:`Verdict` to ``<app>.anomalies``. Both are plain dataclasses encoded
with orjson so that any consumer (and any language) can read them.
"""

from __future__ import annotations

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


def series_key(metric: str, labels: dict[str, str]) -> str:
    """``metric{a=x,b=y}`` with labels sorted: the key of a series everywhere."""
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{metric}{{{inner}}}"
