"""Baseline: River's ``GaussianScorer`` on the raw values, as the issue asks to report.

Why it is here: to show, on the same run and through the same API, what a plain
distribution fit does — it knows no seasonality, so the daily rhythm looks anomalous
(or, with a long window, real shifts drown in it). Score ``2 |CDF(x) - 0.5|``;
anomalous when the score reaches ``threshold`` (default 0.9995, about 3.5 sigma). No
persistence logic. A zero-variance window (constant series) scores 0.

>>> det = GaussianDetector()
>>> for i in range(200):
...     v = det.update(60.0 * i, 100.0 + (i % 10))
>>> v.anomalous, det.update(60.0 * 200, 1000.0).anomalous
(False, True)
"""

from __future__ import annotations

from river import anomaly

from shoppulse.detectors.base import Detector, Step


class GaussianDetector(Detector):
    """``river.anomaly.GaussianScorer`` (rolling ``window_size`` points) + threshold."""

    kind = "gaussian"

    def __init__(
        self,
        *,
        window: float = 60.0,
        period: float = 86400.0,
        warmup: float = 1800.0,
        seed: int | None = None,
        window_size: int = 1000,
        threshold: float = 0.9995,
        band_z: float = 3.5,
    ) -> None:
        super().__init__(window=window, period=period, warmup=warmup, seed=seed)
        self.window_size = window_size
        self.threshold = threshold
        self.band_z = band_z
        self.scorer = anomaly.GaussianScorer(
            window_size=window_size, grace_period=self.warmup_points
        )

    def _step(
        self, ts: float, value: float, num: float | None, den: float | None, warming: bool
    ) -> Step:
        g = self.scorer.gaussian
        expected = lower = upper = None
        score = 0.0
        if g.n_samples >= 2:
            mu, sd = g.mu, g.sigma
            expected, lower, upper = mu, mu - self.band_z * sd, mu + self.band_z * sd
            if sd > 1e-12 * (1.0 + abs(mu)):
                score = float(self.scorer.score_one(None, value))
        self.scorer.learn_one(None, value)
        return score, expected, lower, upper, score >= self.threshold, True
