"""Forecasting-residual detector: seasonal forecast, standardised residual, CUSUM.

Why: the daily rhythm is the main nuisance of business series. The forecast comes from
:class:`~shoppulse.detectors.baseline.SeasonalBaseline` (Holt level + trend on the
first day, then a per-slot-of-day profile times the recent level, blended with the local
level by their recent errors); the residual is standardised by its own running RMS,
judged with Student-t tails against the forecast shifted by the minimum effect, and
accumulated by a two-sided :class:`~shoppulse.detectors.persistence.Cusum`.

It ignores numerator/denominator: it is the value-only member of the family and the
parent of :class:`~shoppulse.detectors.default.DefaultDetector`, which swaps the
residual model for count/ratio tails.

Protection of the model: every point is learned winsorised at ``learn_clip`` sigmas, and
points inside an alarm at ``anomaly_weight`` (the trend is frozen), so an incident does not
become the expectation. A shift that keeps alarming for ``accept_after`` seconds is
accepted as the new normal: the level jumps to the recent values, the CUSUM restarts and
the noise is re-learned (nothing is judged for 10 points), so a permanent change raises
one long episode, not an endless one.

Verdict: ``score = max(S+, S-) / h`` capped at 1, the share of the evidence needed to
alarm (the alarm starts at 1 and holds until the score falls below 0.5); ``expected`` is
the forecast; ``lower``/``upper`` are the values beyond which a single window adds
``band_z`` sigmas of evidence past the minimum effect.

Parameters (besides ``window``, ``period``, ``warmup``, ``seed`` of
:class:`~shoppulse.detectors.base.Detector`):

``slots`` (48)
    profile slots per period (30 min each for a day).
``halflife`` (600 s)
    memory of the recent level ``r`` (the first-day Holt level uses half of it).
``season_days`` (4)
    memory of the profile, in periods.
``dispersion_halflife`` (7 200 s)
    memory of the residual scale.
``min_effect`` (0.1), ``min_abs`` (0)
    minimum effect, relative to the expected value and absolute.
``k`` (1), ``h`` (5), ``z_cap`` (6.5)
    CUSUM allowance, threshold and per-window cap, in sigmas.
``band_z`` (3)
    width of ``lower``/``upper`` beyond the minimum effect, in sigmas.
``tail_df`` (4)
    Student-t degrees of freedom of the residual (``None``: Gaussian).
``learn_clip`` (3.5)
    winsorisation of what is learned, in sigmas.
``anomaly_weight`` (0.05)
    learning weight of points inside an alarm.
``accept_after`` (7 200 s)
    alarm duration after which a shift becomes the new normal.

>>> import math
>>> det = ForecastDetector()
>>> for i in range(600):
...     v = det.update(60.0 * i, 100.0 + 10.0 * math.sin(i / 7.0))
>>> (v.anomalous, v.warming_up)
(False, False)
>>> [det.update(60.0 * i, 300.0).anomalous for i in range(600, 603)]  # heavy tails: 2 windows
[False, True, True]
"""

from __future__ import annotations

import math
from typing import NamedTuple

from shoppulse.detectors.base import Detector, Step
from shoppulse.detectors.baseline import SeasonalBaseline
from shoppulse.detectors.evidence import Z_MIN, gauss_z
from shoppulse.detectors.persistence import Cusum


class Evidence(NamedTuple):
    """What a residual model says about one point."""

    z_up: float  # evidence of a rise beyond the minimum effect (normal quantile)
    z_dn: float  # evidence of a fall
    lower: float | None  # band in value units
    upper: float | None
    learn: float  # the value the baseline learns (winsorised)
    info: float  # information weight (relative denominator; 1 for value-only points)
    sq_resid: float  # squared residual ...
    base_var: float  # ... and the variance the model expects before over-dispersion
    sd: float = math.inf  # the noise sd used for the judgement (winsorises the dispersion)
    std_resid: float = 0.0  # signed residual in those sds, against the unshifted forecast


class ForecastDetector(Detector):
    """Seasonal forecast + standardised residual + CUSUM (value only)."""

    kind = "forecast"
    seasonal = True

    def __init__(
        self,
        *,
        window: float = 60.0,
        period: float = 86400.0,
        warmup: float = 1800.0,
        seed: int | None = None,
        slots: int = 48,
        halflife: float = 600.0,
        season_days: float = 4.0,
        dispersion_halflife: float = 7200.0,
        min_effect: float = 0.1,
        min_abs: float = 0.0,
        k: float = 1.0,
        h: float = 5.0,
        z_cap: float = 6.5,
        band_z: float = 3.0,
        tail_df: float | None = 4.0,
        learn_clip: float = 3.5,
        anomaly_weight: float = 0.05,
        accept_after: float = 7200.0,
    ) -> None:
        super().__init__(window=window, period=period, warmup=warmup, seed=seed)
        self.baseline = SeasonalBaseline(
            window=window,
            period=period,
            slots=slots,
            halflife=halflife,
            season_days=season_days,
        )
        self.slots = slots
        self.halflife = halflife
        self.season_days = season_days
        self.dispersion_halflife = dispersion_halflife
        self.min_effect = min_effect
        self.min_abs = min_abs
        self.band_z = band_z
        self.tail_df = tail_df
        self.learn_clip = learn_clip
        self.anomaly_weight = anomaly_weight
        self.accept_after = accept_after
        self.cusum = Cusum(k=k, h=h, cap=z_cap)
        self.disp_alpha = 1.0 - 0.5 ** (window / dispersion_halflife)
        # over-dispersion = EWMA(squared residual) / EWMA(model variance)
        self.disp_num = 0.0
        self.disp_den = 0.0
        self.disp_n = 0
        self.alarm_since: float | None = None

    # -- dispersion ------------------------------------------------------------------
    @property
    def disp(self) -> float | None:
        """Ratio of observed to modelled residual variance (``None`` before any data)."""
        return self.disp_num / self.disp_den if self.disp_den > 0.0 else None

    @property
    def disp_known(self) -> bool:
        """Enough residuals (10, or the warm-up if shorter) to trust the dispersion."""
        return self.disp_den > 0.0 and self.disp_n >= min(10, max(1, self.warmup_points))

    def _dispersion(self) -> float | None:
        """The dispersion the residual model uses; ``None`` = unknown, judge nothing."""
        return self.disp if self.disp_known else None

    def _reset_dispersion(self) -> None:
        self.disp_num = self.disp_den = 0.0
        self.disp_n = 0

    def _update_dispersion(self, ev: Evidence, weight: float) -> None:
        sq_resid, base_var = ev.sq_resid, ev.base_var
        if weight <= 0.0 or not base_var > 0.0:
            return
        # winsorise at learn_clip sigmas: one wild point moves it little
        sq_resid = min(sq_resid, (self.learn_clip * ev.sd) ** 2)
        self.disp_n += 1
        a = min(1.0, weight * max(self.disp_alpha, 1.0 / self.disp_n))
        self.disp_num += a * (sq_resid - self.disp_num)
        self.disp_den += a * (base_var - self.disp_den)

    # -- residual model (subclasses override) -----------------------------------------
    def _observed(self, value: float, num: float | None, den: float | None) -> float | None:
        """The quantity the baseline models (the value; ratio series override)."""
        return value

    def _evidence(self, mu: float, value: float, num: float | None, den: float | None) -> Evidence:
        """Student-t residual with variance ``disp`` (here the residual variance itself)."""
        var = self._dispersion()
        if var is None:
            return Evidence(Z_MIN, Z_MIN, None, None, value, 1.0, (value - mu) ** 2, 1.0)
        sd = math.sqrt(var) + 1e-9 * (1.0 + abs(mu))
        effect = max(self.min_effect * abs(mu), self.min_abs)
        z_up, z_dn = gauss_z(value, mu + effect, mu - effect, sd, self.tail_df)
        c = self.learn_clip * sd
        pad = effect + self.band_z * sd
        y = min(mu + c, max(mu - c, value))
        return Evidence(
            z_up, z_dn, mu - pad, mu + pad, y, 1.0, (value - mu) ** 2, 1.0, sd, (value - mu) / sd
        )

    def _accept(self) -> None:
        """A shift alarmed for ``accept_after``: adopt it as the new normal and re-learn
        the noise around it (nothing is judged until the dispersion is known again)."""
        self.baseline.rebase()
        self.cusum.reset()
        self._reset_dispersion()
        self.alarm_since = None

    def _confirm(self, obs: float, ev: Evidence, warming: bool) -> Evidence:
        """Hook for a second opinion that may lower the evidence (none here)."""
        return ev

    # -- the step ------------------------------------------------------------------
    def _step(
        self, ts: float, value: float, num: float | None, den: float | None, warming: bool
    ) -> Step:
        obs = self._observed(value, num, den)
        if obs is None:  # e.g. a ratio series without its denominator
            return 0.0, None, None, None, False, False
        warming = warming or self.warming_up  # _observed may restart the warm-up
        mu = self.baseline.predict(ts)
        if mu is None:
            self.baseline.learn(ts, obs)
            return 0.0, None, None, None, False, True
        ev = self._confirm(obs, self._evidence(mu, obs, num, den), warming)
        if warming:
            score, alarm = 0.0, False
        else:
            score = self.cusum.step(ev.z_up, ev.z_dn)
            alarm = self.cusum.alarm
        weight = self.anomaly_weight if alarm else 1.0
        self._update_dispersion(ev, weight * min(ev.info, 1.0))
        self.baseline.learn(ts, obs if warming else ev.learn, weight, raw=obs, info=ev.info)
        if alarm:
            if self.alarm_since is None:
                self.alarm_since = ts
            elif ts - self.alarm_since >= self.accept_after:
                self._accept()
        else:
            self.alarm_since = None
        return score, mu, ev.lower, ev.upper, alarm, True
