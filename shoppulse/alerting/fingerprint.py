"""The stable identity of an alert: rule name plus label set."""

from __future__ import annotations

import hashlib


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """16 hex digits of SHA-256 over the rule and the sorted labels.

    The same (rule, labels) gives the same fingerprint in every process and release,
    so state, deliveries and audit all key on it; label order does not matter.

    >>> fingerprint("PaymentSuccessLow", {"metric": "payment_success", "platform": "ios"})
    '28c4320a0903a8b2'
    >>> fingerprint("R", {"a": "1", "b": "2"}) == fingerprint("R", {"b": "2", "a": "1"})
    True
    """
    h = hashlib.sha256(rule.encode())
    for k in sorted(labels):
        h.update(b"\x00" + k.encode() + b"\x01" + str(labels[k]).encode())
    return h.hexdigest()[:16]
