"""The headers every dead letter carries, whichever stage rejected the record.

One shape for ``<app>.deadletter``, so an operator (and ``bench hostile``) reads the reason,
the field and where the record came from the same way for input events, metric points,
verdicts and alert records.
"""

from __future__ import annotations


def deadletter_headers(topic: str, partition: int, offset: int, reason: str, error: str,
                       field: str = "") -> list[tuple[str, bytes]]:
    """``shoppulse.topic``/``.partition``/``.offset``/``.reason``/``.field``/``.error``."""
    return [
        ("shoppulse.topic", topic.encode()),
        ("shoppulse.partition", str(partition).encode()),
        ("shoppulse.offset", str(offset).encode()),
        ("shoppulse.reason", reason.encode()),
        ("shoppulse.field", field.encode()),
        ("shoppulse.error", error.encode()),
    ]
