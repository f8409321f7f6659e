"""Any River anomaly detector as a shoppulse detector, chosen per metric by dotted name.

Why: River ships several online anomaly detectors; an operator may want one of them on a
metric (``detector: {kind: river.anomaly.HalfSpaceTrees, params: {n_trees: 10}}``)
and compare it with the default one through the same API, persistence and benchmark.

Only names inside ``river.anomaly`` that are anomaly detectors are accepted (looked up
as attributes of the already imported module, never imported by name), so a config
cannot make a worker import arbitrary code; anything else is a :class:`ValueError`
naming the accepted ones (the config check reports it).

What the model sees: the window's value (the ratio for ratio points) with time-of-day
features ``tod_sin``/``tod_cos`` (mapped to [0, 1]), min-max scaled by River's
``preprocessing.MinMaxScaler``, so isolation-style models see the daily context.
Supervised-style scorers (``GaussianScorer``, ``StandardAbsoluteDeviation``) get the
value as their target. Alarm: the score reaches ``threshold`` if given, else the running
``q``-quantile of past scores (River's ``stats.Quantile``, like ``anomaly.QuantileFilter``);
no persistence logic, no band. The verdict's score is the model's score mapped into
[0, 1] (``s / (1 + s)`` for models whose scores are unbounded).

>>> det = make_river_detector("river.anomaly.HalfSpaceTrees", params={"n_trees": 3},
...                           seed=1)
>>> for i in range(400):
...     v = det.update(60.0 * i, 100.0 + (i % 10))
>>> v.detector, 0.0 <= v.score <= 1.0
('river.anomaly.HalfSpaceTrees', True)
>>> make_river_detector("river.linear_model.LinearRegression")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown River anomaly detector 'river.linear_model.LinearRegression'; ...
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from river import anomaly, preprocessing, stats
from river.base import AnomalyDetector, SupervisedAnomalyDetector

from shoppulse.detectors.base import Detector, Step

PREFIX = "river.anomaly."


def river_anomaly_names() -> list[str]:
    """Dotted names of River's anomaly detectors (filters and wrappers excluded)."""
    out = []
    for name in getattr(anomaly, "__all__", dir(anomaly)):
        obj = getattr(anomaly, name, None)
        if inspect.isclass(obj) and issubclass(obj, AnomalyDetector | SupervisedAnomalyDetector):
            out.append(PREFIX + name)
    return sorted(out)


def river_class(kind: str) -> type:
    """The River class of a dotted ``river.anomaly.<Name>``; ``ValueError`` otherwise."""
    names = river_anomaly_names()
    if kind not in names:
        raise ValueError(
            f"unknown River anomaly detector {kind!r}; expected one of {', '.join(names)}"
        )
    return getattr(anomaly, kind[len(PREFIX):])  # type: ignore[no-any-return]


class RiverDetector(Detector):
    """A River anomaly detector on ``{value, tod_sin, tod_cos}``; see the module docstring."""

    kind = "river"

    def __init__(
        self,
        *,
        model: str = "river.anomaly.HalfSpaceTrees",
        params: dict[str, Any] | None = None,
        window: float = 60.0,
        period: float = 86400.0,
        warmup: float = 1800.0,
        seed: int | None = None,
        q: float = 0.995,
        threshold: float | None = None,
    ) -> None:
        super().__init__(window=window, period=period, warmup=warmup, seed=seed)
        cls = river_class(model)
        kw = dict(params or {})
        if seed is not None and "seed" in inspect.signature(cls).parameters:
            kw.setdefault("seed", seed)
        try:
            estimator = cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{model}: bad params {kw!r}: {exc}") from exc
        self.kind = model  # type: ignore[misc]
        self.model_name = model
        self.params = dict(params or {})
        self.supervised = isinstance(estimator, SupervisedAnomalyDetector)
        self.scaler = preprocessing.MinMaxScaler()
        self.model = estimator
        self.q = q
        self.threshold = threshold
        self.quantile = stats.Quantile(q)

    def _features(self, ts: float, value: float) -> dict[str, float]:
        a = 2.0 * math.pi * (ts % self.period) / self.period
        return {"value": value, "tod_sin": 0.5 + 0.5 * math.sin(a),
                "tod_cos": 0.5 + 0.5 * math.cos(a)}

    def _step(
        self, ts: float, value: float, num: float | None, den: float | None, warming: bool
    ) -> Step:
        v = num / den if num is not None and den is not None else value
        raw = self._features(ts, v)
        x = self.scaler.transform_one(raw)
        try:
            s = float(self.model.score_one(x, v) if self.supervised  # type: ignore[call-arg]
                      else self.model.score_one(x))
        except ZeroDivisionError:  # some River scorers divide by a zero spread early on
            s = 0.0
        if not math.isfinite(s):
            s = 0.0
        if self.threshold is not None:
            alarm = s >= self.threshold
        else:
            limit = self.quantile.get()
            alarm = limit is not None and s > 0.0 and s > limit
            self.quantile.update(s)
        self.scaler.learn_one(raw)
        x = self.scaler.transform_one(raw)
        if self.supervised:
            self.model.learn_one(x, v)  # type: ignore[call-arg]
        else:
            self.model.learn_one(x)
        score = s if 0.0 <= s <= 1.0 else max(0.0, s) / (1.0 + max(0.0, s))
        return score, None, None, None, alarm, True

    def __repr__(self) -> str:
        return f"RiverDetector({self.model_name}, params={self.params!r})"


def make_river_detector(kind: str, **params: Any) -> RiverDetector:
    """A :class:`RiverDetector` for ``kind`` = ``river.anomaly.<Name>``."""
    return RiverDetector(model=kind, **params)
