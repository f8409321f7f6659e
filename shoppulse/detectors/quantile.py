"""Robust rolling-quantile detector: is the value outside the recent range?

Why: it assumes no distribution and no seasonality, only that the last ``span`` seconds
(default 1 h) describe what is normal right now. :class:`RollingBand` keeps the recent
values and reads their median and ``q`` / ``1 - q`` quantiles (the role of River's
``stats.RollingQuantile``, in a third of the state); the robust sigma is the
inter-quantile range over its Gaussian width
(IQR / 1.349 for ``q = 0.25``), floored by a running mean absolute deviation so that
mostly-constant or sparse series (IQR = 0) do not divide by zero. The evidence is the
distance beyond the median ± the minimum effect in those sigmas (a robust z-score, as in
a Hampel filter; ``tail_df`` switches to Student-t tails), accumulated by the same CUSUM
as the other detectors (a higher ``h``, 16: without seasonality its residuals have
heavier tails), with the same score and alarm episodes.

Protection: learned values are winsorised at ``learn_clip`` sigmas of the median, so an
incident moves the window only slowly. It still moves: freezing it would strand the band
while the daily rhythm moves on, so a permanent change ends its episode by itself within
about ``span / 2``, and the end of a long incident can raise a second, shorter episode.

Being local, it follows the daily rhythm with a lag of about ``span / 2``: it is a robust
companion to the forecast (the default detector uses :class:`RollingBand` as a second
opinion), not a seasonal model.

>>> det = QuantileDetector()
>>> for i in range(120):
...     v = det.update(60.0 * i, 50.0 + (i % 7))
>>> v.anomalous, round(v.expected)
(False, 53)
>>> [det.update(60.0 * i, 120.0).anomalous for i in range(120, 123)]
[True, True, True]
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

from shoppulse.detectors.base import Detector, Step
from shoppulse.detectors.evidence import gauss_llrs, gauss_z, normal_quantile
from shoppulse.detectors.persistence import Cusum, Episode, surprise_score, window_tail


class Judgement(NamedTuple):
    z_up: float
    z_dn: float
    median: float
    sd: float
    effect: float


class RollingBand:
    """Median and robust sigma of the last ``size`` learned values.

    A ring buffer of floats, sorted when judged (``size`` 60: ~2 µs). River's
    ``stats.RollingQuantile`` is as fast, but three of them (low, median, high) keep three
    copies of the window: ~3.3 KB per pickled model instead of ~0.6 KB, and the model is
    stored after every window.
    """

    def __init__(
        self,
        size: int,
        q: float = 0.25,
        min_effect: float = 0.1,
        min_abs: float = 0.0,
        tail_df: float | None = 4.0,
        learn_clip: float = 3.5,
    ) -> None:
        if not 0.0 < q < 0.5:
            raise ValueError("q must be in (0, 0.5)")
        self.size = max(3, int(size))
        self.q = q
        self.width = normal_quantile(1.0 - q) - normal_quantile(q)
        self.min_effect = min_effect
        self.min_abs = min_abs
        self.tail_df = tail_df
        self.learn_clip = learn_clip
        self.buf = array("d")
        self.pos = 0
        self.mad: float | None = None  # running mean |x - median|

    @staticmethod
    def _at(s: list[float], p: float) -> float:
        """Quantile ``p`` of sorted ``s``, linear interpolation (numpy's default)."""
        x = p * (len(s) - 1)
        i = int(x)
        return s[i] if i + 1 >= len(s) else s[i] + (s[i + 1] - s[i]) * (x - i)

    def judge(self, value: float) -> Judgement | None:
        """Evidence that ``value`` lies above / below the recent range (``None`` if empty)."""
        if not self.buf:
            return None
        s = sorted(self.buf)
        med = self._at(s, 0.5)
        iqr = self._at(s, 1.0 - self.q) - self._at(s, self.q)
        mad = abs(value - med) if self.mad is None else self.mad
        sd = max(iqr / self.width, 1.2533 * mad, 1e-9 * (1.0 + abs(med)))
        effect = max(self.min_effect * abs(med), self.min_abs)
        z_up, z_dn = gauss_z(value, med + effect, med - effect, sd, self.tail_df)
        return Judgement(z_up, z_dn, med, sd, effect)

    def learn(self, value: float, j: Judgement | None, clip: bool = True) -> None:
        """Add ``value`` (winsorised around the judgement ``j`` if ``clip``)."""
        x = value
        if j is not None:
            c = self.learn_clip * j.sd
            if clip:
                x = min(j.median + c, max(j.median - c, value))
            dev = min(abs(value - j.median), c)
            self.mad = dev if self.mad is None else self.mad + (dev - self.mad) / self.size
        if len(self.buf) < self.size:
            self.buf.append(x)
        else:
            self.buf[self.pos] = x
            self.pos = (self.pos + 1) % self.size


class QuantileDetector(Detector):
    """:class:`RollingBand` over the last ``span`` seconds + CUSUM."""

    kind = "quantile"

    def __init__(
        self,
        *,
        window: float = 60.0,
        period: float = 86400.0,
        warmup: float = 1800.0,
        seed: int | None = None,
        span: float = 3600.0,
        q: float = 0.25,
        min_effect: float = 0.1,
        min_abs: float = 0.0,
        h: float = 16.0,
        band_z: float = 3.0,
        tail_df: float | None = None,
        learn_clip: float = 3.5,
        cooldown: float = 900.0,
        bonferroni: float = 1000.0,
    ) -> None:
        super().__init__(window=window, period=period, warmup=warmup, seed=seed)
        self.span = span
        self.band_z = band_z
        self.band_params = dict(q=q, min_effect=min_effect, min_abs=min_abs, tail_df=tail_df,
                                learn_clip=learn_clip)
        self.band: RollingBand | None = None  # sized from the cadence at the second point
        self.cusum = Cusum(h=h)
        self.episode = Episode(h=h, cooldown=cooldown)
        self.bonferroni = bonferroni

    def _step(
        self, ts: float, value: float, num: float | None, den: float | None, warming: bool
    ) -> Step:
        size = max(3, round(self.span / self.cadence))
        if self.band is None or (len(self.band.buf) < 3 and self.band.size != size):
            band = RollingBand(size, **self.band_params)
            if self.band is not None:
                for x in self.band.buf:
                    band.learn(x, None)
            self.band = band
        j = self.band.judge(value)
        if j is None:
            self.band.learn(value, None)
            return 0.0, None, None, None, False, True
        if warming:
            score, alarm = 0.0, False
        else:
            llrs = gauss_llrs(j.z_up, j.z_dn)
            stat = self.cusum.step(llrs)
            alarm = self.episode.step(ts, stat, min_hold=self.cadence)
            score = surprise_score(min(self.cusum.tail(), window_tail(llrs, self.bonferroni)))
        self.band.learn(value, j, clip=not warming)
        pad = j.effect + self.band_z * j.sd
        return score, j.median, j.median - pad, j.median + pad, alarm, True
