"""Two-sided CUSUM on per-window evidence: sustained shifts alarm, single windows don't.

Why: with ~430 000 series-windows a day, any per-window test alarms hundreds of times a
day. A CUSUM accumulates evidence ``z - k`` and alarms when the sum reaches ``h``. A
window adds at most ``cap - k``: with the defaults (``k=1``, ``h=5``, ``cap=6.5``) a lone
window alarms only at z >= 6 (p ~ 1e-9, e.g. 0 of 3 000 at 3 %), a 4-sigma window
followed by a 3.5-sigma one alarm on the second, and ordinary noise essentially never
reaches ``h`` (in-control run length well beyond a day of windows per series).

One episode, one alarm: once the statistic reaches ``h`` the alarm holds until it falls
below ``release * h`` (hysteresis), so a shift hovering near the threshold does not
flicker; the statistic is capped at ``ceiling * h`` so that the alarm ends within a
few windows of the shift ending.

>>> c = Cusum(k=1.0, h=5.0, cap=6.5)
>>> [round(c.step(z, -1.0), 1) for z in (4.0, 0.0, 4.0, 4.0)]  # alarm on the 3rd window
[0.6, 0.4, 1.0, 1.0]
>>> [round(c.step(z, -1.0), 1) for z in (0.0, 0.0, 0.0, -1.0)]  # the shift is over
[1.0, 1.0, 0.9, 0.5]
>>> c.alarm  # 0.5 is not below the release level yet
True
>>> round(c.step(-1.0, -1.0), 1), c.alarm
(0.1, False)
"""

from __future__ import annotations


class Cusum:
    """Upper and lower CUSUM; :meth:`step` returns ``max(S+, S-) / h`` (>= 1 means alarm)."""

    def __init__(
        self, k: float, h: float, cap: float, ceiling: float = 1.5, release: float = 0.5
    ) -> None:
        self.k = k
        self.h = h
        self.cap = cap
        self.ceiling = ceiling * h
        self.release = release * h
        self.up = 0.0
        self.dn = 0.0
        self.active = False

    def step(self, z_up: float, z_dn: float) -> float:
        """Add one window's evidence for an upward and a downward shift."""
        self.up = min(self.ceiling, max(0.0, self.up + min(z_up, self.cap) - self.k))
        self.dn = min(self.ceiling, max(0.0, self.dn + min(z_dn, self.cap) - self.k))
        s = max(self.up, self.dn)
        if s >= self.h:
            self.active = True
        elif s < self.release:
            self.active = False
        return min(1.0, s / self.h)

    @property
    def alarm(self) -> bool:
        """Alarming: reached ``h`` and not yet fallen below ``release * h`` (hysteresis)."""
        return self.active

    @property
    def direction(self) -> int:
        """+1 if the upward statistic leads, -1 if the downward one does, 0 if both are 0."""
        if self.up == self.dn == 0.0:
            return 0
        return 1 if self.up >= self.dn else -1

    def reset(self) -> None:
        self.up = self.dn = 0.0
        self.active = False
