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
