"""Delivery primitives: the sender interface, its error, and the retry backoff.

Why a helper and not tenacity: retries here are not a loop around one call. A failed
notification goes back to its group, which is retried after :func:`backoff_delay` merged
with whatever arrived meanwhile, while the receiver serves its other groups; all a retry
needs is the delay.
"""

from __future__ import annotations

import random
from typing import Protocol

from shoppulse.alerting.notifiers.payload import Notification


class DeliveryError(Exception):
    """A delivery attempt failed; the message never carries a secret."""


class Sender(Protocol):
    """Delivers one notification or raises (any exception counts as a failed attempt)."""

    async def send(self, n: Notification) -> None: ...

    async def close(self) -> None: ...


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    Full jitter spreads the retries of many groups (and workers) so a recovering target
    is not hit by all of them at once.

    >>> r = random.Random(1)
    >>> all(0 <= backoff_delay(a, 0.5, 30, r) <= min(30, 0.5 * 2 ** (a - 1)) for a in range(1, 20))
    True
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return rng.uniform(0.0, ceiling)
