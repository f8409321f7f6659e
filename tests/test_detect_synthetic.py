"""The synthetic point-level benchmark: generator laws, the oracle CUSUM, the report.

The generator is checked against its declared parameters (sample moments within a few
standard errors), the oracle against the theory it stands for (delay about h / KL for a
known shift; no more alarm onsets on fresh null data than its budget), and the command's
JSON against the keys the issue names.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from scipy import special

from shoppulse.commands.cli import main
from shoppulse.commands.detect_bench import false_episodes
from shoppulse.commands.detect_synthetic import (
    KIND_PARAMS,
    NullSample,
    bridge_unjudged,
    cusum,
    level_for,
    median_of_runs,
    onsets,
    oracle_delay,
    series_arl,
)
from shoppulse.commands.synthetic_series import (
    DAY,
    START,
    Incident,
    Series,
    SeriesSpec,
    changed,
    generate,
    loglik,
    mean_var,
    null_params,
    sample,
)

FLAT = {"trough": 1.0}  # rhythm == 1: the same law in every window


def _spec(family: str, level: float, shape: float = math.inf, amp: float = 0.0,
          window: float = 60.0) -> SeriesSpec:
    return SeriesSpec(f"t-{family}", family, "medium", window, level=level, shape=shape,
                      amp=amp, **FLAT)


def _check_moments(x: np.ndarray, mean: float, var: float) -> None:
    n = len(x)
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n), (x.mean(), mean)
    # the sample variance's standard error is about var * sqrt(2 / n) (plus kurtosis)
    assert abs(x.var() / var - 1) < 0.08, (x.var(), var)


@pytest.mark.parametrize(("family", "level", "shape"), [
    ("poisson", 4.0, math.inf), ("poisson", 800.0, math.inf), ("negbin", 3.0, 3.0),
    ("negbin", 60.0, 40.0), ("compound", 5.0, 40.0), ("compound", 300.0, 25.0),
    ("gauss", 22.0, 0.7), ("lognormal", 150.0, 0.3),
])
def test_generator_matches_its_declared_mean_and_variance(family: str, level: float,
                                                          shape: float) -> None:
    rng = np.random.default_rng(5)
    spec = _spec(family, level, shape)
    ts = START + 60.0 * np.arange(60_000)
    p = null_params(spec, ts)
    x, _ = sample(spec, p, rng)
    mean, var = mean_var(spec, p)
    _check_moments(x, float(mean[0]), float(var[0]))
    # the incident laws too: a 40 % drop, and a doubled variance for counts and reals
    drop = changed(spec, p, Incident(spec.key, "drop", 0, 1, 0.4, -1), 1.0)
    x, _ = sample(spec, drop, rng)
    mean, var = mean_var(spec, drop)
    _check_moments(x, float(mean[0]), float(var[0]))
    if family in ("poisson", "negbin", "gauss", "lognormal"):
        wide = changed(spec, p, Incident(spec.key, "variance", 0, 1, 1.0), 1.0)
        x, _ = sample(spec, wide, rng)
        m2, v2 = mean_var(spec, wide)
        _check_moments(x, float(m2[0]), float(v2[0]))
        if family in ("poisson", "negbin"):  # same mean, variance x 2 at the level
            assert m2[0] == pytest.approx(mean_var(spec, p)[0][0])
            assert v2[0] == pytest.approx(2 * mean_var(spec, p)[1][0])


def test_binomial_ratio_and_logitnormal_percent_follow_their_parameters() -> None:
    rng = np.random.default_rng(6)
    ts = START + 60.0 * np.arange(60_000)
    spec = _spec("binomial", 200.0, 0.35)
    p = null_params(spec, ts)
    num, den = sample(spec, p, rng)
    assert den is not None
    _check_moments(den, 200.0, 200.0)  # the denominator is Poisson(level)
    q = float(special.expit(p["logit"][0]))
    assert q == pytest.approx(special.expit(special.logit(0.35) + 0.15))  # peak of the rhythm
    assert num.sum() / den.sum() == pytest.approx(q, abs=3 * math.sqrt(q * (1 - q) / den.sum()))
    resid = (num - den * q) / np.sqrt(den * q * (1 - q))  # binomial given the denominator
    assert resid.var() == pytest.approx(1.0, abs=0.05)
    spec = _spec("logitnormal", 40.0, 0.2)
    p = null_params(spec, ts)
    x, _ = sample(spec, p, rng)
    assert ((x > 0) & (x < 100)).all()
    _check_moments(special.logit(x / 100.0), float(special.logit(0.4)), 0.04)


def test_daily_rhythm_and_incidents_are_where_declared() -> None:
    rng = np.random.default_rng(7)
    spec = SeriesSpec("r", "poisson", "thick", 300.0, level=1000.0, trough=0.2)
    inc = Incident("r", "drop", 400, 30, 0.5, -1)
    s = generate(spec, 3.0, [inc], rng)
    assert len(s.value) == 3 * 288
    mu = s.params["mu"]
    base = null_params(spec, s.ts)["mu"]
    assert base.min() == pytest.approx(200.0, rel=0.01)  # the night trough
    assert base.max() == pytest.approx(1000.0, rel=0.01)  # the evening peak
    np.testing.assert_allclose(mu[400:430], 0.5 * base[400:430])
    np.testing.assert_allclose(np.delete(mu, range(400, 430)), np.delete(base, range(400, 430)))
    assert abs(s.value[400:430] / base[400:430] - 0.5).max() < 0.2


def test_level_for_is_the_exact_level_of_the_allowed_onsets() -> None:
    rng = np.random.default_rng(1)
    s = cusum(rng.normal(-0.5, 1.0, 50_000))
    for allowed in (0, 3, 10):
        h = level_for(s, allowed)
        assert onsets(s, h) <= allowed
        assert all(onsets(s, x) <= allowed for x in np.linspace(h, s.max() + 1, 200))
        assert onsets(s, float(np.nextafter(h, -np.inf))) > allowed
    # Lindley form equals the recursion
    z = rng.normal(-0.2, 1.0, 2000)
    ref, acc = [], 0.0
    for v in z:
        acc = max(0.0, acc + v)
        ref.append(acc)
    np.testing.assert_allclose(cusum(z), ref, atol=1e-9)


@pytest.mark.parametrize(("family", "level", "shape"), [
    ("poisson", 3.0, math.inf), ("binomial", 80.0, 0.3), ("compound", 20.0, 50.0),
    ("gauss", 20.0, 0.5),
])
def test_oracle_holds_its_false_alarm_budget_on_fresh_null_data(family: str, level: float,
                                                                shape: float) -> None:
    rng = np.random.default_rng(11)
    spec = SeriesSpec("n", family, "medium", 60.0, level=level, shape=shape, trough=0.3,
                      amp=3.0)
    arl = series_arl(20, 60.0, 1.0)  # 20 series, 1 alarm a day: 28 800 windows
    inc = Incident("n", "drop", 0, 10, 0.5 if family != "gauss" else 1.0, -1)
    h = NullSample(spec, int(4 * arl), rng).threshold(inc, 4.0)
    assert h > 0
    fresh = NullSample(spec, int(20 * arl), rng)
    p1 = changed(spec, fresh.p0, inc, 1.0)
    z = loglik(spec, fresh.x, fresh.den, p1) - fresh.ll0
    n_on = onsets(cusum(z), h)
    # budget: 20 onsets in 20 ARLs; the calibration's own noise (4 counted onsets) allows
    # about a factor 2.5 either way
    assert n_on <= 50, n_on
    assert n_on >= 3, n_on  # and it is not wildly conservative either


def test_oracle_calls_a_large_known_shift_within_the_expected_delay() -> None:
    rng = np.random.default_rng(3)
    spec = SeriesSpec("k", "poisson", "medium", 60.0, level=20.0, trough=1.0)
    inc = Incident("k", "drop", 1440, 200, 0.5, -1)
    arl = series_arl(200, 60.0, 1.0)
    h = NullSample(spec, int(4 * arl), rng).threshold(inc, 4.0)
    assert 0.5 * math.log(arl) < h < 1.2 * math.log(arl)  # ARL grows like e^h
    kl = 10 * math.log(0.5) - 10 + 20  # KL(Poisson(10) || Poisson(20)) per window
    delays = []
    for _ in range(40):
        s = generate(spec, 1.5, [inc], rng)
        d = oracle_delay(s, inc, h)
        assert d is not None
        delays.append(d)
    # Wald: mean delay ~ h / KL plus the overshoot (< one window's evidence)
    assert h / kl <= np.mean(delays) + 0.5 <= h / kl + 2.5, (np.mean(delays), h / kl)
    # a change it cannot see in its duration is not oracle-detectable
    tiny = Incident("k", "drop", 1440, 2, 0.05, -1)
    s = generate(spec, 1.5, [tiny], rng)
    assert oracle_delay(s, tiny, h) is None


def test_bench_detect_synthetic_json_report() -> None:
    res = CliRunner().invoke(main, ["bench", "detect", "--synthetic", "--series", "15",
                                    "--days", "2", "--seed", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.output)
    for key in ("scenarios", "false_alarms_per_day", "us_per_update", "series",
                "simulated_days", "baselines"):
        assert key in out
    assert out["series"] == 15 and out["simulated_days"] == 2.0
    assert set(out["baselines"]) == {"gaussian", "hst"}
    assert out["scenarios"], "no incident was generated"
    for r in [out, *out["baselines"].values()]:
        for sc in r["scenarios"].values():
            assert {"recall", "ttd_median_windows", "ttd_p95_windows",
                    "ttd_ratio_to_oracle_median"} <= set(sc)
            assert sc["oracle_detectable"] <= sc["incidents"]
            assert sc["detected"] <= sc["oracle_detectable"]
            if sc["recall"] is not None:
                assert 0.0 <= sc["recall"] <= 1.0
        assert r["false_alarms_per_day"] >= 0 and r["us_per_update"] > 0
    # the default detector is told each metric's kind; the River baselines take none
    assert set(out["told_kind"]) == {"count", "ratio", "sum", "real"}
    assert all(len(p) == 1 and set(p) <= set(KIND_PARAMS) for p in out["told_kind"].values())
    assert all(not b["told_kind"] for b in out["baselines"].values())
    assert out["updates"] == sum(round(2 * DAY / w) for w in _windows(out))


def _windows(out: dict) -> list[float]:
    from shoppulse.commands.synthetic_series import build

    return [s.spec.window for s in build(15, 2.0, 3)]


def test_median_of_runs_takes_medians_sums_counts_and_rejudges_the_bar() -> None:
    def run(seed: int, recall: float, fa: float, us: float, ratio: float | None) -> dict:
        sc = {"drop": {"incidents": 4, "oracle_detectable": 3, "detected": 2, "recall": recall,
                       "ttd_median_windows": 2.0 * seed, "ttd_p95_windows": 5.0,
                       "ttd_ratio_to_oracle_median": ratio}}
        if seed == 3:
            sc["spike"] = {"incidents": 1, "oracle_detectable": 1, "detected": 1, "recall": 1.0,
                           "ttd_median_windows": 1.0, "ttd_p95_windows": 1.0,
                           "ttd_ratio_to_oracle_median": 1.0}
        base = {"detector": "gaussian", "scenarios": sc, "false_alarms_per_day": 100.0 + seed}
        return {"detector": "default", "seed": seed, "scenarios": sc, "series": 10,
                "false_alarms_per_day": fa, "false_alarm_onsets": int(fa * 7),
                "us_per_update": us, "baselines": {"gaussian": base}, "meets_bar": {"x": True}}

    m = median_of_runs([run(1, 1.0, 0.5, 50.0, 1.2), run(2, 0.9, 3.0, 60.0, None),
                        run(3, 0.96, 0.8, 200.0, 1.4)])
    assert m["seeds"] == [1, 2, 3] and "seed" not in m and m["series"] == 10
    assert m["scenarios"]["drop"]["recall"] == 0.96
    assert m["scenarios"]["drop"]["ttd_median_windows"] == 4.0
    assert m["scenarios"]["drop"]["ttd_ratio_to_oracle_median"] == pytest.approx(1.3)
    assert m["scenarios"]["drop"]["incidents"] == 12  # counts add up
    assert m["scenarios"]["spike"]["recall"] == 1.0  # present in one run only
    assert m["false_alarms_per_day"] == 0.8 and m["false_alarm_onsets"] == 3 + 21 + 5
    assert m["baselines"]["gaussian"]["false_alarms_per_day"] == 102.0
    assert m["meets_bar"] == {"false_alarms_per_day": True, "recall": True,
                              "ttd_ratio_to_oracle_median": True, "us_per_update": True}


def test_windows_without_data_do_not_split_an_alarm_into_onsets() -> None:
    """A thin ratio's window with no sessions is not judged (not anomalous by contract):
    it must neither end the alarm around it nor count the rest as a new onset."""
    spec = SeriesSpec("r", "binomial", "thin", 60.0, level=3.0, shape=0.03)
    ts = START + 60.0 * np.arange(10)
    value = np.array([0.1, 0.0, np.nan, 0.0, np.nan, np.nan, 0.2, 0.0, np.nan, 0.0])
    s = Series(spec, ts, value, value, np.ones(10), {})
    flagged = [(float(ts[i]), float(ts[i]) + 60.0) for i in (1, 3, 6, 9)]
    got = bridge_unjudged(flagged, s)
    # 2 lies between flagged 1 and 3; 4-5 between 3 and 6; 8 follows 7, which is not flagged
    assert [round((a - START) / 60.0) for a, _ in got] == [1, 2, 3, 4, 5, 6, 9]
    assert false_episodes(got, [], 60.0, bridge=0.0) == 2
    assert false_episodes(flagged, [], 60.0, bridge=0.0) == 4
    assert bridge_unjudged([], s) == []
