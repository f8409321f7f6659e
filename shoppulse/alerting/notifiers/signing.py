"""HMAC-SHA256 signatures of outgoing webhooks, and the check receivers run.

Header ``X-Shoppulse-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``; each ``v1`` is
HMAC-SHA256 over ``b"<t>." + body`` with one secret. Why a timestamp: a captured request
cannot be replayed later, because :func:`verify` refuses timestamps older (or further in
the future) than a tolerance. Why several ``v1``: during a key rotation the sender signs
with the new and the old secret, so receivers holding either one accept, and a receiver
holding both (:func:`verify` takes a list) accepts either signature.

>>> header = sign(b'{"a":1}', ["new-key", "old-key"], timestamp=1_700_000_000)
>>> verify(b'{"a":1}', header, ["old-key"], now=1_700_000_100)
1700000000
>>> verify(b'{"a":2}', header, ["old-key"], now=1_700_000_100)
Traceback (most recent call last):
...
shoppulse.alerting.notifiers.signing.SignatureError: no signature matches a known secret
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "X-Shoppulse-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """The request is not signed by a known secret within the tolerance; says why."""


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str | bytes], *, timestamp: float | None = None) -> str:
    """The header value for ``body``: one ``v1`` per secret (current first)."""
    if not secrets:
        raise ValueError("signing needs at least one secret")
    t = int(time.time() if timestamp is None else timestamp)
    return ",".join([f"t={t}", *(f"{SCHEME}={_digest(s, t, body)}" for s in secrets)])


def verify(body: bytes, header: str | None, secrets: Sequence[str | bytes], *,
           tolerance: float = DEFAULT_TOLERANCE, now: float | None = None) -> int:
    """Check ``header`` against ``body``; return its timestamp or raise :class:`SignatureError`.

    ``secrets``: every secret the receiver currently accepts (during a rotation, old and
    new). The comparison is constant-time.
    """
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {HEADER} element {part.strip()!r}")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"timestamp {value!r} is not an integer") from None
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp (t=) in the signature header")
    if not signatures:
        raise SignatureError(f"no {SCHEME}= signature in the header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp {timestamp} is {current - timestamp:+.0f}s from now "
            f"(tolerance {tolerance:g}s): stale or replayed")
    for secret in secrets:
        expected = _digest(secret, timestamp, body)
        if any(hmac.compare_digest(expected, sig) for sig in signatures):
            return timestamp
    raise SignatureError("no signature matches a known secret")
