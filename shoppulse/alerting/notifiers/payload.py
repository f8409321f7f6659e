"""What a notification says: Alertmanager's shapes, built from :class:`Alert` transitions.

A :class:`Notification` is one message to one receiver about one group: the transitions
delivered now (each transition reaches a receiver in exactly one successful notification),
or, on a repeat, the group's alerts still firing. :func:`webhook_body` renders it as
Alertmanager's webhook JSON (version 4) plus ``fingerprint`` (of the group), ``counts`` and a
``shoppulse`` object per alert (episode, value, peak, band, score, contributors);
:func:`alertmanager_alerts` as the body of Alertmanager's ``POST /api/v2/alerts``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shoppulse.streams.records import Alert

#: Alertmanager's "no end yet" (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds: ``2026-01-01T08:00:00.000Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels routing and grouping see: the series labels, ``alertname`` (the rule)
    and ``severity``, as Alertmanager expects them."""
    return {**{k: str(v) for k, v in alert.labels.items()}, "alertname": alert.rule,
            "severity": alert.severity}


def group_labels_of(alert: Alert, group_by: list[str]) -> dict[str, str]:
    """The values of ``group_by`` (``[...]``: every label); absent labels are left out."""
    labels = alert_labels(alert)
    if group_by == ["..."]:
        return dict(sorted(labels.items()))
    return {k: labels[k] for k in group_by if k in labels}


def label_string(labels: dict[str, str]) -> str:
    """``{a="x",b="y"}``: Alertmanager's rendering, sorted, used in group keys."""
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return "{" + inner + "}"


@dataclass
class Notification:
    """One message to one receiver about one group."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    repeat: bool = False
    external_url: str = ""
    created: float = 0.0
    """Wall time the notification was built (for latency figures)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        firing = sum(a.state == "firing" for a in self.alerts)
        return {"firing": firing, "resolved": len(self.alerts) - firing}

    @property
    def status(self) -> str:
        return "firing" if self.counts["firing"] else "resolved"

    @property
    def fingerprint(self) -> str:
        """Stable id of the group at this receiver (same for every message of the group)."""
        return hashlib.sha256(self.group_key.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        """Id of this message's content: a receiver can drop a repeated delivery by it."""
        keys = sorted(f"{a.fingerprint}:{a.episode}:{a.state}" for a in self.alerts)
        text = "|".join([self.group_key, str(self.repeat), *keys])
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def _generator_url(alert: Alert, external_url: str) -> str:
    return alert.annotations.get("dashboard_url") or external_url


def webhook_alert(alert: Alert, external_url: str = "") -> dict[str, Any]:
    """One entry of ``alerts``: Alertmanager's fields plus ``shoppulse`` details."""
    return {
        "status": "firing" if alert.state == "firing" else "resolved",
        "labels": alert_labels(alert),
        "annotations": {k: str(v) for k, v in alert.annotations.items()},
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at) if alert.state == "resolved" and alert.ends_at
        is not None else ZERO_TIME,
        "generatorURL": _generator_url(alert, external_url),
        "fingerprint": alert.fingerprint,
        "shoppulse": {
            "episode": alert.episode, "at": alert.at, "value": _num(alert.value),
            "peak": _num(alert.peak), "expected": _num(alert.expected),
            "lower": _num(alert.lower), "upper": _num(alert.upper),
            "score": _num(alert.score), "numerator": _num(alert.numerator),
            "denominator": _num(alert.denominator), "contributors": alert.contributors,
        },
    }


def webhook_payload(n: Notification) -> dict[str, Any]:
    """Alertmanager webhook JSON (version 4) plus ``fingerprint``, ``counts``, ``repeat``."""
    alerts = [webhook_alert(a, n.external_url) for a in n.alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": n.external_url,
        "alerts": alerts,
        "fingerprint": n.fingerprint,
        "notificationId": n.id,
        "counts": n.counts,
        "repeat": n.repeat,
    }


def webhook_body(n: Notification) -> bytes:
    return orjson.dumps(webhook_payload(n))


def alertmanager_alerts(n: Notification, now: float) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts`` body. A resolve is an ``endsAt`` in the past (clamped to
    ``now``, as event time may run ahead of the wall clock); a firing alert has no
    ``endsAt``, so Alertmanager keeps it for its ``resolve_timeout`` unless re-posted."""
    out = []
    for a in n.alerts:
        item: dict[str, Any] = {
            "labels": alert_labels(a),
            "annotations": {k: str(v) for k, v in a.annotations.items()},
        }
        url = _generator_url(a, n.external_url)
        if url:  # Alertmanager validates it as a URI: no empty string
            item["generatorURL"] = url
        if a.state == "resolved":
            end = min(a.ends_at if a.ends_at is not None else now, now)
            item["startsAt"] = rfc3339(min(a.starts_at, end))
            item["endsAt"] = rfc3339(end)
        else:
            item["startsAt"] = rfc3339(min(a.starts_at, now))
        out.append(item)
    return out
