"""Two-sided CUSUM on per-window evidence, a calibrated score, and the alarm episode.

Why a CUSUM: with ~430 000 series-windows a day, any per-window test alarms hundreds of
times a day. A CUSUM accumulates evidence ``z - k`` and alarms when the sum reaches ``h``.
A window adds at most ``cap - k``: with the defaults (``k=1``, ``h=5``, ``cap=6.5``) a lone
window alarms only at z >= 6 (p ~ 1e-9, e.g. 0 of 3 000 at 3 %, or a 20 sigma spike), a
4-sigma window followed by a 3.5-sigma one alarm on the second, and ordinary noise
essentially never reaches ``h``. The statistic is capped at ``ceiling * h`` so that it
falls back within a few windows of the shift ending.

Score (separate from the alarm): the tail probability ``p`` of what was seen under the
null, mapped to ``1 - p ** (1/4)``. ``p`` is the smaller of the CUSUM's stationary tail
``2 exp(-2 k S)`` (a reflected random walk with N(-k, 1) steps) and the current window's
two-sided tail times ``bonferroni`` (one surprising window in a day of windows is
expected). So ``P(score >= x) ~ (1 - x) ** 4`` on normal data: 0.5 about once in 16
windows, 0.9 about once in 10 000; a higher threshold means fewer, surer alarms, and a
20 sigma window scores above a 6 sigma one.

Alarm episode (:class:`Episode`): starts when the statistic reaches ``h``; ends once it
has stayed below ``release * h`` for ``cooldown`` seconds (event time), so an incident
hovering near the threshold raises one episode, not a string of them.

>>> c = Cusum(k=1.0, h=5.0, cap=6.5)
>>> [round(c.step(z, -1.0), 1) for z in (4.0, 0.0, 4.0, 4.0)]  # S: alarm on the 3rd
[3.0, 2.0, 5.0, 7.5]
>>> e = Episode(h=5.0, release=0.5, cooldown=120.0)
>>> [e.step(t, s) for t, s in ((0, 5.0), (60, 1.0), (120, 0.0), (180, 0.0), (240, 6.0))]
[True, True, False, False, True]
>>> round(surprise_score(1e-4), 2), surprise_score(1.0)
(0.9, 0.0)
"""

from __future__ import annotations

import math

from shoppulse.detectors.evidence import Z_MAX


def surprise_score(p: float) -> float:
    """Tail probability -> score in [0, 1]: ``1 - p ** 0.25`` (see the module docstring)."""
    if not p < 1.0:
        return 0.0
    if p <= 0.0:
        return 1.0
    return 1.0 - p**0.25


def point_tail(z: float) -> float:
    """Two-sided normal tail of a z-score (``erfc(|z| / sqrt 2)``)."""
    return math.erfc(min(abs(z), Z_MAX) / math.sqrt(2.0))


class Cusum:
    """Upper and lower CUSUM; :meth:`step` returns the statistic ``max(S+, S-)``."""

    def __init__(self, k: float, h: float, cap: float, ceiling: float = 1.5) -> None:
        self.k = k
        self.h = h
        self.cap = cap
        self.ceiling = ceiling * h
        self.up = 0.0
        self.dn = 0.0

    def step(self, z_up: float, z_dn: float) -> float:
        """Add one window's evidence for an upward and a downward shift."""
        self.up = min(self.ceiling, max(0.0, self.up + min(z_up, self.cap) - self.k))
        self.dn = min(self.ceiling, max(0.0, self.dn + min(z_dn, self.cap) - self.k))
        return max(self.up, self.dn)

    @property
    def stat(self) -> float:
        return max(self.up, self.dn)

    def tail(self) -> float:
        """Stationary tail probability of the current statistic under the null."""
        return min(1.0, 2.0 * math.exp(-2.0 * self.k * self.stat))

    @property
    def direction(self) -> int:
        """+1 if the upward statistic leads, -1 if the downward one does, 0 if both are 0."""
        if self.up == self.dn == 0.0:
            return 0
        return 1 if self.up >= self.dn else -1

    def reset(self) -> None:
        self.up = self.dn = 0.0


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

    def end(self) -> None:
        self.active = False
        self.since = None
        self.hot = -math.inf
