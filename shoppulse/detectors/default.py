"""The default detector: seasonal forecast judged under the family the series has.

Why: the same threshold must be right for 3 and for 3 000 events a window, and for a
temperature as for a conversion rate. It is the
:class:`~shoppulse.detectors.forecast.ForecastDetector` (seasonal baseline, CUSUM,
calibrated score, alarm episodes, protected learning, re-baselining) with the residual
judged under the distribution of the metric's *kind*, which the pipeline knows from the
config (``family``, see :func:`family_for`):

``count`` (config kinds count, session, distinct)
    quasi-Poisson, ``Var = phi * mu``, ``phi >= 1``.
``sum`` (kind sum: GMV)
    compound Poisson, ``Var = phi * mu`` where ``phi`` is about the size of one event.
``ratio`` (kind ratio)
    numerator and denominator given with ``0 <= numerator <= denominator``. The baseline
    forecasts the rate; the observed numerator is judged against Binomial(denominator,
    rate) widened by the over-dispersion ``phi >= 1`` (quasi-binomial). 0 of 3 at a 3 %
    rate is noise; 0 of 3 000 is an outage. A ratio whose numerator later exceeds its
    denominator in whole events becomes a ``rate`` (refunds of earlier orders per order
    placed now: quasi-Poisson numerator with mean ``denominator * rate``), and with a
    non-integer numerator above the denominator a ``mean``.
``mean`` (a ratio whose numerator sums a field: average order value)
    judged on the log scale with ``Var(log value) = phi / denominator``.
``real`` (kind quantile, and every series of unknown kind: ``auto`` without a ratio)
    robust location-scale of the forecast detector: variance-to-level relation learned,
    log scale for positive skewed values, band in the series' own units. Integer values
    are *not* taken as counts: only the config says a series counts events.

``auto`` (the default) picks ``ratio``/``rate``/``mean`` from a ratio point's numerator
and denominator, and ``real`` otherwise. A family switch (ratio -> rate -> mean)
re-learns the over-dispersion and restarts the warm-up, because the old estimate is in
the wrong units. A ratio series' point without its denominator is not judged and not
learned; a count or sum below zero is not judged either.

``phi`` = EWMA(squared residual) / EWMA(variance the family predicts), winsorised, learned
at reduced weight during alarms, half-life ``dispersion_halflife``: minute-to-minute
jitter beyond Poisson/binomial noise widens the limits instead of alarming.

Evidence: log-likelihood ratios of a bank of alternatives (counts: the mean x 0.08 ...
x 6, negative binomial at the learned over-dispersion; sums: the same, compound Poisson
with exponential event sizes; rates: quasi-Poisson; ratios: the odds x 0.08 ... x 6,
quasi-binomial; averages and ``real``: Gaussian shifts of 1 ... 8 sigmas) against the
null, summed by the CUSUM. Thin series keep their evidence (0 events where 2 were
expected is worth a likelihood ratio of e^1 against a halving).

Minimum effect: the null is shifted by ``max(min_effect * expected, estimate_z * sd /
sqrt(memory))`` (counts and sums: the forecast itself is an average of about ``memory``
windows, so it is off by its standard error now and then; averages: ``min_effect``
relative; ``real``: ``min_abs`` only), so tiny but significant changes on huge series do
not count. Ratios and rates instead take
``max(min_effect * q, estimate_z * sqrt(q / n))`` where ``q`` is the expected rate of the
rarer outcome and ``n`` the trials behind that estimate (the recent level's memory times
the usual denominator): relative to the rate, and shrinking with volume. An absolute
``min_events / denominator`` (the previous rule) made thin series blind: 3 of 8 payments
succeeding where 6 of 6 is normal never counted. Ratio and rate forecasts have no trend
(a trend extrapolated a 97 % success rate past 100 % after a run of clean windows).

Second opinion (the rolling-quantile detector's :class:`RollingBand`): the standardised
residuals of the last ``confirm_span`` seconds (default 1 h, frozen while alarming) give a
robust median and sigma, and a window's evidence is capped at its robust z-score against
them plus ``confirm_margin`` (default 1; ``None`` turns it off). A forecast that has been
off in the same way for the last hour (a profile that does not fit today, a burst of
extra noise the dispersion has not caught up with) therefore cannot alarm by itself,
while a fresh shift passes untouched. On the synthetic benchmark it changed neither
recall nor time-to-detect.

Verdict: ``expected`` is the forecast value (the rate for ratios); ``lower``/``upper``
bound the values adding at most ``band_z`` sigmas of evidence (at this window's
denominator for ratios and averages).

Parameters: those of :class:`~shoppulse.detectors.forecast.ForecastDetector`, and
``family`` ("auto"), ``min_events`` (3, kept for compatibility, unused), ``estimate_z``
(2), ``confirm_span`` (3 600 s), ``confirm_margin`` (1).

>>> det = DefaultDetector()
>>> for i in range(300):  # a healthy 3 % conversion at ~1 000 sessions a window
...     v = det.update(60.0 * i, 30 / 1000, numerator=30, denominator=1000)
>>> det.family, v.anomalous
('ratio', False)
>>> det.update(60.0 * 300, 0.0, numerator=0, denominator=3).anomalous
False
>>> det.update(60.0 * 301, 0.0, numerator=0, denominator=3000).anomalous
True
"""

from __future__ import annotations

import math
from typing import Any

from shoppulse.detectors.baseline import decay
from shoppulse.detectors.evidence import (
    Z_MIN,
    binomial_llrs,
    binomial_z,
    compound_llrs,
    gauss_z,
    negbin_llrs,
    poisson_llrs,
    poisson_z,
)
from shoppulse.detectors.forecast import Evidence, ForecastDetector
from shoppulse.detectors.quantile import RollingBand

LEVEL_EVENTS = 30.0
"""Events (of the rarer outcome) the recent level of a count or ratio series averages."""
WARMUP_EVENTS = 20.0
"""Events a count or ratio series must have shown before it is judged."""
WARMUP_TRIALS = 200.0
"""Trials (denominator) after which a ratio is judged even if one outcome is still rare."""
SLOT_EVENTS = 50.0
"""Events a profile slot should see a day (fewer slots for thinner series)."""
MAX_LEVEL_HALFLIFE = 2 * 86400.0
"""Longest half-life of the recent level (the daily profile carries the rest)."""
DEFAULTS = {"halflife": 1800.0, "min_effect": 0.03, "freeze": 0.6}
"""Where the default detector departs from the forecast detector's parameters, chosen on
the synthetic benchmark (seed 1, 60 series, 7 days; README "Anomaly detection"): a
recent level of 30 minutes, learning that stops once the CUSUM is at 60 % of ``h``, and a
3 % minimum effect took recall on drops from 0.62 to 0.85, rises 0.38 -> 0.77, ramps 0.38
-> 0.63 at 0.14 false alarms a day. A 1 h level or a frozen noise scale were faster
still but raised 6-7 false alarms a day (thin ratios, over-dispersed counts). The
threshold per unit of time (``h_per_cadence``, counts, sums and ratios only) stays off:
on 200 series it added false episodes on 5-minute and hourly counts and ratios (seed 1:
2.1 -> 2.6 a day) and recalled no more (README "Anomaly detection")."""
FAMILIES = ("auto", "ratio", "rate", "mean", "count", "sum", "real", "gauss", "quantile")
"""Accepted ``family`` values; ``gauss`` and ``quantile`` mean ``real``."""
ALIASES = {"gauss": "real", "quantile": "real"}
METRIC_FAMILY = {"count": "count", "session": "count", "distinct": "count", "sum": "sum",
                 "ratio": "ratio", "quantile": "real"}
"""Family of each metric kind of the config (``streams.config.MetricKind``)."""


def family_for(kind: str | None, sum_numerator: bool = False) -> str:
    """The detector family for a metric of config ``kind``: ``auto`` when unknown.

    A ratio whose numerator sums a field (average order value) is an average (``mean``).

    >>> family_for("session"), family_for("ratio"), family_for("ratio", True), family_for(None)
    ('count', 'ratio', 'mean', 'auto')
    """
    if kind == "ratio" and sum_numerator:
        return "mean"
    return METRIC_FAMILY.get(kind or "", "auto")


class DefaultDetector(ForecastDetector):
    """Seasonal forecast + quasi-Poisson/binomial tails + CUSUM; ratio-aware."""

    kind = "default"
    seasonal = True
    ratio_aware = True
    scale_by_likelihood = True

    def __init__(
        self,
        *,
        family: str = "auto",
        min_events: float = 3.0,
        estimate_z: float = 2.0,
        confirm_span: float = 3600.0,
        confirm_margin: float | None = 1.0,
        **params: Any,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        for key, value in DEFAULTS.items():
            params.setdefault(key, value)
        super().__init__(**params)
        family = ALIASES.get(family, family)
        self.family_param = family
        self.family: str | None = None if family in ("auto", "ratio") else family
        if self.family in ("ratio", "rate"):
            self.baseline.beta = 0.0  # see _switch
        self.positive = True  # a "mean" series judged on the log scale
        self.min_events = min_events
        self.estimate_z = estimate_z
        self.den_avg: float | None = None
        self.events_seen = 0.0
        self.trials_seen = 0.0
        self.successes_seen = 0.0
        self.confirm_span = confirm_span
        self.confirm_margin = confirm_margin
        self.band: RollingBand | None = None  # made once the cadence is known

    @property
    def memory(self) -> float:
        """Windows behind the recent level (the EWMA's effective size at this cadence)."""
        a = decay(self.cadence, self.level_halflife())
        return (2.0 - a) / a

    def level_halflife(self) -> float:
        """At least ``LEVEL_EVENTS`` events behind the recent level: a conversion of 1
        purchase a window is not re-estimated from the last three windows."""
        base = max(self.halflife, 3.0 * self.cadence)
        target = LEVEL_EVENTS
        events = self.events_per_window
        if events is None or events <= 0.0:
            return base
        return min(max(base, self.cadence * target / events), MAX_LEVEL_HALFLIFE)

    @property
    def warming_up(self) -> bool:
        """The time warm-up, and for families that count events until ``WARMUP_EVENTS``
        of them (the rarer outcome for ratios, or ``WARMUP_TRIALS`` trials) have been
        seen: a level is not known from a few empty windows."""
        if super().warming_up:
            return True
        if self.family == "ratio" and self.trials_seen >= WARMUP_TRIALS:
            return False  # a rate near 0 or 1 is known from its trials
        return self.family in ("count", "ratio", "rate", "sum") and self.events_seen < WARMUP_EVENTS

    def _profile_ready(self) -> bool:
        """After the warm-up, with slots that each see ``SLOT_EVENTS`` events a day: a
        thin series gets a coarse profile (a conversion of 1 purchase a window: 6 slots
        of 4 hours), a busy one 15-minute slots."""
        if self.baseline.slots:
            return True
        if self.warming_up:
            return False
        events = self.events_per_window
        if events is not None:
            per_day = events * self.period / self.cadence
            self.baseline.max_slots = max(4, min(self.slots, int(per_day / SLOT_EVENTS)))
        return True

    @property
    def events_per_window(self) -> float | None:
        """Typical events a window (the rarer outcome for ratios), ``None`` if unknown."""
        b = self.baseline
        lvl = b.raw_level
        if lvl is None:
            return None
        fam = self.family
        if fam == "ratio" and self.den_avg:
            return self.den_avg * max(min(lvl, 1.0 - lvl), 1e-6)
        if fam == "rate" and self.den_avg:
            return self.den_avg * max(lvl, 1e-6)
        if fam == "count":
            return max(lvl, 1e-3)
        if fam == "sum":
            phi = self._dispersion() or 1.0
            return max(lvl, 1e-3) / max(phi, 1e-9)
        return None

    def _dispersion(self) -> float | None:
        disp = self.disp if self.disp_known else None
        if self.family in ("ratio", "rate", "count"):
            return 1.0 if disp is None else max(1.0, disp)
        return disp

    def _switch(self, family: str) -> None:
        """Change family: the old dispersion is in the wrong units, so warm up again."""
        if self.family is not None:
            self._reset_dispersion()
            self.n_learned = 0
        self.family = family
        if family in ("ratio", "rate"):
            # a rate is bounded and has no minute-to-minute trend: a trend extrapolated it
            # past 0 or 1 after a run of clean windows, and every ordinary failure alarmed
            self.baseline.beta = 0.0
            self.baseline.trend = 0.0

    # -- which family, and what the baseline models ---------------------------------
    def _observed(self, value: float, num: float | None, den: float | None) -> float | None:
        fam = self.family
        ratio_point = num is not None and den is not None
        if self.family_param in ("auto", "ratio"):
            new = fam
            if fam is None:
                if ratio_point:
                    new = "ratio" if num <= den else "mean"  # type: ignore[operator]
                elif self.family_param == "auto":
                    new = "real"  # unknown kind: robust location-scale, whatever the values
            elif fam == "ratio" and ratio_point and num > den:  # type: ignore[operator]
                new = "rate" if num.is_integer() else "mean"  # type: ignore[union-attr]
            elif fam == "rate" and ratio_point and not num.is_integer():  # type: ignore[union-attr]
                new = "mean"
            if new is None:
                return None
            if new != fam:
                self._switch(new)
                fam = new
        if fam == "real":
            return value
        self._count_events(fam, value, num, den)
        if fam in ("count", "sum") and value < 0:  # a pinned family outside its domain
            return None
        if fam in ("ratio", "rate", "mean"):
            if not ratio_point or (fam == "ratio" and num > den):  # type: ignore[operator]
                return None
            if fam == "mean" and self.positive and num <= 0:  # type: ignore[operator]
                self.positive = False
                self._reset_dispersion()
                self.n_learned = 0
            self.den_avg = (
                den
                if self.den_avg is None
                else self.den_avg
                + 0.01
                * (
                    den - self.den_avg  # type: ignore[operator]
                )
            )
            return num / den  # type: ignore[operator]
        return value

    def _count_events(self, fam: str | None, value: float, num: float | None,
                      den: float | None) -> None:
        """Events seen so far (the rarer outcome for ratios), for the warm-up."""
        if self.events_seen >= WARMUP_EVENTS and self.trials_seen >= WARMUP_TRIALS:
            return
        if fam == "ratio" and num is not None and den is not None:
            self.trials_seen += den
            self.successes_seen += num
            self.events_seen = min(self.successes_seen, self.trials_seen - self.successes_seen)
        elif fam == "rate" and num is not None:
            self.events_seen += num
        elif fam == "count" and value >= 0:
            self.events_seen += value
        elif fam == "sum" and value > 0:
            self.events_seen += 1.0  # windows with some amount: event sizes are unknown
        elif fam == "mean":
            self.events_seen = WARMUP_EVENTS

    def _estimate_error(self, q: float) -> float:
        """``estimate_z`` standard errors of an expected rate ``q`` (of the rarer outcome).

        The expected rate is learned from about ``memory * den_avg`` trials (the recent
        level's memory): with 10 payments a window and a 3 % failure rate that is ~9
        failures, so the estimate itself is off by a third now and then, and a run of clean
        windows can pull it near 0. Judging against it as if it were exact alarms on
        ordinary failures; shifting the null by its standard error does not, and shrinks
        with volume. At least one event's worth (``q >= 1 / trials``) is assumed unknown.
        """
        n = self.memory * (self.den_avg or 1.0)
        return self.estimate_z * math.sqrt(max(q, 1.0 / n) / n)

    def _info(self, den: float) -> float:
        return min(3.0, den / self.den_avg) if self.den_avg else 1.0

    # -- evidence per family ---------------------------------------------------------
    def _evidence(self, mu: float, value: float, num: float | None, den: float | None) -> Evidence:
        fam = self.family
        phi = self._dispersion()
        if phi is None:  # dispersion not known yet (right after a family switch)
            sq, base = self._first_resid(mu, value, den)
            return Evidence(Z_MIN, Z_MIN, None, None, value, 1.0, sq, base)
        bz, clip = self.band_z, self.learn_clip
        if fam == "ratio" and num is not None and den is not None:
            p = min(1.0 - 1e-6, max(1e-6, mu))  # a trend may extrapolate a rate beyond 0..1
            d = max(self.min_effect * min(p, 1.0 - p), self._estimate_error(min(p, 1.0 - p)))
            z_up, z_dn = binomial_z(num, den, p + d, p - d, phi)
            var = p * (1.0 - p) / den
            sd = math.sqrt(phi * var)
            y = min(p + clip * sd, max(p - clip * sd, value))
            return Evidence(
                z_up,
                z_dn,
                max(0.0, p - d - bz * sd),
                min(1.0, p + d + bz * sd),
                y,
                self._info(den),
                (num - den * p) ** 2,
                den * p * (1.0 - p),
                sd * den,
                (value - p) / sd,
                tuple(binomial_llrs(num, den, p + d, p - d, phi)),
            )
        if fam == "rate" and num is not None and den is not None:
            # events per unit of the denominator: quasi-Poisson numerator, mean den * rate
            p = max(mu, 1e-6 / den)
            m = den * p
            d = max(self.min_effect * p, self._estimate_error(p))
            z_up, z_dn = poisson_z(num, den * (p + d), den * max(0.0, p - d), phi)
            sd = math.sqrt(phi * p / den)
            y = min(p + clip * sd, max(max(0.0, p - clip * sd), value))
            return Evidence(
                z_up,
                z_dn,
                max(0.0, p - d - bz * sd),
                p + d + bz * sd,
                y,
                self._info(den),
                (num - m) ** 2,
                m,
                sd * den,
                (value - p) / sd,
                tuple(poisson_llrs(num, den * (p + d), den * max(0.0, p - d), phi)),
            )
        if fam == "mean" and den is not None:
            if self.positive and mu > 0.0 and value > 0.0:
                s2 = min(phi, 4.0) / den  # a log-sd above 2 per item is not an average
                sd = math.sqrt(s2) + 1e-9
                d = math.log1p(self.min_effect)
                c = math.log(mu) - 0.5 * s2  # centre on the log-normal median
                lv = math.log(value)
                z_up, z_dn = gauss_z(lv, c + d, c - d, sd, self.tail_df)
                y = min(mu * math.exp(clip * sd), max(mu * math.exp(-clip * sd), value))
                return Evidence(
                    z_up,
                    z_dn,
                    mu * math.exp(-d - bz * sd),
                    mu * math.exp(d + bz * sd),
                    y,
                    # residual about log(mu), not c: c depends on phi (no feedback loop)
                    self._info(den),
                    (lv - math.log(mu)) ** 2,
                    1.0 / den,
                    sd,
                    (lv - c) / sd,
                )
            sd = math.sqrt(phi / den) + 1e-9 * (1.0 + abs(mu))
            d = max(self.min_effect * abs(mu), self.min_abs)
            z_up, z_dn = gauss_z(value, mu + d, mu - d, sd, self.tail_df)
            y = min(mu + clip * sd, max(mu - clip * sd, value))
            return Evidence(
                z_up,
                z_dn,
                mu - d - bz * sd,
                mu + d + bz * sd,
                y,
                self._info(den),
                (value - mu) ** 2,
                1.0 / den,
                sd,
                (value - mu) / sd,
            )
        if fam == "sum":
            # compound Poisson: phi ~ the size of one event; quasi-Poisson ratios of x / phi
            m = max(mu, 0.0)
            sd = math.sqrt(phi * max(m, phi)) + 1e-9 * (1.0 + m)
            d = max(self.min_effect * m, self.estimate_z * sd / math.sqrt(self.memory),
                    self.min_abs)
            z_up, z_dn = gauss_z(value, m + d, m - d, sd, self.tail_df)
            llr = compound_llrs(value, max(m + d, phi), m - d, phi)
            return _non_negative(value, m, d, sd, z_up, z_dn, bz, clip, llr)
        if fam == "count":
            m = max(mu, 1e-3)
            sd = math.sqrt(phi * m)
            d = max(self.min_effect * m, self.estimate_z * sd / math.sqrt(self.memory),
                    self.min_abs)
            z_up, z_dn = poisson_z(value, m + d, m - d, phi)
            llr = negbin_llrs(value, m + d, m - d, phi)
            return _non_negative(value, m, d, sd, z_up, z_dn, bz, clip, llr)
        return super()._evidence(mu, value, num, den)  # real: robust location-scale

    def _first_resid(self, mu: float, value: float, den: float | None) -> tuple[float, float]:
        """Squared residual and model variance used to seed the dispersion."""
        if self.family == "mean" and den is not None:
            if self.positive and mu > 0.0 and value > 0.0:
                return math.log(value / mu) ** 2, 1.0 / den
            return (value - mu) ** 2, 1.0 / den
        if self.family == "sum":
            return (value - mu) ** 2, max(mu, 0.0)
        return (value - mu) ** 2, self._gain(mu)

    def _known_noise(self) -> bool:
        return self.family in ("count", "sum", "ratio", "rate")

    def _variance_judged(self, ev: Evidence) -> bool:
        """Counts, sums and ratios: only with about 10 events' worth of variance a window
        (a thin count's squared residual is far from chi-square); averages: 10 items."""
        fam = self.family
        if fam == "real":
            return self.real_variance
        if not self.variance_alternative or not math.isfinite(ev.sd):
            return False
        if fam == "mean":
            return ev.base_var <= 0.1
        if fam == "sum":
            return ev.base_var / max(self._dispersion() or 1.0, 1e-9) >= 10.0
        return fam in ("count", "ratio", "rate") and ev.base_var >= 10.0

    # -- second opinion: the recent range ---------------------------------------------
    def _confirm(self, obs: float, ev: Evidence, warming: bool) -> Evidence:
        """Cap the evidence by the rolling band's (plus ``confirm_margin``) and learn."""
        if (self.confirm_margin is None or ev.llr or not self.disp_known
                or not self.cadence_known):
            return ev  # families with likelihood ratios: the capped z-scores are not used
        if self.band is None:
            size = max(12, round(self.confirm_span / self.cadence))
            self.band = RollingBand(size, min_effect=0.0, tail_df=None,
                                    learn_clip=self.learn_clip)
        r = ev.std_resid
        j = self.band.judge(r)
        if not self.episode.active:  # frozen while alarming: keeps the pre-incident range
            self.band.learn(r, j, clip=not warming)
        if j is None:
            return ev
        m = self.confirm_margin
        return ev._replace(z_up=min(ev.z_up, j.z_up + m), z_dn=min(ev.z_dn, j.z_dn + m))


def _non_negative(
    value: float, m: float, d: float, sd: float, z_up: float, z_dn: float, bz: float,
    clip: float, llr: list[float],
) -> Evidence:
    """Evidence of a count or sum: band floored at 0, learned value winsorised at ``clip``."""
    y = min(m + clip * sd, max(max(0.0, m - clip * sd), value))
    return Evidence(z_up, z_dn, max(0.0, m - d - bz * sd), m + d + bz * sd, y, 1.0,
                    (value - m) ** 2, m, sd, (value - m) / sd, tuple(llr))
