"""``shoppulse replay FILE --dry-run``: a recorded day through detectors, rules and playbooks.

The backtest an operator runs before switching a new rule or playbook on: the same code
as the worker (offline pipeline, detector stage, alert engine, playbook engine), in one
process, on event time, with the playbooks in dry-run mode and no notifier at all, so it
makes no outbound call. Approvals are assumed granted (the report says so), so the report
shows everything that would have been done.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from shoppulse.agents.detection import DetectorStage
from shoppulse.agents.offline import run_offline
from shoppulse.alerting.engine import AlertEngine
from shoppulse.alerting.playbooks.actions import ActionError, Executors
from shoppulse.alerting.playbooks.engine import Call, Engine
from shoppulse.alerting.playbooks.runner import Runner
from shoppulse.alerting.playbooks.spec import load_library
from shoppulse.streams.config import Config
from shoppulse.streams.records import Alert, PlaybookStep

DAY = 86_400.0


class NoCalls(Executors):
    """Executors that refuse: a dry run that reached one would be a bug, not a side effect."""

    async def run(self, call: Call) -> dict[str, Any]:
        self.calls.append(call.key)
        raise ActionError(f"dry run: refusing to perform {call.key}")


def backtest(config: Config, events: Iterable[Any], *, folder: str | None = None
             ) -> dict[str, Any]:
    """Alerts per day, runs per playbook, and what each run would have done."""
    return asyncio.run(_backtest(config, events, folder))


async def _backtest(config: Config, events: Iterable[Any], folder: str | None
                    ) -> dict[str, Any]:
    detection = DetectorStage(config, {}, CollectorRegistry())
    alerts = AlertEngine(config, {}, partitions=1)
    engine = Engine(load_library(folder or config.playbooks.folder), dry_run=True)
    steps: list[PlaybookStep] = []
    fired: list[Alert] = []

    async def emit(step: PlaybookStep) -> None:
        steps.append(step)

    executors = NoCalls()
    runner = Runner(engine, executors, emit)

    async def handle(result: tuple[list[PlaybookStep], list[Call]]) -> None:
        await runner.handle(*result)
        for step in [s for s in result[0] if s.status == "awaiting_approval"]:
            await runner.handle(*engine.approve(step.run_id, "backtest (assumed)", step.at))
        await runner.idle()

    for point in run_offline(config, events):
        transitions = alerts.on_point(point)
        verdict = detection.score(point)
        if verdict is not None:
            transitions += alerts.on_verdict(verdict)
        for alert in transitions:
            if alert.state == "firing":
                fired.append(alert)
            runner.event_now = max(runner.event_now, alert.at)
            await handle(engine.on_alert(alert, now=alert.at))
        if verdict is not None:
            runner.event_now = max(runner.event_now, verdict.window_end)
            await handle(engine.on_verdict(verdict, now=verdict.window_end))
    return report(fired, steps, len(executors.calls))


def report(fired: list[Alert], steps: list[PlaybookStep], attempted: int) -> dict[str, Any]:
    per_day: Counter[str] = Counter()
    for a in fired:
        per_day[_day(a.at)] += 1
    runs: dict[str, dict[str, Any]] = {}
    would: dict[str, list[str]] = defaultdict(list)
    for s in steps:
        run = runs.setdefault(s.run_id, {"playbook": s.playbook, "outcome": None})
        if s.status in ("recovered", "escalated", "rejected", "failed"):
            run["outcome"] = run["outcome"] or s.status
        if s.status == "dry_run":
            would[s.run_id].append(f"{s.step}: would have {s.result.get('would_have', '')}")
    per_playbook = Counter(r["playbook"] for r in runs.values())
    return {
        "alerts": len(fired),
        "alerts_per_day": dict(sorted(per_day.items())),
        "alerts_by_rule": dict(Counter(a.rule for a in fired).most_common()),
        "runs_per_playbook": dict(per_playbook.most_common()),
        "runs": [{"run_id": k, **v, "would_have": would.get(k, [])} for k, v in runs.items()],
        "outbound_calls": attempted,
    }


def _day(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


def report_lines(result: dict[str, Any]) -> list[str]:
    out = [f"{result['alerts']} alerts fired; per day: "
           + ", ".join(f"{d} {n}" for d, n in result["alerts_per_day"].items())]
    out += [f"  {rule}: {n}" for rule, n in result["alerts_by_rule"].items()]
    out.append("runs per playbook: " + ", ".join(
        f"{b} {n}" for b, n in result["runs_per_playbook"].items()))
    for r in result["runs"]:
        out.append(f"  {r['run_id']} ({r['outcome'] or 'open'})")
        out += [f"    {line}" for line in r["would_have"]]
    out.append(f"outbound calls attempted: {result['outbound_calls']} (dry run: no notifier; "
               "actions only described)")
    return out
