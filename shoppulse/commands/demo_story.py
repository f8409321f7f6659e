"""What the demo tells as it happens: alert transitions and the playbook runs they start.

The demo polls the worker's ``/alerts`` and ``/playbooks/runs``; :class:`Story` turns what
changed since the last poll into lines (an alert firing with its value, band and top
contributors; each stage a run reached; its outcome, "recovered after N windows"; the
resolve). Runs waiting for a human are approved as the on-call would, through the
bearer-token endpoint, and the line says which command does the same.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Callable
from typing import Any

STAGES = ("identify", "decide", "act", "evaluate")


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.3f}" if isinstance(v, float) else str(v)


def _series(a: dict[str, Any]) -> str:
    labels = {k: v for k, v in a.get("labels", {}).items() if k not in ("metric", "drill")}
    inner = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return a.get("labels", {}).get("metric", "") + (f"{{{inner}}}" if inner else "")


def contributors(a: dict[str, Any], limit: int = 3) -> str:
    out = []
    for c in (a.get("contributors") or [])[:limit]:
        where = ",".join(f"{k}={v}" for k, v in (c.get("labels") or {}).items())
        share = c.get("share")
        out.append(f"{where} {share * 100:.0f} %" if isinstance(share, int | float) else where)
    return "; ".join(out) or "-"


def clock(t: float | None) -> str:
    """An event time as the demo prints it (UTC, like the alerts table)."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) if t else "-"


def alert_line(a: dict[str, Any], incidents: list[tuple[float, float]] | None = None) -> str:
    """One transition; with the demo's incidents (event-time start, end), where it falls."""
    state = a["state"].upper()
    when = f" at {clock(a.get('at'))}{_relative(a.get('at'), incidents or [])}"
    if a["state"] == "resolved":
        return (f"ALERT RESOLVED {a['rule']} {_series(a)} now {_num(a.get('value'))}, "
                f"worst {_num(a.get('peak'))}{when}")
    band = f"{_num(a.get('lower'))}..{_num(a.get('upper'))}"
    return (f"ALERT {state} {a['rule']} ({a.get('severity', '')}) {_series(a)} value "
            f"{_num(a.get('value'))} expected {_num(a.get('expected'))} band {band} "
            f"top contributors: {contributors(a)}{when}")


def _relative(at: float | None, incidents: list[tuple[float, float]]) -> str:
    """Event time relative to the incident it follows: what a viewer compares."""
    if not at or not incidents:
        return ""
    started = [(s, e) for s, e in incidents if s <= at]
    if not started:
        return f" (event time; normal traffic, {incidents[0][0] - at:.0f} s before the incident)"
    s, e = max(started)
    if at < e:
        return f" (event time; incident +{at - s:.0f} s)"
    return f" (event time; {at - e:.0f} s after the incident's end)"


class Story:
    """Remembers what was told; :meth:`update` returns the new lines."""

    def __init__(self, base: str, token: str | None,
                 approve: Callable[[str], bool] | None = None,
                 incidents: list[tuple[float, float]] | None = None) -> None:
        self.base = base
        self.incidents = sorted(incidents or [])
        self.token = token
        self.approve = approve or self._approve
        self.told: set[tuple[Any, ...]] = set()
        self.stage_of: dict[str, int] = {}
        self.open: set[str] = set()  # fingerprints firing now
        self.fired = 0

    def _once(self, key: tuple[Any, ...]) -> bool:
        if key in self.told:
            return False
        self.told.add(key)
        return True

    def update(self, alerts: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
        lines = []
        for a in sorted(alerts, key=lambda a: a.get("at") or 0):
            if a["state"] in ("pending", "firing", "resolved") and self._once(
                    ("alert", a["fingerprint"], a.get("episode"), a["state"])):
                lines.append(alert_line(a, self.incidents))
                if a["state"] == "firing":
                    self.open.add(a["fingerprint"])
                    self.fired += 1
                elif a["state"] == "resolved":
                    self.open.discard(a["fingerprint"])
        for r in sorted(runs, key=lambda r: r.get("started_at") or 0):
            lines += self._run(r)
        seen = max((a.get("at") or 0 for a in alerts), default=0)
        if (self.fired and not self.open and self.incidents and seen > self.incidents[-1][1]
                and all(r.get("outcome") for r in runs)
                and self._once(("complete", self.fired))):
            lines.append(f"DEMO every alert that fired ({self.fired}) has resolved and every "
                         "playbook run is closed; Ctrl-C stops the demo")
        return lines

    def _run(self, r: dict[str, Any]) -> list[str]:
        rid, book = r["run_id"], r["playbook"]
        head = f"PLAYBOOK {book} run {rid}"
        reached = len(STAGES) if r.get("outcome") else STAGES.index(r["stage"]) + 1 \
            if r["stage"] in STAGES else 0
        lines = []
        for i in range(self.stage_of.get(rid, 0), reached):
            stage = STAGES[i]
            if stage == "identify":
                lines.append(f"{head}: 1/4 identify: {r.get('series', '')}")
            elif stage == "decide":
                if r.get("awaiting_approval"):
                    if self._once(("approve", rid)):
                        ok = self.approve(rid)
                        lines.append(f"{head}: 2/4 decide: awaiting approval; approved as the "
                                     f"on-call (`shoppulse playbook approve {rid}`)"
                                     + ("" if ok else " - the approval was refused"))
                    break  # not decided yet: tell it once it is
                lines.append(f"{head}: 2/4 decide: approved by "
                             f"{r.get('acknowledged_by') or 'auto'}")
            elif stage == "act":
                if r["stage"] == "act" and not r.get("outcome"):
                    break  # tell the actions once they are all done
                lines.append(f"{head}: 3/4 act: {', '.join(r.get('completed') or []) or '-'}")
            else:
                watched = [r.get("series", ""), *(m.get("series") for m in
                                                  r.get("members") or [] if m.get("series"))]
                lines.append(f"{head}: 4/4 evaluate: {', '.join(dict.fromkeys(watched))} back "
                             f"inside {'its band' if len(set(watched)) == 1 else 'their bands'}"
                             f" for {r.get('windows_needed')} windows?")
            self.stage_of[rid] = i + 1
        for m in r.get("members") or []:
            if self._once(("member", rid, m.get("series"), m.get("rule"))):
                lines.append(f"{head}: the same incident: {m.get('rule')} "
                             f"{m.get('series') or ''}, watched until it is back too")
        if r.get("outcome") and self._once(("outcome", rid)):
            if r["outcome"] == "recovered":
                lines.append(f"{head}: recovered after {r.get('windows_inside')} windows")
            else:
                lines.append(f"{head}: {r['outcome']}")
        return lines

    def _approve(self, run_id: str) -> bool:
        req = urllib.request.Request(f"{self.base}/playbooks/runs/{run_id}/approve",
                                     method="POST", data=b"")
        req.add_header("Authorization", f"Bearer {self.token or ''}")
        req.add_header("X-Shoppulse-User", "demo")
        with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status < 300
        return False
