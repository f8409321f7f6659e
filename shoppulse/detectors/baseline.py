"""Expected value of a series at a time of day: a seasonal profile times the recent level.

Why this model: business series follow a daily rhythm (night at 10-20 % of the peak) and
drift from day to day (a busy day lifts every hour). The forecast is

- until the profile knows the time of day: a damped Holt level + trend of the recent
  values (``halflife``), which follows the daily ramps with little lag;
- afterwards: ``profile(t) * r``, where ``profile`` is a per-slot-of-day mean of past days
  and ``r`` is the recent ratio of the values to the profile (same ``halflife``). Series
  with negative values use ``profile(t) + r`` instead. The profile leads; the local
  level takes over as the profile's recent squared errors grow beyond twice its own (a
  day unlike the profile).

Time, not points: every learning rate is ``1 - 0.5 ** (dt / halflife)`` for the seconds
``dt`` the point stands for (the half-life is at least 3 cadences), and the profile's
weights count *days* of data per slot (each point adds ``dt / slot length``). A slot is
usable once it has 0.8 day of data and remembers about ``season_days`` days, at any
cadence: an hourly series has a mature profile after its first day, as a minute series
has. Slots are ``period / 96``
(15 minutes) long, or one cadence when that is longer; the profile is created at the
first point whose cadence is known.

Profile shape: each point is learned into the slot it falls in; reading interpolates
linearly between slot centres (smooth ramps), except across a *step* (adjacent slots
differ by more than a quarter) where the nearest slot is used, so a shop that opens at
09:00 sharp is not smeared over half an hour.

Every update carries a weight: the caller gives less weight to points it judged
anomalous (and winsorises them) so an incident does not become the new normal, and more
weight to windows with a bigger denominator. The profile has its own weight and value
(:meth:`SeasonalBaseline.learn` ``prof_y``/``prof_weight``): the caller learns a daily
pattern there even while it alarms, once it has recurred (see the default detector).

All state is plain floats and lists (picklable, about 2 KB). O(1) per update.

>>> import math
>>> def curve(t):  # peak 160 at 06:00, trough 40 at 18:00
...     return 100.0 + 60.0 * math.sin(2 * math.pi * t / 86400)
>>> b = SeasonalBaseline(period=86400)
>>> for i in range(3 * 1440):
...     b.learn(i * 60.0, curve(i * 60.0), dt=60.0, cadence=60.0)
>>> round(b.profile(21600.0)), round(b.profile(64800.0))  # the profile knows the day
(160, 40)
>>> round(b.predict(3 * 86400.0)), round(curve(0.0))  # one step ahead
(100, 100)
"""

from __future__ import annotations

import math

MATURE_DAYS = 0.8
"""Days of data a slot needs before the profile is read there."""
STEP = 0.25
"""Relative difference of adjacent slots read as a step (nearest slot, no interpolation)."""


def decay(dt: float, halflife: float) -> float:
    """Learning rate of an EWMA with ``halflife`` seconds for a point of ``dt`` seconds."""
    return 1.0 - 0.5 ** (dt / halflife)


class SeasonalBaseline:
    """Per-slot-of-day profile blended with the recent level; see the module docstring."""

    def __init__(
        self,
        *,
        period: float = 86400.0,
        slots: int = 96,
        halflife: float = 600.0,
        season_days: float = 4.0,
        trend: float = 0.3,
        damping: float = 0.99,
        max_trend: float = 0.03,
        mix_halflife: float = 3600.0,
    ) -> None:
        self.period = period
        self.max_slots = max(1, int(slots))
        self.halflife = halflife
        self.mix_halflife = mix_halflife
        self.season_days = season_days
        self.beta = trend
        self.damping = damping
        self.max_trend = max_trend
        self.mse_local = 0.0
        self.mse_seasonal = 0.0
        self.slots = 0  # set with the profile, once the cadence is known
        self.slot_len = period
        self.center = 0.0  # half a cadence: a window is read at its middle
        self.prof: list[float] = []
        self.prof_w: list[float] = []
        self.level: float | None = None
        self.trend = 0.0
        self.r_num = 0.0
        self.r_den = 0.0
        self.raw_level: float | None = None
        self.raw_num = 0.0
        self.raw_den = 0.0
        self.additive = False
        self.n = 0  # points learned

    # -- reading -------------------------------------------------------------------
    def slot_of(self, ts: float) -> int:
        """The slot a point at ``ts`` (window start) falls in."""
        if not self.slots:
            return 0
        return int(((ts + self.center) % self.period) / self.slot_len) % self.slots

    def profile(self, ts: float) -> float | None:
        """The seasonal profile at ``ts``, or ``None`` until the slots around it are known."""
        if not self.slots:
            return None
        u = ((ts + self.center) % self.period) / self.slot_len - 0.5
        fl = math.floor(u)
        j0, j1, f = int(fl) % self.slots, int(fl + 1) % self.slots, u - fl
        w0, w1 = self.prof_w[j0] >= MATURE_DAYS, self.prof_w[j1] >= MATURE_DAYS
        if not (w0 or w1) or (not (w0 and w1) and not (w0 if f < 0.5 else w1)):
            return None
        p0, p1 = self.prof[j0], self.prof[j1]
        if not (w0 and w1) or abs(p0 - p1) > STEP * max(abs(p0), abs(p1)):
            return p0 if f < 0.5 else p1
        return (1.0 - f) * p0 + f * p1

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
        # the profile leads unless it has been clearly worse than the local level lately
        # (a day unlike the others): equal errors give it 94 %, twice the error 50 %
        ratio = self.mse_seasonal / (2.0 * self.mse_local + 1e-300)
        w = 1.0 / (1.0 + ratio**4) if ratio < 1e3 else 0.0
        return w * seasonal + (1.0 - w) * local

    # -- learning ------------------------------------------------------------------
    def _make_profile(self, cadence: float) -> None:
        self.slots = max(1, min(self.max_slots, round(self.period / max(cadence, 1e-9))))
        self.slot_len = self.period / self.slots
        self.prof = [0.0] * self.slots
        self.prof_w = [0.0] * self.slots

    def reset_slot(self, ts: float) -> None:
        """Forget the slot of ``ts``: a recurring change there is learned from scratch."""
        if self.slots:
            self.prof_w[self.slot_of(ts)] = 0.0

    def learn(
        self,
        ts: float,
        y: float,
        weight: float = 1.0,
        *,
        raw: float | None = None,
        info: float = 1.0,
        dt: float = 60.0,
        cadence: float | None = None,
        prof_y: float | None = None,
        prof_weight: float | None = None,
        halflife: float | None = None,
    ) -> None:
        """Learn ``y`` observed at ``ts`` (standing for ``dt`` seconds) with ``weight``.

        ``raw`` is the unprotected observation (``y`` may be winsorised) and ``info`` its
        information weight (1 for counts, relative denominator for ratios): they feed a
        shadow level that :meth:`rebase` adopts when a shift is accepted as the new normal.
        ``prof_y``/``prof_weight`` (default ``y``/``weight``) are what the profile learns.
        ``cadence`` (if known) creates the profile; ``halflife`` overrides the level's.
        """
        raw = y if raw is None else raw
        prof_y = y if prof_y is None else prof_y
        prof_weight = weight if prof_weight is None else prof_weight
        if (y < 0.0 or raw < 0.0 or prof_y < 0.0) and not self.additive:
            self.additive = True
            self.r_num = self.r_den = self.raw_num = self.raw_den = 0.0
        if not self.slots and cadence is not None:
            self._make_profile(cadence)
            self.center = 0.5 * cadence
        # never shorter than 3 points: at hourly cadence the level still averages a few
        alpha = decay(dt, max(halflife or self.halflife, 3.0 * (cadence or dt)))
        self.n += 1
        alpha = max(alpha, 1.0 / self.n)  # a running mean until the half-life is reached
        prof = self.profile(ts)
        # shadow level: what the level would be without protection
        a_raw = min(1.0, alpha * info)
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
        if weight > 0.0:
            self._learn_level(y, prof, min(1.0, alpha * weight * info), weight * info, dt)
        # seasonal profile: running mean per slot, remembering about season_days days
        if self.slots and prof_weight > 0.0:
            j = self.slot_of(ts)
            w = prof_weight * min(info, 3.0) * dt / self.slot_len
            tot = self.prof_w[j] + w
            self.prof[j] += (prof_y - self.prof[j]) * (w / tot)
            self.prof_w[j] = min(self.season_days, tot)

    def _learn_level(self, y: float, prof: float | None, a: float, wi: float, dt: float) -> None:
        a_local = 1.0 - (1.0 - a) ** 2  # the first-day level uses half the half-life
        seasonal = self._seasonal(prof)
        if seasonal is not None and self.level is not None:
            e_l = (y - self._local()) ** 2
            e_s = (y - seasonal) ** 2
            if self.mse_seasonal == 0.0 and self.mse_local == 0.0:
                self.mse_local = self.mse_seasonal = 0.5 * (e_l + e_s) + 1e-300
            am = min(1.0, decay(dt, max(self.mix_halflife, 6.0 * self.slot_len)) * wi)
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
            self.trend *= min(1.0, wi)
            pred = self.level + self.damping * self.trend
            err = y - pred
            self.level = pred + a_local * err
            trend = self.damping * self.trend + self.beta * a_local * err
            cap = self.max_trend * abs(self.level)  # noisy series must not extrapolate wildly
            self.trend = min(cap, max(-cap, trend))

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
        self.mse_local, self.mse_seasonal = 0.0, 1e-300  # not both 0: no 50/50 restart
