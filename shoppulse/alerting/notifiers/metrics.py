"""Notifier metrics, on the worker's registry (never the global one).

``shoppulse_notifications_total{receiver,result}``: ``sent`` and ``failed`` count
notification attempts, ``deduplicated`` and ``dropped`` count transitions that never
became one (already delivered or queued; given up to bound the backlog).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

RESULTS = ("sent", "failed", "deduplicated", "dropped")


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.notifications = Counter(
            "shoppulse_notifications", "Notification attempts (sent, failed) and transitions "
            "not notified (deduplicated, dropped)", ["receiver", "result"], registry=r)
        self.failures = Counter(
            "shoppulse_notification_failures", "Failed delivery attempts", ["receiver"],
            registry=r)
        self.queue = Gauge(
            "shoppulse_notification_queue", "Transitions waiting for delivery", ["receiver"],
            registry=r)
        self.down = Gauge(
            "shoppulse_notifier_down", "1 while a receiver's deliveries keep failing",
            ["receiver"], registry=r)

    def declare(self, receiver: str) -> None:
        """Every series exists from the start, so ``increase()`` sees the first failure."""
        for result in RESULTS:
            self.notifications.labels(receiver, result)
        self.failures.labels(receiver)
        self.queue.labels(receiver).set(0)
        self.down.labels(receiver).set(0)
