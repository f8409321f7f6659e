"""Synthetic metric series whose true distribution is known in every window.

Why: to measure a detector against the best any detector could do (the oracle CUSUM of
:mod:`~shoppulse.commands.detect_synthetic`) the exact before/after distribution of each
window must be known, which the shop simulator cannot supply. Generation is vectorised
with numpy; every series is a :class:`SeriesSpec` plus its incidents.

Families (``family`` -> the metric ``kind`` a detector is told):

``poisson``, ``negbin`` -> ``count``
    events per window with mean ``level * rhythm(t)``; ``negbin`` is over-dispersed with
    ``Var = mu (1 + mu / r)`` (``phi = 1 + level / r`` at the peak, 1.5 to 3).
``binomial`` -> ``ratio``
    ``numerator ~ Binomial(denominator, p(t))`` given a random, rhythmic denominator
    ``~ Poisson(level * rhythm(t))``; ``p`` has a small daily rhythm on the logit scale.
``compound`` -> ``sum``
    the sum of ``N ~ Poisson(level * rhythm(t))`` exponential event sizes of mean
    ``theta`` (order values): compound Poisson with a closed-form density (Bessel I1).
``gauss``, ``lognormal``, ``logitnormal`` -> ``real``
    a temperature (Gaussian), a latency in ms (log-normal) and a utilisation in % (0-100,
    logit-normal), each with a daily rhythm in its location.

Volumes: ``thin`` (1-5 events a window on average), ``medium`` (tens), ``thick``
(hundreds to thousands); real-valued series have volume ``real``.

Scenarios (incidents change the parameters over ``[start, start + duration)``):
``drop``/``rise`` (level x (1 -/+ m); ratios: odds x (1 -/+ m); real: location -/+ m sigma),
``spike`` (one window, larger m), ``ramp`` (a drop or rise growing linearly to its full
size over the duration), ``variance`` (counts: over-dispersion x (1 + m) at the same mean;
real: sigma x (1 + m)).

Log-likelihoods (:func:`loglik`) leave out terms of the data alone (``log x!``, the
binomial coefficient, the Jacobian of the log/logit transform): they cancel in every
likelihood ratio, which is all the oracle uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC
FAMILY_KIND = {"poisson": "count", "negbin": "count", "binomial": "ratio", "compound": "sum",
               "gauss": "real", "lognormal": "real", "logitnormal": "real"}
COUNT_LIKE = ("poisson", "negbin", "binomial", "compound")
REAL = ("gauss", "lognormal", "logitnormal")
VOLUMES = {"thin": (2.0, 6.0), "medium": (30.0, 120.0), "thick": (500.0, 3000.0)}
"""Events (or denominator) a window at the daily peak; the day averages ~0.6 of it."""
SCENARIOS = ("drop", "rise", "spike", "ramp", "variance")
CADENCES = ((60.0, 0.75), (300.0, 0.15), (3600.0, 0.10))
"""Window lengths and their share of the series."""
DURATION_WINDOWS = {60.0: (15, 120), 300.0: (6, 36), 3600.0: (3, 12)}
"""Incident durations (windows) by cadence; ramps last 1.5 times longer."""

Params = dict[str, Any]


@dataclass(frozen=True)
class SeriesSpec:
    """One synthetic series: its family, volume, cadence and null parameters."""

    key: str
    family: str
    volume: str
    window: float
    level: float = 0.0  # events (denominator) a window at the peak; real: base location
    trough: float = 0.3  # rhythm at night, as a share of the peak
    phase: float = 0.0  # hours the daily curve is shifted by
    shape: float = math.inf  # negbin r; binomial p; compound theta; real sigma
    amp: float = 0.0  # real: rhythm amplitude of the location

    @property
    def kind(self) -> str:
        return FAMILY_KIND[self.family]


@dataclass(frozen=True)
class Incident:
    """A change of known size: ``sign`` -1 lowers, +1 raises the level (location)."""

    series: str
    scenario: str
    start_index: int
    duration: int  # windows
    magnitude: float
    sign: int = 1


@dataclass
class Series:
    """Generated data: value per window, plus numerator/denominator for ratios."""

    spec: SeriesSpec
    ts: np.ndarray  # window starts
    value: np.ndarray
    numerator: np.ndarray | None
    denominator: np.ndarray | None
    params: Params  # the true parameters per window (incidents applied)
    incidents: list[Incident] = field(default_factory=list)

    def points(self) -> list[tuple[float, float, float, float | None, float | None]]:
        """(window_start, window_end, value, numerator, denominator) per window."""
        w = self.spec.window
        if self.numerator is None or self.denominator is None:
            return [(t, t + w, v, None, None) for t, v in zip(self.ts.tolist(),
                                                               self.value.tolist(), strict=True)]
        return list(zip(self.ts.tolist(), (self.ts + w).tolist(), self.value.tolist(),
                        self.numerator.tolist(), self.denominator.tolist(), strict=True))


def _bump(h: np.ndarray) -> np.ndarray:
    b = 0.55 * np.exp(2.5 * (np.cos(2 * np.pi * (h - 13.0) / 24.0) - 1.0))
    return b + 0.45 * np.exp(3.5 * (np.cos(2 * np.pi * (h - 20.5) / 24.0) - 1.0))


_B = _bump(np.linspace(0.0, 24.0, 24 * 3600 + 1))
_BMIN, _BSPAN = float(_B.min()), float(_B.max() - _B.min())


def rhythm(spec: SeriesSpec, ts: np.ndarray) -> np.ndarray:
    """Daily shape from ``trough`` (night) to 1 (evening peak), lunch peak between (UTC)."""
    b = (_bump((ts % DAY) / 3600.0 - spec.phase) - _BMIN) / _BSPAN
    return spec.trough + (1.0 - spec.trough) * b


def null_params(spec: SeriesSpec, ts: np.ndarray) -> Params:
    """The incident-free parameters of every window at ``ts``."""
    r = rhythm(spec, ts)
    if spec.family in ("poisson", "negbin"):
        return {"mu": spec.level * r, "r": np.full(len(ts), spec.shape)}
    if spec.family == "binomial":
        logit = special.logit(spec.shape) + 0.3 * (r - 0.5)
        return {"d": spec.level * r, "logit": logit}
    if spec.family == "compound":
        return {"lam": spec.level * r, "theta": np.full(len(ts), spec.shape)}
    if spec.family == "gauss":
        loc = spec.level + spec.amp * (r - 0.5)
    elif spec.family == "lognormal":
        loc = math.log(spec.level) + spec.amp * (r - 0.5)
    elif spec.family == "logitnormal":
        loc = special.logit(spec.level / 100.0) + spec.amp * (r - 0.5)
    else:
        raise ValueError(f"unknown family {spec.family!r}")
    return {"loc": loc, "sigma": np.full(len(ts), spec.shape)}


def changed(spec: SeriesSpec, p: Params, inc: Incident, frac: np.ndarray | float) -> Params:
    """``p`` (null parameters of some windows) with ``inc`` applied at ``frac`` of its size."""
    m, s = inc.magnitude, inc.sign
    q = dict(p)
    if inc.scenario == "variance":
        if spec.family in ("poisson", "negbin"):
            phi = 1.0 + spec.level / spec.shape  # inf -> 1 (Poisson)
            q["r"] = np.full_like(p["mu"], spec.level / (phi * (1.0 + m) - 1.0))
        elif spec.family in REAL:
            q["sigma"] = p["sigma"] * (1.0 + m)
        else:
            raise ValueError(f"no variance change for {spec.family}")
        return q
    step = s * m * np.asarray(frac, dtype=float)
    if spec.family in ("poisson", "negbin"):
        q["mu"] = p["mu"] * (1.0 + step)
    elif spec.family == "binomial":
        q["logit"] = p["logit"] + np.log1p(step)
    elif spec.family == "compound":
        q["lam"] = p["lam"] * (1.0 + step)
    else:
        q["loc"] = p["loc"] + step * p["sigma"]
    return q


def sample(spec: SeriesSpec, p: Params, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one window per parameter row: (value or numerator, denominator or None)."""
    f = spec.family
    if f in ("poisson", "negbin"):
        mu, r = p["mu"], p["r"]
        pois = ~np.isfinite(r)
        x = np.empty(len(mu))
        x[pois] = rng.poisson(mu[pois])
        rr = r[~pois]
        x[~pois] = rng.negative_binomial(rr, rr / (rr + mu[~pois]))
        return x, None
    if f == "binomial":
        n = rng.poisson(p["d"])
        return rng.binomial(n, special.expit(p["logit"])).astype(float), n.astype(float)
    if f == "compound":
        n = rng.poisson(p["lam"])
        return np.where(n > 0, rng.gamma(np.maximum(n, 1), p["theta"]), 0.0), None
    y = rng.normal(p["loc"], p["sigma"])
    if f == "lognormal":
        return np.exp(y), None
    if f == "logitnormal":
        return 100.0 * special.expit(y), None
    return y, None


def loglik(spec: SeriesSpec, x: np.ndarray, den: np.ndarray | None, p: Params) -> np.ndarray:
    """Log-likelihood of each window's observation under ``p`` (data-only terms left out)."""
    f = spec.family
    if f in ("poisson", "negbin"):
        mu, r = p["mu"], np.broadcast_to(p["r"], np.shape(x))
        out = x * np.log(mu) - mu
        nb = np.isfinite(r)
        if nb.any():
            xx, mm, rr = x[nb], mu[nb], r[nb]
            out[nb] = (special.gammaln(xx + rr) - special.gammaln(rr) + rr * np.log(rr / (rr + mm))
                       + xx * np.log(mm / (rr + mm)))
        return out
    if f == "binomial":
        assert den is not None
        lg = p["logit"]
        # x log p + (n - x) log(1 - p), with log p = -log1p(e^-l), log(1-p) = -log1p(e^l)
        return -x * np.logaddexp(0.0, -lg) - (den - x) * np.logaddexp(0.0, lg)
    if f == "compound":
        lam, theta = p["lam"], p["theta"]
        pos = x > 0
        xs = np.where(pos, x, 1.0)
        z = 2.0 * np.sqrt(lam * xs / theta)
        dens = (-lam - xs / theta + 0.5 * np.log(lam / (xs * theta))
                + np.log(special.ive(1, z)) + z)
        return np.where(pos, dens, -lam)
    if f == "lognormal":
        y = np.log(x)
    elif f == "logitnormal":
        y = special.logit(np.clip(x / 100.0, 1e-300, 1 - 1e-16))
    else:
        y = x
    sig = p["sigma"]
    return -np.log(sig) - 0.5 * ((y - p["loc"]) / sig) ** 2


def mean_var(spec: SeriesSpec, p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Declared mean and variance of the value per window (ratios: of the numerator given
    the expected denominator is not closed-form, so of the numerator given ``d``)."""
    f = spec.family
    if f in ("poisson", "negbin"):
        mu = p["mu"]
        r = p["r"]
        return mu, mu + np.where(np.isfinite(r), mu**2 / np.where(np.isfinite(r), r, 1.0), 0.0)
    if f == "compound":
        lam, th = p["lam"], p["theta"]
        return lam * th, 2.0 * lam * th**2
    if f == "binomial":
        q = special.expit(p["logit"])
        d = p["d"]
        # numerator = Binomial(Poisson(d), q) = Poisson(d q)
        return d * q, d * q
    if f == "gauss":
        return p["loc"], p["sigma"] ** 2
    if f == "lognormal":
        m, s2 = p["loc"], p["sigma"] ** 2
        return np.exp(m + s2 / 2), (np.exp(s2) - 1) * np.exp(2 * m + s2)
    raise ValueError(f"no closed-form moments for {f}")


# -- the catalogue ------------------------------------------------------------------------
TEMPLATES: tuple[tuple[str, str], ...] = tuple(
    [(f, v) for f in COUNT_LIKE for v in VOLUMES] + [(f, "real") for f in REAL])


def make_spec(key: str, family: str, volume: str, window: float,
              rng: np.random.Generator) -> SeriesSpec:
    """Random null parameters for a series of ``family`` and ``volume``."""
    phase = float(rng.uniform(-2.0, 2.0))
    trough = float(rng.uniform(0.1, 0.4))
    if family in REAL:
        if family == "gauss":  # a temperature, degrees C
            return SeriesSpec(key, family, volume, window, level=float(rng.uniform(15, 30)),
                              trough=trough, phase=phase, shape=float(rng.uniform(0.3, 1.0)),
                              amp=float(rng.uniform(2, 8)))
        if family == "lognormal":  # a latency, ms
            return SeriesSpec(key, family, volume, window, level=float(rng.uniform(80, 300)),
                              trough=trough, phase=phase, shape=float(rng.uniform(0.1, 0.4)),
                              amp=float(rng.uniform(0.2, 0.6)))
        return SeriesSpec(key, family, volume, window, level=float(rng.uniform(20, 60)),
                          trough=trough, phase=phase, shape=float(rng.uniform(0.1, 0.3)),
                          amp=1.0)
    lo, hi = VOLUMES[volume]
    level = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
    if family == "poisson":
        shape = math.inf
    elif family == "negbin":
        shape = level / (float(rng.uniform(1.5, 3.0)) - 1.0)
    elif family == "binomial":
        shape = float(rng.choice([0.03, 0.35, 0.95]))  # conversion, bounce, payment success
    else:
        shape = float(rng.uniform(20.0, 80.0))  # mean order value
    return SeriesSpec(key, family, volume, window, level=level, trough=trough, phase=phase,
                      shape=shape)


def draw_incident(spec: SeriesSpec, scenario: str, start_index: int,
                  rng: np.random.Generator) -> Incident:
    """An incident of ``scenario`` with a random size, direction and duration."""
    lo, hi = DURATION_WINDOWS[spec.window]
    real = spec.family in REAL
    if scenario == "spike":
        duration = 1
        if real:
            sign, m = int(rng.choice([-1, 1])), float(rng.uniform(4.0, 10.0))
        elif spec.family == "binomial" and rng.random() < 0.5:
            sign, m = -1, float(rng.uniform(0.6, 0.9))
        else:
            sign, m = 1, float(rng.uniform(1.0, 4.0))
    elif scenario == "variance":
        duration, sign, m = int(rng.integers(lo, hi + 1)), 1, float(rng.uniform(0.5, 2.0))
    else:
        duration = int(rng.integers(lo, hi + 1))
        if scenario == "ramp":
            duration = int(duration * 1.5)
        sign = {"drop": -1, "rise": 1}.get(scenario, int(rng.choice([-1, 1])))
        if real:
            m = float(rng.uniform(0.75, 3.0) if scenario != "ramp" else rng.uniform(1.0, 4.0))
        elif sign < 0:
            m = float(rng.uniform(0.2, 0.6) if scenario != "ramp" else rng.uniform(0.3, 0.7))
        else:
            m = float(rng.uniform(0.2, 1.0) if scenario != "ramp" else rng.uniform(0.3, 1.0))
    return Incident(spec.key, scenario, start_index, duration, m, sign)


def scenarios_for(family: str) -> tuple[str, ...]:
    """Scenarios that make sense for ``family`` (no variance change of ratios or sums)."""
    if family in ("binomial", "compound"):
        return ("drop", "rise", "spike", "ramp")
    return SCENARIOS


def incident_frac(inc: Incident) -> np.ndarray:
    """Share of the full change in each window of the incident (ramps grow linearly)."""
    if inc.scenario == "ramp":
        return np.arange(1, inc.duration + 1, dtype=float) / inc.duration
    return np.ones(inc.duration)


def generate(spec: SeriesSpec, days: float, incidents: list[Incident],
             rng: np.random.Generator) -> Series:
    """The series over ``days`` with ``incidents`` applied to its parameters."""
    n = round(days * DAY / spec.window)
    ts = START + spec.window * np.arange(n, dtype=float)
    p = null_params(spec, ts)
    for inc in incidents:
        sl = slice(inc.start_index, inc.start_index + inc.duration)
        part = changed(spec, {k: v[sl] for k, v in p.items()}, inc, incident_frac(inc))
        for k, v in part.items():
            p[k] = p[k].copy()
            p[k][sl] = v
    x, den = sample(spec, p, rng)
    if spec.family == "binomial":
        assert den is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(den > 0, x / np.maximum(den, 1.0), np.nan)
        return Series(spec, ts, value, x, den, p, list(incidents))
    return Series(spec, ts, x, None, None, p, list(incidents))


def build(n_series: int, days: float, seed: int, *, incident_free: float = 0.25,
          per_series: int = 2, warm_days: float = 1.5) -> list[Series]:
    """``n_series`` series cycling through :data:`TEMPLATES`, random cadence and incidents.

    A share ``incident_free`` of the series has none; the others get ``per_series``
    incidents of random scenarios at random hours after ``warm_days``, at least 6 h apart.
    """
    rng = np.random.default_rng(seed)
    windows = [w for w, _ in CADENCES]
    shares = np.array([s for _, s in CADENCES])
    out: list[Series] = []
    for i in range(n_series):
        family, volume = TEMPLATES[i % len(TEMPLATES)]
        window = float(rng.choice(windows, p=shares / shares.sum()))
        spec = make_spec(f"s{i:04d}-{family}-{volume}-{int(window)}s", family, volume,
                         window, rng)
        incidents: list[Incident] = []
        if rng.random() >= incident_free:
            n = round(days * DAY / window)
            first = math.ceil(warm_days * DAY / window)
            gap = int(6 * 3600 / window)
            for _ in range(per_series):
                inc = draw_incident(spec, str(rng.choice(scenarios_for(family))), 0, rng)
                for _try in range(50):
                    if n - inc.duration <= first:
                        break
                    s = int(rng.integers(first, n - inc.duration))
                    if all(s + inc.duration + gap <= o.start_index
                           or o.start_index + o.duration + gap <= s for o in incidents):
                        incidents.append(Incident(inc.series, inc.scenario, s, inc.duration,
                                                  inc.magnitude, inc.sign))
                        break
        incidents.sort(key=lambda o: o.start_index)
        out.append(generate(spec, days, incidents, rng))
    return out
