"""What the synthetic benchmark's profile of the default detector changed, one test each.

- a latency (log-normal) with a small daily rhythm is judged on the log scale and stays
  quiet (its right tail alarmed when the scale was picked from the variance slope);
- options, off by default (each raised false alarms elsewhere, README "Anomaly
  detection"): the CUSUM threshold as a budget per unit of time, lower at hourly cadence
  (``h_per_cadence``); a variance alternative for thick counts (``variance_alternative``):
  an over-dispersion change at the same mean alarms, a steady series does not.
"""

from __future__ import annotations

import math

import numpy as np

from shoppulse.commands.detect_bench import episodes
from shoppulse.detectors import make_detector

DAY = 86400.0


def rhythm(t: np.ndarray, amp: float) -> np.ndarray:
    h = (t % DAY) / 3600.0
    return amp * np.cos(2 * np.pi * (h - 19.0) / 24.0)


def run(det, t, x, den=None):
    if den is None:
        return [det.update(float(a), float(b)) for a, b in zip(t, x, strict=True)]
    return [det.update(float(a), float(b) / float(d) if d else None, numerator=float(b),
                       denominator=float(d)) for a, b, d in zip(t, x, den, strict=True)]


def alarms(vs, w):
    return episodes([(v.window_start, v.window_end) for v in vs if v.anomalous], w)


def test_a_latency_with_a_small_rhythm_is_judged_on_the_log_scale() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(int(4 * DAY / 60)) * 60.0
    x = np.exp(np.log(120.0) + rhythm(t, 0.1) + rng.normal(0.0, 0.3, len(t)))
    det = make_detector("default", family="real")
    vs = run(det, t, x)
    assert det.log_scale
    assert len(alarms(vs, 60.0)) == 0
    # a band in the series' units, skewed like the data: further above than below
    v = vs[-1]
    assert v.upper - v.expected > v.expected - v.lower > 0


def test_the_threshold_is_a_budget_per_unit_of_time() -> None:
    hs = {}
    for w in (60.0, 300.0, 3600.0):
        det = make_detector("default", family="count", window=w, h_per_cadence=True)
        for i in range(20):
            det.update(i * w, 50.0)
        hs[w] = det.cusum.h
    assert make_detector("default", window=3600.0).h_per_cadence is False
    # a robust (estimated) scale keeps h: 20 % low, it alarmed a clean 5-minute series
    real = make_detector("default", family="real", window=3600.0, h_per_cadence=True)
    for i in range(20):
        real.update(i * 3600.0, 50.0 + (i % 3))
    assert real.cusum.h == 12.0  # type: ignore[attr-defined]
    assert hs[60.0] == 12.0
    assert math.isclose(hs[300.0], 12.0 - math.log(5.0))
    assert math.isclose(hs[3600.0], 12.0 - math.log(60.0))
    assert det.episode.h == hs[3600.0]


def test_an_overdispersion_change_at_the_same_mean_alarms() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(int(4 * DAY / 60)) * 60.0
    mu = 400.0 * np.exp(rhythm(t, 0.3))
    x = rng.poisson(mu).astype(float)
    i0 = int(3.5 * DAY / 60)
    quiet = run(make_detector("default", family="count", variance_alternative=True), t, x)
    assert len(alarms(quiet, 60.0)) == 0
    # negative binomial with the same mean, variance x 4 for 90 minutes
    r = mu[i0:i0 + 90] / 3.0
    x[i0:i0 + 90] = rng.negative_binomial(r, r / (r + mu[i0:i0 + 90]))
    vs = run(make_detector("default", family="count", variance_alternative=True), t, x)
    assert any(v.anomalous for v in vs[i0:i0 + 90])
    assert not any(v.anomalous for v in vs[:i0])
