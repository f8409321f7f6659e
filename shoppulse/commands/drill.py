"""``shoppulse drill``: inject a scenario into a running stack and check the plan handles it.

A drill starts an embedded broker and a worker in *drill mode* (alerts carry
``drill="true"`` and go only to the drill receiver; playbook actions are dry runs that
record "would have …" unless ``--live-actions``), pre-warms the detectors on simulated
history, then injects each scenario through the simulator in accelerated event time, one
after the other with time to recover in between. It reads the worker's own records, the
alerts on ``<app>.alerts`` and the playbook steps on ``<app>.playbook-runs``, approves
runs that wait for a human (as the on-call would, through the bearer-token endpoint), and
reports per scenario: detected or not, the alert, the playbook, and how long each stage
took. Exit code 1 when a drill fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH
from shoppulse.streams.records import Alert, PlaybookStep

DRILL_START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the drill's event-time origin


@dataclass
class Drill:
    """One scenario of the drill and what happened to it."""

    scenario: str
    start: float
    end: float
    alert: Alert | None = None
    run_id: str | None = None
    playbook: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    alert_seen_wall: float | None = None
    first_action_wall: float | None = None
    approved_wall: float | None = None
    run_started_wall: float | None = None
    recovered_at: float | None = None
    outcome: str | None = None

    def report(self) -> dict[str, Any]:
        detected = self.alert is not None
        ttd = (self.alert.at - self.start) if self.alert is not None else None
        tta = (self.approved_wall - self.run_started_wall
               if self.approved_wall is not None and self.run_started_wall is not None else None)
        ttr = (self.recovered_at - self.alert.at
               if self.recovered_at is not None and self.alert is not None else None)
        first = (self.first_action_wall - self.alert_seen_wall
                 if self.first_action_wall is not None and self.alert_seen_wall is not None
                 else None)
        return {
            "detected": detected,
            "alert": None if self.alert is None else {
                "rule": self.alert.rule, "labels": self.alert.labels,
                "value": self.alert.value, "expected": self.alert.expected},
            "playbook": self.playbook,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "ttd_s": ttd, "tta_s": tta, "ttr_s": ttr, "first_action_s": first,
            "stages": self.stages,
            "passed": bool(detected and self.playbook == self.scenario
                           and self.outcome == "recovered"),
        }


def schedule(scenarios: list[str], *, warm: float, slot: float, duration: float
             ) -> list[Drill]:
    """Scenario i runs ``duration`` from ``warm + i * slot + slot / 5`` of event time."""
    out = []
    for i, name in enumerate(scenarios):
        start = DRILL_START + warm + i * slot + slot / 5
        out.append(Drill(name, start, start + duration))
    return out


class Watcher:
    """Reads the worker's alerts and playbook steps and ties them to the drills."""

    def __init__(self, drills: list[Drill], app: str, bootstrap: str, web: str, token: str
                 ) -> None:
        self.drills = drills
        self.app = app
        self.bootstrap = bootstrap
        self.web = web
        self.token = token
        self.run_of: dict[str, Drill] = {}

    def _drill_at(self, t: float) -> Drill | None:
        for d in self.drills:  # an alert belongs to the incident active (or just ended) then
            if d.start <= t <= d.end + 600:
                return d
        return None

    def on_alert(self, alert: Alert) -> None:
        if alert.state != "firing":
            return
        d = self._drill_at(alert.at)
        if d is not None and d.alert is None:
            d.alert, d.alert_seen_wall = alert, time.time()

    def on_step(self, step: PlaybookStep) -> None:
        d = self.run_of.get(step.run_id)
        now = time.time()
        if d is None and step.stage == "identify" and step.status == "started":
            d = self._drill_at(step.event_at)
            if d is None:
                return
            book = step.playbook
            if d.run_id is None or (d.playbook != d.scenario and book == d.scenario):
                d.run_id, d.playbook, d.run_started_wall = step.run_id, book, now
                d.stages = {"identify": 0.0}
            self.run_of[step.run_id] = d
            return
        if d is None or d.run_id != step.run_id:
            return
        since = now - (d.run_started_wall or now)
        d.stages.setdefault(step.stage, round(since, 3))
        if step.stage == "decide" and step.status == "awaiting_approval":
            self.approve(step.run_id)
        elif step.stage == "decide" and step.status == "approved":
            d.approved_wall = now
        elif step.stage == "act" and d.first_action_wall is None and step.status in (
                "succeeded", "dry_run"):
            d.first_action_wall = now
        elif step.status in ("recovered", "escalated", "rejected", "failed") and not d.outcome:
            d.outcome = step.status
            if step.status == "recovered":
                d.recovered_at = d.alert.at + float(step.result.get("ttr_s", 0)) \
                    if d.alert is not None else None

    def approve(self, run_id: str) -> None:
        req = urllib.request.Request(f"{self.web}/playbooks/runs/{run_id}/approve",
                                     method="POST", data=b"")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("X-Shoppulse-User", "drill")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=5).close()

    async def watch(self, done: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        topics = [f"{self.app}.alerts", f"{self.app}.playbook-runs"]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None, metadata_max_age_ms=2000)
        await consumer.start()
        try:
            while not done.is_set():
                data = await consumer.getmany(timeout_ms=500)
                for tp, msgs in data.items():
                    for m in msgs:
                        with contextlib.suppress(Exception):  # a record we cannot read
                            if tp.topic.endswith(".alerts"):
                                self.on_alert(Alert.loads(m.value))
                            else:
                                self.on_step(PlaybookStep.loads(m.value))
                if all(d.outcome for d in self.drills):
                    return
        finally:
            await consumer.stop()


def caught_up(port: int) -> bool:
    """The worker has consumed everything produced (its lag gauge reads 0)."""
    from shoppulse.commands.bench import _scrape, _sum

    try:
        text = _scrape(port)
    except OSError:
        return False
    return "shoppulse_consumer_lag_messages" in text and _sum(
        text, "shoppulse_consumer_lag_messages") == 0


def run_drills(scenarios: list[str], *, rate: float = 10.0, warm: float = 3600.0,
               slot: float = 1500.0, duration: float = 600.0, timeout: float = 600.0,
               grace: float = 60.0, live_actions: bool = False,
               config_path: str | None = None,
               say: Any = print) -> dict[str, Any]:
    """The whole drill; returns ``{"drills": {SCENARIO: report}}``."""
    drills = schedule(scenarios, warm=warm, slot=slot, duration=duration)
    total = warm + slot * len(scenarios)
    token = secrets.token_urlsafe(24)
    app = f"drill{os.getpid()}"
    port = free_port()
    env = {**os.environ, "SHOPPULSE_APP": app, "SHOPPULSE_DRILL": "true",
           "SHOPPULSE_API_TOKEN": token,
           "SHOPPULSE_NOTIFIERS__DRILL": '{type: stdout, match: {drill: "true"}}',
           "SHOPPULSE_PLAYBOOKS__DRY_RUN": "false" if live_actions else "true"}
    cmd = [sys.executable, "-m", "shoppulse.commands.cli"]
    config = str(config_path or DEFAULT_PATH)
    procs: list[subprocess.Popen[bytes]] = []
    with EmbeddedBroker() as broker:
        log = open(f"shoppulse-drill-{os.getpid()}.log", "ab")  # noqa: SIM115
        try:
            procs.append(subprocess.Popen(
                [*cmd, "worker", "--broker", broker.url, "--config", config,
                 "--web-port", str(port), "--loglevel", "info"], env=env, stdout=log,
                stderr=log, start_new_session=True, preexec_fn=die_with_parent))
            specs = [f"{d.scenario}@{d.start - DRILL_START:.0f}s+{duration:.0f}s"
                     for d in drills]
            sim = [*cmd, "simulate", "--broker", broker.url, "--config", config,
                   "--rate", str(rate), "--speed", "0", "--seed", "7",
                   "--start", repr(DRILL_START), "--duration", f"{total:.0f}s"]
            for spec in specs:
                sim += ["--incident", spec]
            say(f"drill: {len(drills)} scenario(s), {warm / 60:g} min of warm-up history, "
                f"{total / 3600:.1f} h of event time at {rate:g} sessions/s; log {log.name}")
            procs.append(subprocess.Popen(sim, env=env, stdout=log, stderr=log,
                                          start_new_session=True, preexec_fn=die_with_parent))
            watcher = Watcher(drills, app, broker.bootstrap, f"http://127.0.0.1:{port}", token)

            async def main() -> None:
                done = asyncio.Event()
                task = asyncio.ensure_future(watcher.watch(done))
                deadline = time.monotonic() + timeout
                while not task.done() and time.monotonic() < deadline:
                    if procs[1].poll() is not None and caught_up(port):
                        # every event produced and consumed: a last grace for the stages
                        deadline = min(deadline, time.monotonic() + grace)
                    if procs[0].poll() is not None:
                        done.set()
                        raise SystemExit(f"the worker exited {procs[0].returncode}; "
                                         f"see {log.name}")
                    await asyncio.sleep(1)
                done.set()
                await task

            asyncio.run(main())
        finally:
            stop_groups(procs)
            log.close()
    return {"drills": {d.scenario: d.report() for d in drills}}


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def report_lines(result: dict[str, Any]) -> list[str]:
    """One line per drill: PASS/FAIL, alert, playbook and the stage times."""
    out = []
    for name, r in result["drills"].items():
        alert = r["alert"]["rule"] if r["alert"] else "-"
        out.append(f"{'PASS' if r['passed'] else 'FAIL'} {name:<24} alert {alert:<18} "
                   f"playbook {r['playbook'] or '-':<24} ttd {_secs(r['ttd_s'])} "
                   f"tta {_secs(r['tta_s'])} ttr {_secs(r['ttr_s'])} "
                   f"first action {_secs(r['first_action_s'])} ({r['outcome'] or 'no run'})")
    return out
