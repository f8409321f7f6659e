"""The shape every detector shares: input rules, cadence, warm-up and the Verdict.

Why a base class: the contract (score first, then learn; what happens to NaN; what
warm-up means) must be identical for every kind, or the benchmark and the agent would
have to special-case them. Subclasses implement only :meth:`Detector._step`.

Every detector is a River anomaly detector (:class:`river.base.AnomalyDetector`):
``learn_one(x)`` / ``score_one(x)`` take ``x = {"ts": ..., "value": ...,
"numerator": ..., "denominator": ...}``. The pipeline uses :meth:`Detector.update`, which
scores then learns in one pass and returns the full :class:`Verdict` (band, alarm state);
``score_one`` scores a throwaway copy, so it costs a copy of the model.

Input rules, the same for every kind:

- ``ts`` is the start of the point's window, in epoch seconds (event time).
- A point whose ``ts`` or ``value`` is ``None``, NaN or ±inf is *not judged and not
  learned*: the verdict has ``score=0``, ``anomalous=False``, no expected band, and
  ``warming_up`` as it was. Missing windows therefore never alarm by themselves (a
  ``count`` series reports 0, not ``None``, for an empty window).
- ``numerator``/``denominator`` are used only when both are finite, ``denominator > 0``
  and ``numerator >= 0``; otherwise the point counts as value-only. A detector that
  needs them (a ratio series) treats a value-only point like a missing one.
- Points are expected in event-time order; nothing breaks if one is late, it is simply
  scored at its own time of day.

Time, not points: the **cadence** is read from the timestamps (the median of the last 9
gaps between points; River's ``stats.RollingQuantile`` does the same but its Rust state
costs ~250 us to pickle, against ~5 us for this list, and the model is pickled after every
window); ``window`` is only the first guess and the verdict's ``window_end``. Every time
constant (warm-up, half-lives, profile maturity, acceptance, cool-down) is in seconds
and converted with the measured cadence, so an hourly series matures in days as a
minute series does (statistics that need several points keep a floor in points: a
level averages at least 3, a noise scale at least 12).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

from river.base import AnomalyDetector

from shoppulse.streams.records import Verdict

Step = tuple[float, float | None, float | None, float | None, bool, bool]
"""What :meth:`Detector._step` returns: score, expected, lower, upper, alarm, learned."""

MIN_WARMUP_POINTS = 8
"""Fewest valid points of any warm-up: a scale needs a few residuals, whatever the time."""


def finite(x: Any) -> float | None:
    """``float(x)`` if it is a finite number, else ``None`` (covers None, NaN, ±inf, junk)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class Detector(AnomalyDetector):
    """Base of all detectors: ``update(ts, value, numerator=, denominator=) -> Verdict``.

    Parameters common to every kind:

    window
        Seconds covered by one point (the metric's window), default 60: the first guess
        of the cadence and the verdict's ``window_end``; the timestamps decide after that.
    period
        Seconds of one season (default 86 400: the daily rhythm).
    warmup
        Seconds of valid points during which the verdict says ``warming_up=True`` and is
        never anomalous (default 1 800 s; at least 8 points): ``ceil(warmup / cadence)``
        points, so gaps in the data do not end the warm-up early.
    seed
        Seed for detectors that use randomness; accepted (and ignored) by the others so
        that every kind can be built with the same parameters.
    """

    kind: ClassVar[str] = "base"
    seasonal: ClassVar[bool] = False
    """Models the daily rhythm (``period``): the rhythm alone does not alarm."""
    ratio_aware: ClassVar[bool] = False
    """Judges numerator against denominator: 0 of 3 is not 0 of 3 000."""

    def __init__(
        self,
        *,
        window: float = 60.0,
        period: float = 86400.0,
        warmup: float = 1800.0,
        seed: int | None = None,
    ) -> None:
        if not window > 0 or not period > 0 or not warmup >= 0:
            raise ValueError("window and period must be > 0 and warmup >= 0")
        self.window = float(window)
        self.period = float(period)
        self.warmup = float(warmup)
        self.seed = seed
        self.n_learned = 0
        self.last_ts: float | None = None
        self.gaps: list[float] = []  # the last 9 positive gaps, oldest first
        self.cadence_known = False
        self._cadence = self.window
        self.dt = self.window  # seconds this point stands for (set before each _step)
        self._warmup_pts = max(MIN_WARMUP_POINTS, math.ceil(self.warmup / self.window - 1e-9))

    # -- time ------------------------------------------------------------------------
    @property
    def cadence(self) -> float:
        """Seconds between points: the median of the last positive gaps (``window`` first)."""
        return self._cadence if self.cadence_known else self.window

    def _tick(self, ts: float) -> None:
        """Measure the gap to the previous point; set :attr:`dt` (capped at 3 cadences)."""
        last = self.last_ts
        if last is not None and ts > last:
            gap = ts - last
            gaps = self.gaps
            gaps.append(gap)
            # dropping the oldest gap when it equals the new one leaves the median as it
            # was (the usual case): no sort
            if len(gaps) <= 9 or gaps.pop(0) != gap or not self.cadence_known:
                self._set_cadence()
        cad = self.cadence
        self.dt = cad if last is None or ts <= last else min(ts - last, 3.0 * cad)
        if last is None or ts > last:
            self.last_ts = ts

    def _set_cadence(self) -> None:
        """The median of the last gaps; the warm-up's length in points follows it."""
        g = sorted(self.gaps)
        n = len(g)
        self._cadence = g[n // 2] if n % 2 else 0.5 * (g[n // 2 - 1] + g[n // 2])
        self.cadence_known = True
        self._warmup_pts = max(MIN_WARMUP_POINTS, math.ceil(self.warmup / self._cadence - 1e-9))

    @property
    def warmup_points(self) -> int:
        """Number of valid points the warm-up lasts at the current cadence."""
        return self._warmup_pts  # recomputed when the cadence changes (hot path)

    @property
    def warming_up(self) -> bool:
        return self.n_learned < self.warmup_points

    # -- River's AnomalyDetector interface ---------------------------------------------
    def learn_one(self, x: dict[str, Any]) -> None:
        """River interface: learn the point ``x`` (``ts``, ``value``, optional ratio parts)."""
        self.update(x.get("ts"), x.get("value"), numerator=x.get("numerator"),  # type: ignore[arg-type]
                    denominator=x.get("denominator"))

    def score_one(self, x: dict[str, Any]) -> float:
        """River interface: the score ``x`` would get, without learning it."""
        twin = copy.deepcopy(self)
        return twin.update(x.get("ts"), x.get("value"), numerator=x.get("numerator"),  # type: ignore[arg-type]
                           denominator=x.get("denominator")).score

    # -- the one-pass path ------------------------------------------------------------
    def update(
        self,
        ts: float,
        value: float | None,
        *,
        numerator: float | None = None,
        denominator: float | None = None,
    ) -> Verdict:
        """Score the point, then learn from it; see the module docstring for input rules."""
        t = finite(ts)
        v = finite(value)
        if t is None or v is None:
            return self._verdict(t or 0.0, None, 0.0, None, None, None, False)
        num = finite(numerator)
        den = finite(denominator)
        if num is None or den is None or den <= 0 or num < 0:
            num = den = None
        self._tick(t)
        warming = self.warming_up
        score, expected, lower, upper, alarm, learned = self._step(t, v, num, den, warming)
        if learned:
            self.n_learned += 1
        warming = warming or self.warming_up  # a detector may restart its warm-up
        if warming:
            score, alarm = 0.0, False
        return self._verdict(t, v, score, expected, lower, upper, alarm, warming)

    def _verdict(
        self,
        ts: float,
        value: float | None,
        score: float,
        expected: float | None,
        lower: float | None,
        upper: float | None,
        anomalous: bool,
        warming: bool | None = None,
    ) -> Verdict:
        episode = getattr(self, "episode", None)  # the CUSUM detectors' (persistence.py)
        return Verdict(
            alarming=bool(anomalous) and (episode is None or episode.hot >= ts),
            score=float(min(1.0, max(0.0, score))),
            expected=expected,
            lower=lower,
            upper=upper,
            anomalous=bool(anomalous),
            warming_up=self.warming_up if warming is None else warming,
            window_start=ts,
            window_end=ts + self.cadence,
            value=value,
            detector=self.kind,
        )

    def _step(
        self, ts: float, value: float, num: float | None, den: float | None, warming: bool
    ) -> Step:
        """Score then learn one valid point. Return (score, expected, lower, upper,
        anomalous, learned); the base class forces score 0 / not anomalous in warm-up."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(window={self.window:g}, period={self.period:g})"
