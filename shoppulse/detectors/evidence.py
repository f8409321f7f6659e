"""Turn "how far from expected" into z-scores that mean the same on every series.

Why: one threshold must serve a series of 3 events a window and one of 3 000. Each
function returns the evidence that the observation lies *beyond a minimum effect* above
(``z_up``) or below (``z_dn``) the expectation, as a one-sided normal quantile of the
tail probability under the right distribution:

- counts and sums: quasi-Poisson, ``Var = phi * mu`` (tail of Poisson(mu/phi) at x/phi);
- ratios: quasi-binomial, ``Var = phi * n p (1-p)`` (tail of Binomial(n/phi, p) at x/phi),
  so 0 of 3 at p = 0.03 is unremarkable and 0 of 3 000 is overwhelming;
- anything else: Gaussian with the given standard deviation.

``phi >= 1`` is the over-dispersion the caller estimates from its own residuals. The null
hypotheses are shifted by the minimum effect (``mu_up = mu + effect`` …), so deviations
smaller than the effect give no evidence however many events back them. Tails use the
continuous extension of the discrete CDFs (regularised incomplete gamma / beta) so
dividing counts by ``phi`` is well defined. Cost: ~2 µs per tail.

A 3 % conversion with a minimum effect of 0.3 points (null for a drop: 2.7 %):

>>> round(binomial_z(0, 3, p_up=0.033, p_dn=0.027, phi=1.0)[1], 2)  # 0 of 3: nothing
-1.41
>>> round(binomial_z(0, 3000, p_up=0.033, p_dn=0.027, phi=1.0)[1], 1)  # 0 of 3 000
12.5
>>> round(binomial_z(0, 3000, p_up=0.033, p_dn=0.027, phi=4.0)[1], 1)  # over-dispersed
6.0
>>> round(poisson_z(160, mu_up=110, mu_dn=90, phi=1.0)[0], 1)  # 160 where 100 expected
4.4
"""

from __future__ import annotations

import math
from statistics import NormalDist

from scipy.special import betainc, gammainc, gammaincc, stdtr

Z_MIN = -8.0
Z_MAX = 37.0
_inv_cdf = NormalDist().inv_cdf


def tail_to_z(p: float) -> float:
    """One-sided tail probability -> normal quantile, clipped to [-8, 37] (NaN: -8)."""
    if p != p:  # NaN: outside the distribution's domain, no evidence
        return Z_MIN
    if not p > 1e-300:
        return Z_MAX
    if p >= 1.0 - 1e-15:
        return Z_MIN
    return max(Z_MIN, -_inv_cdf(p))


def poisson_z(x: float, mu_up: float, mu_dn: float, phi: float) -> tuple[float, float]:
    """Evidence that count ``x`` exceeds ``mu_up`` / falls below ``mu_dn`` (quasi-Poisson)."""
    xs = x / phi
    if xs <= 0:
        z_up = Z_MIN
    elif mu_up <= 0:
        z_up = Z_MAX
    else:
        z_up = tail_to_z(float(gammainc(xs, mu_up / phi)))
    z_dn = Z_MIN if mu_dn <= 0 else tail_to_z(float(gammaincc(xs + 1.0, mu_dn / phi)))
    return z_up, z_dn


def binomial_z(x: float, n: float, p_up: float, p_dn: float, phi: float) -> tuple[float, float]:
    """Evidence that ``x`` successes of ``n`` exceed rate ``p_up`` / fall below ``p_dn``."""
    xs, ns = x / phi, n / phi
    if xs <= 0 or p_up >= 1:
        z_up = Z_MIN
    elif p_up <= 0:
        z_up = Z_MAX
    else:
        xs_up = min(xs, ns)
        z_up = tail_to_z(float(betainc(xs_up, ns - xs_up + 1.0, p_up)))
    if xs >= ns or p_dn <= 0:
        z_dn = Z_MIN
    elif p_dn >= 1:
        z_dn = Z_MAX
    else:
        z_dn = tail_to_z(float(betainc(ns - xs, xs + 1.0, 1.0 - p_dn)))
    return z_up, z_dn


def gauss_z(
    x: float, mu_up: float, mu_dn: float, sd: float, df: float | None = None
) -> tuple[float, float]:
    """Evidence that ``x`` exceeds ``mu_up`` / falls below ``mu_dn`` with noise ``sd``.

    With ``df`` the noise is Student-t with ``df`` degrees of freedom (scaled so its
    standard deviation is ``sd``): heavy tails for values nobody promised are Gaussian,
    such as averages of a few log-normal order values.
    """
    t_up = (x - mu_up) / sd
    t_dn = (mu_dn - x) / sd
    if df is not None:
        scale = math.sqrt(df / (df - 2.0)) if df > 2 else 1.0
        return _t_to_z(t_up * scale, df), _t_to_z(t_dn * scale, df)
    return min(Z_MAX, max(Z_MIN, t_up)), min(Z_MAX, max(Z_MIN, t_dn))


def _t_to_z(t: float, df: float) -> float:
    if t <= 0:
        return max(Z_MIN, t)  # the body hardly matters: no evidence either way
    return tail_to_z(float(stdtr(df, -t)))


def normal_quantile(p: float) -> float:
    """Standard normal quantile."""
    return _inv_cdf(p)


# -- log-likelihood ratios of a bank of alternatives (the CUSUM's increments) -----------
RATE_UP = (1.3, 1.8, 3.0, 6.0)
RATE_DN = (0.75, 0.5, 0.25, 0.08)
"""Alternatives of the count, sum, rate and ratio families: the mean (the odds for
ratios) times these factors of the (minimum-effect shifted) null."""
SHIFTS = (1.0, 2.0, 4.0, 8.0)
"""Alternatives of the Gaussian families: the mean shifted by these sigmas either way."""
N_ALTERNATIVES = 8
_LOG_UP = tuple(math.log(t) for t in RATE_UP)
_LOG_DN = tuple(math.log(t) for t in RATE_DN)
LLR_MIN = -50.0


def poisson_llrs(x: float, mu_up: float, mu_dn: float, phi: float) -> list[float]:
    """Quasi-Poisson log-likelihood ratios ``(x log t - mu (t - 1)) / phi`` of the
    alternatives ``t * mu_up`` (rises) and ``t * mu_dn`` (falls) against those nulls.

    >>> [round(v, 2) for v in poisson_llrs(0.0, 2.0, 2.0, 1.0)]  # nothing where 2 expected
    [-0.6, -1.6, -4.0, -10.0, 0.5, 1.0, 1.5, 1.84]
    """
    out = [max(LLR_MIN, (x * lt - mu_up * (t - 1.0)) / phi)
           for t, lt in zip(RATE_UP, _LOG_UP, strict=True)]
    if mu_dn <= 0.0:
        return out + [LLR_MIN] * len(RATE_DN)
    out += [max(LLR_MIN, (x * lt - mu_dn * (t - 1.0)) / phi)
            for t, lt in zip(RATE_DN, _LOG_DN, strict=True)]
    return out


def binomial_llrs(x: float, n: float, p_up: float, p_dn: float, phi: float) -> list[float]:
    """Quasi-binomial log-likelihood ratios of the odds times ``RATE_UP`` / ``RATE_DN``."""
    out = []
    for p0, factors in ((p_up, RATE_UP), (p_dn, RATE_DN)):
        if not 0.0 < p0 < 1.0:
            out += [LLR_MIN] * len(factors)
            continue
        odds = p0 / (1.0 - p0)
        lp0, lq0 = math.log(p0), math.log1p(-p0)
        for t in factors:
            p1 = t * odds / (1.0 + t * odds)
            llr = x * (math.log(p1) - lp0) + (n - x) * (math.log1p(-p1) - lq0)
            out.append(max(LLR_MIN, llr / phi))
    return out


def gauss_llrs(z_up: float, z_dn: float) -> list[float]:
    """Gaussian log-likelihood ratios of mean shifts of ``SHIFTS`` sigmas: ``d z - d^2/2``
    with ``z`` the distance beyond the shifted null (``z_up`` rises, ``z_dn`` falls)."""
    return [max(LLR_MIN, d * z - 0.5 * d * d) for z in (z_up, z_dn) for d in SHIFTS]


VAR_UP = 2.5
"""Variance alternative: the noise variance times this (over-dispersion x 1.5 ... x 3)."""
_VAR_A = -0.5 * math.log(VAR_UP)
_VAR_B = 0.5 * (1.0 - 1.0 / VAR_UP)


def variance_llr(z: float) -> float:
    """Gaussian log-likelihood ratio of the variance times ``VAR_UP`` for a standardised
    residual ``z``: ``-log(k)/2 + z^2 (1 - 1/k) / 2`` (-0.16 a window on average under the
    null, +0.14 when the variance has doubled). Only meaningful where the residual is
    near Gaussian (the caller gives ``LLR_MIN`` for thin counts).

    >>> round(variance_llr(0.0), 2), round(variance_llr(3.0), 2)
    (-0.46, 2.24)
    """
    return max(LLR_MIN, _VAR_A + _VAR_B * z * z)


def negbin_llrs(x: float, mu_up: float, mu_dn: float, phi: float) -> list[float]:
    """Negative-binomial log-likelihood ratios of the means ``t * mu_up`` / ``t * mu_dn``
    at a fixed shape ``r = mu / (phi - 1)`` (the variance ``phi * mu`` at the null).

    Why not quasi-Poisson: ``x log t / phi`` grows too fast in ``x``; an over-dispersed
    count's right tail is geometric, so a thin series' lucky window weighed like a
    spike (a ``x 6`` alternative alarmed on them). Close to ``phi = 1`` it is Poisson.

    >>> [round(v, 2) for v in negbin_llrs(30.0, 5.0, 5.0, 2.0)][:4]  # 30 where 5, phi 2
    [2.98, 5.86, 8.7, 9.91]
    >>> [round(v, 2) for v in poisson_llrs(30.0, 5.0, 5.0, 2.0)][:4]  # quasi-Poisson
    [3.19, 6.82, 11.48, 14.38]
    """
    if phi <= 1.02:
        return poisson_llrs(x, mu_up, mu_dn, 1.0)
    out: list[float] = []
    for mu0, factors in ((mu_up, RATE_UP), (mu_dn, RATE_DN)):
        if mu0 <= 0.0:
            out += [LLR_MIN] * len(factors)
            continue
        r = mu0 / (phi - 1.0)
        a = r + mu0
        for t in factors:
            b = r + t * mu0
            out.append(max(LLR_MIN, x * math.log(t * a / b) + r * math.log(a / b)))
    return out


def _log_i1(z: float) -> float:
    """``log I_1(z)`` by the uniform (Debye) expansion: within 0.08 for small ``z``,
    0.01 from ``z = 1`` on; costs three elementary functions, not a Bessel call."""
    s = math.sqrt(1.0 + z * z)
    return s + math.log(z / (1.0 + s)) - 0.9189385332046727 - 0.5 * math.log(s)


def compound_llrs(x: float, mu_up: float, mu_dn: float, phi: float) -> list[float]:
    """Log-likelihood ratios for a sum of ``N ~ Poisson(lam)`` event sizes (exponential,
    mean ``theta = phi / 2``: then ``Var = phi * mean``) when the number of events
    changes by ``t`` and their size does not (a traffic drop, not a price change):
    ``-lam (t - 1) + log t / 2 + log I1(2 sqrt(t lam x / theta)) - log I1(2 sqrt(lam x /
    theta))``, ``lam = mean / theta``. A huge sum grows the ratio like ``sqrt(x)``, not
    like ``x``: one large order is not a surge of orders.

    >>> [round(v, 1) for v in compound_llrs(0.0, 100.0, 100.0, 50.0)][4:6]  # nothing sold
    [1.0, 2.0]
    """
    theta = max(0.5 * phi, 1e-12)
    out: list[float] = []
    for mu0, factors in ((mu_up, RATE_UP), (mu_dn, RATE_DN)):
        if mu0 <= 0.0:
            out += [LLR_MIN] * len(factors)
            continue
        lam = mu0 / theta
        if x <= 0.0:
            out += [max(LLR_MIN, -lam * (t - 1.0)) for t in factors]
            continue
        z0 = 2.0 * math.sqrt(lam * x / theta)
        l0 = _log_i1(z0)
        for t in factors:
            st = math.sqrt(t)
            out.append(max(LLR_MIN, -lam * (t - 1.0) + math.log(st) + _log_i1(z0 * st) - l0))
    return out
