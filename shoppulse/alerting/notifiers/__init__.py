"""Notifiers: webhook (signed), Alertmanager and stdout receivers, grouping, delivery.

Receivers of shoppulse's webhooks check requests with :func:`verify`::

    from shoppulse.alerting.notifiers import SignatureError, verify
    verify(body, request.headers["X-Shoppulse-Signature"], [current_secret, old_secret])
"""

from shoppulse.alerting.notifiers.signing import HEADER, SignatureError, sign, verify

__all__ = ["HEADER", "SignatureError", "sign", "verify"]
