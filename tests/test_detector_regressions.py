"""Regression tests for the seven defects of issue 13, each on a generated series.

1. the score ranks surprise (calibrated tail probability), the alarm state is separate;
2. one incident, one alarm episode (cool-down);
3. a count series stays quiet after a re-baseline;
4. time constants in seconds: an hourly series matures in days, not weeks;
5. a recurring sharp daily step is learned;
6. the family comes from the metric's kind; a 0-100 % real series gets a band in its units;
7. a lone 20 sigma spike alarms in its window.
"""

from __future__ import annotations

import math

import numpy as np

from shoppulse.commands.detect_bench import episodes
from shoppulse.detectors import make_detector
from shoppulse.detectors.default import family_for

DAY = 86400.0


def daily(t: np.ndarray) -> np.ndarray:
    """Night at 15 % of the evening peak."""
    h = (t % DAY) / 3600.0
    return 0.15 + 0.85 * np.exp(3.0 * (np.cos(2 * np.pi * (h - 19.0) / 24.0) - 1.0))


def counts(seed: int, days: float, peak: float, w: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(days * DAY / w)) * w
    return t, rng.poisson(peak * daily(t)).astype(float)


def run(det, t, x):
    return [det.update(float(a), float(b)) for a, b in zip(t, x, strict=True)]


def eps(vs, w):
    return episodes([(v.window_start, v.window_end) for v in vs if v.anomalous], w)


def test_1_score_is_a_calibrated_surprise_and_the_alarm_is_separate() -> None:
    """Normal data: the score is spread and rarely high (never 1.0); the bigger the spike,
    the higher the score; anomalous is the episode state, not a score threshold."""
    t, x = counts(1, 3.0, 400.0, 60.0)
    det = make_detector("default", family="count")
    vs = run(det, t[:3000], x[:3000])
    sc = np.array([v.score for v in vs if not v.warming_up])
    assert sc.max() < 0.95 and np.mean(sc > 0.0) > 0.002  # spread, never saturated
    assert np.mean(sc > 0.5) < 1 / 16 and np.mean(sc > 0.9) < 1e-3  # P(>= x) <= (1 - x)^4
    scores = []
    for k in (6.0, 10.0, 20.0):
        twin = make_detector("default", family="count")
        run(twin, t[:3000], x[:3000])
        mu = 400.0 * daily(t[3000:3001])[0]
        scores.append(twin.update(float(t[3000]), mu + k * math.sqrt(mu) * 1.1 + 0.1 * mu).score)
    assert scores[0] < scores[1] < scores[2]
    # a 40-window drop: alarms, and the episode outlives the last high score (cool-down)
    i0 = 3000
    y = x.copy()
    y[i0 : i0 + 40] = np.random.default_rng(2).poisson(0.5 * 400.0 * daily(t[i0 : i0 + 40]))
    vs = run(make_detector("default", family="count"), t[: i0 + 200], y[: i0 + 200])
    on = [v for v in vs[i0:] if v.anomalous]
    assert on and any(v.score < 0.5 for v in on)


def test_2_one_incident_one_episode() -> None:
    """A shift hovering around the threshold for three hours is one alarm episode."""
    t, x = counts(3, 3.0, 300.0, 60.0)
    i0 = int((2 * DAY + 17.5 * 3600) / 60.0)
    rng = np.random.default_rng(4)
    mu = 300.0 * daily(t[i0 : i0 + 180])
    x[i0 : i0 + 180] = rng.poisson(mu * 1.35)  # a few sigma a window past the minimum effect
    vs = run(make_detector("default", family="count", accept_after=6 * 3600.0), t, x)
    e = eps(vs[i0 - 60 : i0 + 240], 60.0)
    assert len(e) == 1
    assert not any(v.anomalous for v in vs[: i0 - 60])


def test_3_count_series_quiet_after_a_rebaseline() -> None:
    """A busy, over-dispersed count series doubles for good: one episode, then quiet."""
    rng = np.random.default_rng(5)
    t = np.arange(int(3 * DAY / 60.0)) * 60.0
    mu = 2000.0 * daily(t)
    i0 = int((DAY + 10 * 3600) / 60.0)
    mu[i0:] *= 2.0
    x = rng.negative_binomial(mu / 2.0, 1.0 / 3.0).astype(float)  # phi = 3 around mu
    vs = run(make_detector("default", family="count", accept_after=3600.0), t, x)
    e = eps(vs[i0:], 60.0)
    assert len(e) == 1 and e[0][0] <= t[i0 + 2]
    assert not any(v.anomalous for v in vs[:i0])


def test_4_hourly_series_matures_in_days() -> None:
    """Hourly windows: the daily profile knows every hour after two days (not weeks), the
    rhythm does not alarm after the first day, and a drop to a quarter on day 6 is caught
    within a few hours."""
    t, x = counts(6, 8.0, 500.0, 3600.0)
    det = make_detector("default", family="count", window=3600.0)
    run(det, t[:48], x[:48])
    assert det.cadence == 3600.0 and det.baseline.slots == 24  # type: ignore[attr-defined]
    assert all(det.baseline.profile(t[48] + 3600.0 * h) is not None  # type: ignore[attr-defined]
               for h in range(24))
    assert det.warmup_points == 8
    i0 = 6 * 24 + 17
    y = x.copy()
    y[i0 : i0 + 8] = np.random.default_rng(7).poisson(0.25 * 500.0 * daily(t[i0 : i0 + 8]))
    vs = run(make_detector("default", family="count"), t, y)  # window left at 60 s
    assert not any(v.anomalous for v in vs[24:i0])  # quiet once a day is known
    assert any(v.anomalous for v in vs[i0 : i0 + 4])


def test_5_recurring_daily_step_is_learned() -> None:
    """A shop that triples at 09:00 and falls back at 18:00 every day, no incident: quiet
    after its first days (5-minute windows, 14 days)."""
    w = 300.0
    rng = np.random.default_rng(8)
    t = np.arange(int(14 * DAY / w)) * w
    h = (t % DAY) / 3600.0
    mu = np.where((h >= 9) & (h < 18), 300.0, 100.0)
    x = rng.poisson(mu).astype(float)
    vs = run(make_detector("default", family="count", window=w), t, x)
    late = [v for v in vs if v.window_start >= 3 * DAY]
    assert not any(v.anomalous for v in late)
    assert len(eps(vs, w)) <= 6


def test_6_family_from_kind_and_real_values_in_their_own_units() -> None:
    assert family_for("count") == family_for("session") == family_for("distinct") == "count"
    assert family_for("sum") == "sum" and family_for("ratio") == "ratio"
    assert family_for("ratio", sum_numerator=True) == "mean"
    assert family_for("quantile") == "real" and family_for(None) == "auto"
    # CPU utilisation in %: 40 +- 3 with a daily swing of 20 points, 5-minute windows
    w = 300.0
    rng = np.random.default_rng(9)
    t = np.arange(int(4 * DAY / w)) * w
    cpu = np.clip(40.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 3.0, len(t)), 0, 100)
    det = make_detector("default", window=w)  # unknown kind: robust real
    vs = run(det, t, cpu)
    assert det.family == "real"  # type: ignore[attr-defined]
    tail = [v for v in vs[-288:]]
    widths = [v.upper - v.lower for v in tail]  # type: ignore[operator]
    assert 10.0 < float(np.median(widths)) < 30.0  # ~ 2 x 3 sigma of 3 points, not [0, 344]
    assert not any(v.anomalous for v in vs)
    # a temperature moving by 2 degrees around 80 F: a band of a few degrees
    temp = 80.0 + 2.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.3, len(t))
    det = make_detector("default", window=w)
    vs = run(det, t, temp)
    assert float(np.median([v.upper - v.lower for v in vs[-288:]])) < 4.0  # type: ignore[operator]
    assert not any(v.anomalous for v in vs)


def test_7_a_lone_20_sigma_spike_alarms_in_its_window() -> None:
    w = 300.0
    rng = np.random.default_rng(10)
    t = np.arange(int(3 * DAY / w)) * w
    lat = 120.0 + 30.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 4.0, len(t))
    i = int((2 * DAY + 15 * 3600) / w)
    lat[i] += 20 * 4.0
    vs = run(make_detector("default", window=w), t, lat)
    assert vs[i].anomalous and vs[i].score > 0.99
    assert not any(v.anomalous for v in vs[:i])
    # the same on counts of known kind
    t, x = counts(11, 3.0, 400.0, 60.0)
    j = int((2 * DAY + 15 * 3600) / 60.0)
    x[j] += 20 * math.sqrt(400.0 * daily(t[j : j + 1])[0])
    vs = run(make_detector("default", family="count"), t, x)
    assert vs[j].anomalous
