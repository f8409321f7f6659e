"""The audit view of alerts: what fired, why, and every transition, folded from records.

Fed with the :class:`Alert` records of ``<app>.alerts`` (all partitions), so any worker
answers for all of them. Others add what they know about a fingerprint through
:attr:`AlertLog.hooks` (the notifiers: what was sent where, with what result); each hook
takes a fingerprint and returns a list of JSON-able dicts under its own name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from shoppulse.streams.records import Alert

_SEVERITY = {"critical": 0, "warning": 1, "info": 2}
_STATE = {"firing": 0, "pending": 1, "resolved": 2}
Hook = Callable[[str], list[dict[str, Any]]]


class AlertLog:
    def __init__(self, keep: int = 100) -> None:
        self.keep = keep  # transitions kept per fingerprint (newest)
        self.latest: dict[str, Alert] = {}
        self.firing: dict[str, Alert] = {}  # the FIRING record of each firing alert
        self.transitions: dict[str, list[Alert]] = {}
        self.hooks: dict[str, Hook] = {}

    def add(self, a: Alert) -> None:
        seen = self.transitions.setdefault(a.fingerprint, [])
        if any(t.key == a.key for t in seen):
            return  # a record read twice
        seen.append(a)
        seen.sort(key=lambda t: (t.episode, _STATE[t.state] != 1, t.at))
        del seen[:-self.keep]
        latest = self.latest.get(a.fingerprint)
        if latest is None or (a.episode, a.at) >= (latest.episode, latest.at):
            self.latest[a.fingerprint] = a
            if a.state == "firing":
                self.firing[a.fingerprint] = a
            elif a.state == "resolved":
                self.firing.pop(a.fingerprint, None)

    def current(self, *, resolved: bool = True) -> list[dict[str, Any]]:
        """One row per fingerprint, the newest transition: firing first, then by severity
        and most recent."""
        rows = [a for a in self.latest.values() if resolved or a.state != "resolved"]
        rows.sort(key=lambda a: (_STATE[a.state], _SEVERITY.get(a.severity, 9), -a.at))
        out = []
        for a in rows:
            row = asdict(a)
            first = self.firing.get(a.fingerprint)
            if first is not None:  # while firing: since when, and the firing record's why
                row["firing_since"] = first.starts_at
            out.append(row)
        return out

    def timeline(self, fp: str) -> dict[str, Any] | None:
        seen = self.transitions.get(fp)
        if not seen:
            return None
        a = self.latest[fp]
        out: dict[str, Any] = {
            "fingerprint": fp, "rule": a.rule, "severity": a.severity, "labels": a.labels,
            "state": a.state, "transitions": [asdict(t) for t in seen]}
        for name, hook in self.hooks.items():
            out[name] = hook(fp)
        return out
