"""Expected value of a series at a time of day: a seasonal profile times the recent level.

Why this model: business series follow a daily rhythm (night at 10-20 % of the peak) and
drift from day to day (a busy day lifts every hour). The forecast is

- before one full ``period`` has been seen: a damped Holt level + trend of the recent
  values (``halflife``), which follows the daily ramps with little lag;
- afterwards: ``profile(t) * r``, where ``profile`` is a per-slot-of-day mean of past days
  (``slots`` slots per period, linearly interpolated between slot centres, remembered over
  about ``season_days`` days) and ``r`` is the recent ratio of the values to the profile
  (same ``halflife``). Series with negative values use ``profile(t) + r`` instead.

Every update carries a weight: the caller gives less weight to points it judged
anomalous (and winsorises them) so an incident does not become the new normal, and more
weight to windows with a bigger denominator. Ratio series are modelled on the rate,
with weights proportional to the denominator so ``r`` is a ratio of weighted sums.

All state is plain floats and lists (picklable, a few hundred bytes). O(1) per update.

>>> import math
>>> def curve(t):  # peak 160 at 06:00, trough 40 at 18:00
...     return 100.0 + 60.0 * math.sin(2 * math.pi * t / 86400)
>>> b = SeasonalBaseline(window=60, period=86400, slots=48)
>>> for i in range(3 * 1440):
...     b.learn(i * 60.0, curve(i * 60.0))
>>> round(b.profile(21600.0)), round(b.profile(64800.0))  # the profile knows the day
(160, 40)
>>> round(b.predict(3 * 86400.0), 1), round(curve(0.0), 1)  # one step ahead
(100.0, 100.0)
"""

from __future__ import annotations

import math


class SeasonalBaseline:
    """Per-slot-of-day profile blended with the recent level; see the module docstring."""

    def __init__(
        self,
        *,
        window: float = 60.0,
        period: float = 86400.0,
        slots: int = 48,
        halflife: float = 600.0,
        season_days: float = 4.0,
        trend: float = 0.3,
        damping: float = 0.99,
        max_trend: float = 0.03,
        mix_halflife: float = 3600.0,
    ) -> None:
        self.window = window
        self.period = period
        self.slots = max(1, int(slots))
        self.alpha = 1.0 - 0.5 ** (window / halflife)
        self.alpha_local = 1.0 - 0.5 ** (2.0 * window / halflife)
        self.alpha_mix = 1.0 - 0.5 ** (window / mix_halflife)
        self.mse_local = 0.0
        self.mse_seasonal = 0.0
        self.beta = trend
        self.damping = damping
        self.max_trend = max_trend
        pts_per_slot = max(1.0, period / self.slots / window)
        self.mature = 0.8 * pts_per_slot
        self.w_cap = pts_per_slot * season_days
        self.prof = [0.0] * self.slots
        self.prof_w = [0.0] * self.slots
        self.level: float | None = None
        self.trend = 0.0
        self.r_num = 0.0
        self.r_den = 0.0
        self.raw_level: float | None = None
        self.raw_num = 0.0
        self.raw_den = 0.0
        self.additive = False

    # -- reading -------------------------------------------------------------------
    def _pos(self, ts: float) -> tuple[int, int, float]:
        u = ((ts + 0.5 * self.window) % self.period) / self.period * self.slots - 0.5
        fl = math.floor(u)
        return int(fl) % self.slots, int(fl + 1) % self.slots, u - fl

    def profile(self, ts: float) -> float | None:
        """The seasonal profile at ``ts``, or ``None`` until both slots around it are known."""
        j0, j1, f = self._pos(ts)
        if self.prof_w[j0] < self.mature or self.prof_w[j1] < self.mature:
            return None
        return (1.0 - f) * self.prof[j0] + f * self.prof[j1]

    def _local(self) -> float:
        local = self.level + self.damping * self.trend  # type: ignore[operator]
        return local if self.additive else max(0.0, local)

    def _seasonal(self, prof: float | None) -> float | None:
        if prof is None or self.r_den <= 0.0:
            return None
        if self.additive:
            return prof + self.r_num / self.r_den
        # a profile near zero makes the ratio meaningless: keep it within 1/100 .. 100
        return max(0.0, prof * min(100.0, max(0.01, self.r_num / self.r_den)))

    def predict(self, ts: float) -> float | None:
        """Expected value at ``ts`` (``None`` before the first point)."""
        if self.level is None:
            return None
        local = self._local()
        seasonal = self._seasonal(self.profile(ts))
        if seasonal is None:
            return local
        # inverse-MSE blend: a day unlike the profile (a weekend) leans on the local level
        w = self.mse_local / (self.mse_local + self.mse_seasonal + 1e-300)
        return w * seasonal + (1.0 - w) * local

    # -- learning ------------------------------------------------------------------
    def learn(
        self,
        ts: float,
        y: float,
        weight: float = 1.0,
        *,
        raw: float | None = None,
        info: float = 1.0,
    ) -> None:
        """Learn ``y`` observed at ``ts`` with relative ``weight`` (0 = ignore).

        ``raw`` is the unprotected observation (``y`` may be winsorised) and ``info`` its
        information weight (1 for counts, relative denominator for ratios): they feed a
        shadow level that :meth:`rebase` adopts when a shift is accepted as the new normal.
        """
        raw = y if raw is None else raw
        if (y < 0.0 or raw < 0.0) and not self.additive:
            self.additive = True
            self.r_num = self.r_den = self.raw_num = self.raw_den = 0.0
        prof = self.profile(ts)
        # shadow level: what the level would be without protection
        a_raw = min(1.0, self.alpha * info)
        if self.raw_level is None:
            self.raw_level = raw
        else:
            self.raw_level += a_raw * (raw - self.raw_level)
        if prof is not None:
            if self.raw_den == 0.0:
                self.raw_num, self.raw_den = (raw - prof, 1.0) if self.additive else (raw, prof)
            elif self.additive:
                self.raw_num += a_raw * (raw - prof - self.raw_num)
            else:
                self.raw_num += a_raw * (raw - self.raw_num)
                self.raw_den += a_raw * (prof - self.raw_den)
        if weight <= 0.0:
            return
        a = min(1.0, self.alpha * weight * info)
        a_local = min(1.0, self.alpha_local * weight * info)
        # how well each forecast did on this point
        seasonal = self._seasonal(prof)
        if seasonal is not None and self.level is not None:
            e_l = (y - self._local()) ** 2
            e_s = (y - seasonal) ** 2
            if self.mse_seasonal == 0.0 and self.mse_local == 0.0:
                self.mse_local = self.mse_seasonal = 0.5 * (e_l + e_s) + 1e-300
            am = min(1.0, self.alpha_mix * weight * info)
            self.mse_local += am * (e_l - self.mse_local)
            self.mse_seasonal += am * (e_s - self.mse_seasonal)
        # recent level relative to the profile
        if prof is not None:
            if self.r_den == 0.0:  # the profile just became known: start from the level
                lvl = self.level if self.level is not None else y
                if self.additive:
                    self.r_num, self.r_den = lvl - prof, 1.0
                elif prof > 0.0:
                    self.r_num, self.r_den = lvl, prof
            if self.additive:
                self.r_num += a * (y - prof - self.r_num)
                self.r_den = 1.0
            else:
                self.r_num += a * (y - self.r_num)
                self.r_den += a * (prof - self.r_den)
        # local level and trend (error-correction form of damped Holt)
        if self.level is None:
            self.level = y
        else:
            # a protected (down-weighted) point is a suspected incident, not a trend
            self.trend *= min(1.0, weight)
            pred = self.level + self.damping * self.trend
            err = y - pred
            self.level = pred + a_local * err
            trend = self.damping * self.trend + self.beta * a_local * err
            cap = self.max_trend * abs(self.level)  # noisy series must not extrapolate wildly
            self.trend = min(cap, max(-cap, trend))
        # seasonal profile: running mean per slot, then an EWMA over ~season_days
        j0, j1, f = self._pos(ts)
        for j, wj in ((j0, 1.0 - f), (j1, f)):
            w = weight * info * wj
            if w <= 0.0:
                continue
            tot = self.prof_w[j] + w
            self.prof[j] += (y - self.prof[j]) * (w / tot)
            self.prof_w[j] = min(self.w_cap, tot)

    def rebase(self) -> None:
        """Adopt the shadow (unprotected) level: a persistent shift becomes the new normal.

        The forecast errors are forgotten too, so the blend starts from the local level and
        lets the profile earn its weight back.
        """
        if self.raw_level is not None:
            self.level = self.raw_level
            self.trend = 0.0
        if self.raw_den != 0.0:
            self.r_num, self.r_den = self.raw_num, self.raw_den
        self.mse_local = self.mse_seasonal = 0.0
