"""Grouping and storm control for one receiver, as plain code on explicit times.

Alertmanager's timers, same meaning: a new group waits ``group_wait`` before its first
notification (so an outage that turns 1 000 series anomalous within it is one message);
transitions that join a group already notified wait for the next ``group_interval`` tick;
a group with nothing new but alerts still firing is notified again after
``repeat_interval``. Each transition (fingerprint, episode, state) goes out in exactly one
successful notification: a notification carries the oldest undelivered transition of each
alert in the group, so a FIRING always precedes its RESOLVED. A failed notification
leaves its transitions pending and the group retries after a backoff, merged with whatever
arrived meanwhile.

The backlog is bounded (``queue_size`` pending transitions): beyond it the oldest pending
FIRING (and the RESOLVED queued behind it) is dropped, never a RESOLVED whose FIRING the
receiver saw (``must``), so no receiver is left with an alert that never ends.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from shoppulse.alerting.notifiers.payload import Notification, group_labels_of, label_string
from shoppulse.streams.records import Alert

RANK = {"firing": 1, "resolved": 2}


def transition_key(alert: Alert) -> tuple[int, int]:
    """Order of an alert's transitions: by episode, FIRING before RESOLVED."""
    return (alert.episode, RANK[alert.state])


@dataclass
class Group:
    key: str
    labels: dict[str, str]
    next_flush: float
    pending: dict[str, list[Alert]] = field(default_factory=dict)
    firing: dict[str, Alert] = field(default_factory=dict)
    """Alerts whose FIRING this receiver got and whose RESOLVED it has not."""
    last_sent: float | None = None
    last_flush: float | None = None
    """When the last successful notification was built: the group_interval ticks from it."""
    in_flight: Notification | None = None
    attempts: int = 0
    """Consecutive failed notifications of this group (drives the backoff)."""


@dataclass
class Added:
    queued: bool
    dropped: list[Alert] = field(default_factory=list)
    """Transitions given up to keep the backlog bounded (maybe the one offered)."""


class Grouper:
    def __init__(self, receiver: str, *, group_by: list[str], group_wait: float,
                 group_interval: float, repeat_interval: float, queue_size: int,
                 external_url: str = "") -> None:
        self.receiver = receiver
        self.group_by = group_by
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.queue_size = queue_size
        self.external_url = external_url
        self.groups: dict[str, Group] = {}
        self.size = 0
        self._firings: OrderedDict[tuple[str, int], str] = OrderedDict()
        """Pending FIRING transitions, oldest first: the candidates to drop on overflow."""
        self._flying: set[tuple[str, int]] = set()
        """(fingerprint, episode) of the transitions in notifications in flight."""

    # -- input ------------------------------------------------------------------------
    def _key(self, alert: Alert) -> tuple[str, dict[str, str]]:
        labels = group_labels_of(alert, self.group_by)
        return f"{self.receiver}:{label_string(labels)}", labels

    def group_of(self, alert: Alert, now: float) -> Group:
        key, labels = self._key(alert)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, labels, next_flush=now + self.group_wait)
        return group

    def holds(self, alert: Alert) -> bool:
        """Is this exact transition pending (or in flight) here?"""
        group = self.groups.get(self._key(alert)[0])
        return group is not None and any(
            transition_key(a) == transition_key(alert)
            for a in group.pending.get(alert.fingerprint, ()))

    def add(self, alert: Alert, now: float, *, must: bool = False) -> Added:
        """Queue a transition. ``must``: a RESOLVED whose FIRING this receiver got; it is
        queued whatever the backlog."""
        dropped: list[Alert] = []
        if not must and self.size >= self.queue_size:
            victim = self._oldest_droppable()
            if victim is None:
                if alert.state == "firing":
                    return Added(False, [alert])
                # else: a RESOLVED behind a FIRING in flight: it goes out after it
            else:
                dropped = self._drop(*victim)
                if victim == (alert.fingerprint, alert.episode):
                    return Added(False, [*dropped, alert])
        group = self.group_of(alert, now)
        idle = not group.pending and group.in_flight is None and not group.attempts
        group.pending.setdefault(alert.fingerprint, []).append(alert)
        group.pending[alert.fingerprint].sort(key=transition_key)
        self.size += 1
        if alert.state == "firing":
            self._firings[(alert.fingerprint, alert.episode)] = group.key
        if idle and group.last_flush is not None:
            # a group with nothing new since its last flush: the news go out at its next
            # tick (its timer ticks every group_interval from the last flush, as in
            # Alertmanager), not at its repeat
            ticks = max(1, math.ceil((now - group.last_flush) / self.group_interval))
            group.next_flush = group.last_flush + ticks * self.group_interval
        return Added(True, dropped)

    def restore_firing(self, alert: Alert, now: float) -> None:
        """After a restart: the receiver got this FIRING and no RESOLVED yet."""
        group = self.group_of(alert, now)
        group.firing[alert.fingerprint] = alert
        if group.last_sent is None:
            group.last_sent = group.last_flush = now
            group.next_flush = now + self.group_interval

    def settle(self, alert: Alert) -> None:
        """A RESOLVED this receiver does not want (``send_resolved: false``): stop repeating."""
        group = self.groups.get(self._key(alert)[0])
        if group is not None:
            group.firing.pop(alert.fingerprint, None)

    def forget(self, fingerprints: set[str]) -> None:
        """Partitions moved to another worker: drop their alerts here (not delivered)."""
        for key in list(self.groups):
            group = self.groups[key]
            for fp in fingerprints & set(group.pending):
                for a in group.pending.pop(fp):
                    self.size -= 1
                    self._firings.pop((fp, a.episode), None)
            for fp in fingerprints & set(group.firing):
                del group.firing[fp]
            if not group.pending and not group.firing and group.in_flight is None:
                del self.groups[key]

    def _oldest_droppable(self) -> tuple[str, int] | None:
        for fe in self._firings:
            if fe not in self._flying:
                return fe
        return None

    def _drop(self, fp: str, episode: int) -> list[Alert]:
        group = self.groups[self._firings.pop((fp, episode))]
        keep, gone = [], []
        for a in group.pending.get(fp, []):
            (gone if a.episode == episode else keep).append(a)
        if keep:
            group.pending[fp] = keep
        else:
            group.pending.pop(fp, None)
        self.size -= len(gone)
        return gone

    # -- output -----------------------------------------------------------------------
    def next_due(self) -> float | None:
        times = [g.next_flush for g in self.groups.values() if g.in_flight is None]
        return min(times) if times else None

    def due(self, now: float) -> list[Notification]:
        """Notifications to send now; each group has at most one in flight."""
        out = []
        for key, group in sorted(self.groups.items(), key=lambda kv: kv[1].next_flush):
            if group.in_flight is not None or group.next_flush > now:
                continue
            if group.pending:
                alerts, repeat = [lst[0] for lst in group.pending.values()], False
            elif group.firing and group.last_sent is not None and \
                    now - group.last_sent >= self.repeat_interval:
                alerts, repeat = list(group.firing.values()), True
            elif group.firing:
                group.next_flush = (group.last_sent or now) + self.repeat_interval
                continue
            else:
                del self.groups[key]
                continue
            n = Notification(self.receiver, group.key, group.labels, alerts, repeat=repeat,
                             external_url=self.external_url, created=now)
            group.in_flight = n
            if not repeat:
                self._flying.update((a.fingerprint, a.episode) for a in alerts)
            out.append(n)
        return out

    def _landed(self, n: Notification) -> Group:
        group = self.groups[n.group_key]
        group.in_flight = None
        if not n.repeat:
            self._flying.difference_update((a.fingerprint, a.episode) for a in n.alerts)
        return group

    def delivered(self, n: Notification, now: float) -> None:
        group = self._landed(n)
        group.attempts = 0
        group.last_sent = now
        group.last_flush = n.created
        group.next_flush = n.created + self.group_interval
        if n.repeat:
            return
        for a in n.alerts:
            lst = group.pending.get(a.fingerprint, [])
            if a not in lst:
                continue  # forgotten meanwhile (partition revoked)
            lst.remove(a)
            if not lst:
                del group.pending[a.fingerprint]
            self.size -= 1
            if a.state == "firing":
                self._firings.pop((a.fingerprint, a.episode), None)
                group.firing[a.fingerprint] = a
            else:
                group.firing.pop(a.fingerprint, None)
        if not group.pending and not group.firing:
            del self.groups[n.group_key]

    def failed(self, n: Notification, now: float, retry_in: float) -> int:
        """The group retries after ``retry_in``; returns its consecutive failures."""
        group = self._landed(n)
        group.attempts += 1
        group.next_flush = now + retry_in
        return group.attempts
