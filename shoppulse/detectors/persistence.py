"""CUSUM of log-likelihood ratios, a calibrated score, and the alarm episode.

Why a CUSUM: with ~430 000 series-windows a day, any per-window test alarms hundreds of
times a day. Evidence has to accumulate: for each alternative ``i`` of a small bank (the
mean x 0.25 ... x 3, or shifted by 0.75 ... 3 sigmas; see
:mod:`~shoppulse.detectors.evidence`), ``S_i = max(0, S_i + log f_i(x) / f_0(x))``, and
the statistic is ``max_i S_i``. This is the likelihood-ratio CUSUM that is optimal
(Lorden, Moustakides) for a known change; a bank of alternatives a factor ~2 apart loses
little when the size of the change is unknown. Thin series keep their evidence: a window
with 0 events where 2 were expected adds ``log`` ratios of about 1, which a z-score with
an allowance threw away. Each ``S_i`` is capped at ``ceiling * h`` so that it falls
back soon after the change ends.

Score (separate from the alarm): the tail probability ``p = n exp(-S)`` of the
statistic under the null (Ville's inequality for ``n`` likelihood ratios), or of the
window's own largest ratio times ``bonferroni`` when that is smaller (ranks huge single
windows above the cap), mapped to ``1 - p ** (1/4)``: ``P(score >= x) <= (1 - x) ** 4``
on normal data; a higher threshold means fewer, surer alarms.

Alarm episode (:class:`Episode`): starts when the statistic reaches ``h``; ends once it
has stayed below ``release * h`` for ``cooldown`` seconds (event time), so an incident
hovering near the threshold raises one episode, not a string of them.

>>> c = Cusum(h=12.0, n=2)
>>> [c.step([x, -1.0]) for x in (4.0, -1.0, 5.0, 6.0)]  # alarm on the 4th
[4.0, 3.0, 8.0, 14.0]
>>> e = Episode(h=5.0, release=0.5, cooldown=120.0)
>>> [e.step(t, s) for t, s in ((0, 5.0), (60, 1.0), (120, 0.0), (180, 0.0), (240, 6.0))]
[True, True, False, False, True]
>>> round(surprise_score(1e-4), 2), surprise_score(1.0)
(0.9, 0.0)
"""

from __future__ import annotations

import math

from shoppulse.detectors.evidence import N_ALTERNATIVES


def surprise_score(p: float) -> float:
    """Tail probability -> score in [0, 1]: ``1 - p ** 0.25`` (see the module docstring)."""
    if not p < 1.0:
        return 0.0
    if p <= 0.0:
        return 1.0
    return 1.0 - p**0.25


def window_tail(llrs: list[float], bonferroni: float) -> float:
    """Tail bound of one window's largest likelihood ratio, times ``bonferroni``."""
    return min(1.0, bonferroni * len(llrs) * math.exp(-min(700.0, max(llrs))))


class Cusum:
    """One CUSUM per alternative; :meth:`step` returns the statistic ``max_i S_i``."""

    def __init__(self, h: float, ceiling: float = 1.5, n: int = N_ALTERNATIVES) -> None:
        self.h = h
        self.ceiling = ceiling * h
        self.n = n
        self.s = [0.0] * n

    def step(self, llrs: list[float]) -> float:
        """Add one window's log-likelihood ratios (one per alternative)."""
        c = self.ceiling
        self.s = [min(c, max(0.0, s + x)) for s, x in zip(self.s, llrs, strict=True)]
        return max(self.s)

    @property
    def stat(self) -> float:
        return max(self.s)

    def set_h(self, h: float) -> None:
        """A new threshold (the cadence changed it); the statistics are kept."""
        self.ceiling *= h / self.h
        self.h = h

    def tail(self) -> float:
        """Bound on the probability of the current statistic under the null."""
        return min(1.0, self.n * math.exp(-self.stat))

    def reset(self) -> None:
        self.s = [0.0] * self.n


class Episode:
    """Alarm state with hysteresis and a cool-down in seconds (one episode per incident)."""

    def __init__(self, h: float, release: float = 0.5, cooldown: float = 900.0) -> None:
        self.h = h
        self.release = release * h
        self.cooldown = cooldown
        self.active = False
        self.since: float | None = None  # start of the current episode
        self.hot: float = -math.inf  # last time the statistic was above the release level

    def step(self, ts: float, stat: float, min_hold: float = 0.0) -> bool:
        """Alarm state after a window with CUSUM statistic ``stat`` at ``ts``."""
        if stat >= self.h:
            if not self.active:
                self.active, self.since = True, ts
            self.hot = ts
        elif self.active:
            if stat >= self.release:
                self.hot = ts
            elif ts - self.hot >= max(self.cooldown, min_hold):
                self.end()
        return self.active

    def set_h(self, h: float) -> None:
        """A new threshold (the cadence changed it)."""
        self.release *= h / self.h
        self.h = h

    def end(self) -> None:
        self.active = False
        self.since = None
        self.hot = -math.inf
