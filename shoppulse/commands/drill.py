"""``shoppulse drill``: inject a scenario into a running stack and check the plan handles it.

A drill starts an embedded broker and a worker in *drill mode* (alerts carry
``drill="true"`` and go only to the drill receiver; playbook actions are dry runs that
record "would have …" unless ``--live-actions``), pre-warms the detectors on simulated
history, then injects the scenarios through the simulator (in this process) in accelerated
event time, in waves of scenarios that move different series, holding event time at each
wave's end while its runs decide and act (wall time). It reads the worker's own records, the
alerts on ``<app>.alerts`` and the playbook steps on ``<app>.playbook-runs``, approves
runs that wait for a human (as the on-call would, through the bearer-token endpoint), and
reports per scenario: detected or not, the alert, the playbook, and how long each stage
took. Exit code 1 when a drill fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH
from shoppulse.streams.feed import Feed
from shoppulse.streams.records import Alert, PlaybookStep

DRILL_START = 1_767_290_400.0  # 2026-01-01 18:00 UTC: the evening, when the shop is busy

#: How each scenario is injected: the incident spec's tail (magnitude and the dimension it
#: hits, chosen so that the plan's rules trip by construction at drill volume), how long it
#: lasts in event time (the slowest rule's ``for`` plus a few windows) and its *wave*:
#: scenarios of one wave run at the same time because they move different series.
PLAN: dict[str, tuple[str, float, int]] = {
    # wave 0: payments, search's landing page, electronics' prices, iOS
    "payment_outage": (":0.6", 420.0, 0),                      # PaymentSuccessLow, for 2m
    "landing_bounce_spike": (":0.5/channel=search", 540.0, 0),  # LandingBounceHigh, for 5m
    "price_error": (":0.95/category=electronics", 540.0, 0),   # HeadlineAnomaly on AOV
    "platform_policy_change": (":1.0/platform=ios", 540.0, 0),  # ImpressionsAnomaly
    # wave 1: bots bounce too: after the landing spike, so LandingBounceHigh's flap damping
    # (a new episode within 1h of a resolve needs 15m of trouble) does not hide the landing
    "bot_traffic": (":3/channel=ads", 420.0, 1),               # CtrSuspiciouslyHigh, for 3m
    "pipeline_stall": (":1.0/topic=orders", 480.0, 1),         # OrdersSilent, 5m silent
    # wave 2: the checkout, search's traffic, an order flood, one category's stock, a carrier
    "checkout_conversion_drop": (":1.0", 780.0, 2),            # ConversionLow, for 10m
    "channel_traffic_drop": (":0.9/channel=search", 540.0, 2),  # SessionsAnomaly
    "order_spike": (":4", 420.0, 2),                           # HeadlineAnomaly on orders
    # ~7 fastship shipments a window, not always the rule's 5: 12 min for 5 windows in a row
    "logistics_delay": (":1.0/carrier=fastship", 720.0, 2),    # DeliveryDelaysHigh, for 5m
    # fashion's basket rate: the flood's orders have no session, search's lost traffic
    # lowers sessions and baskets alike (not with the price error: fashion's missing orders
    # would lift the site-wide order value back)
    "stock_out": (":1.0/category=fashion", 540.0, 2),          # CategoryBasketAnomaly
}
RECOVERY = 480.0
"""Event time after a wave's longest incident, before the next wave: the drill holds event
time at the incident's end until the wave's runs reach evaluate (approvals and actions take
wall time), so evaluate sees these windows; 3 of them inside the band recover a run, and
the alerts resolve (keep_firing_for <= 5m)."""
HOLD_IDLE, HOLD_MAX = 20.0, 120.0
"""Wall seconds the feed holds event time once every stage judged the wave: without a run
to wait for (an incident not detected), or at most (an approval or action hanging)."""
TAIL = 0.0
"""Quiet traffic after the last wave's recovery. The drill stops as soon as every run is
closed."""


@dataclass
class Drill:
    """One scenario of the drill and what happened to it."""

    scenario: str
    start: float
    end: float
    spec: str = ""
    alert: Alert | None = None
    alert_wall: float | None = None
    """Wall time the alert record was written (its Kafka timestamp)."""
    run_id: str | None = None
    playbook: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    first_action_wall: float | None = None
    approved_wall: float | None = None
    run_started_wall: float | None = None
    recovered_at: float | None = None
    outcome: str | None = None
    evaluating: dict[str, Any] | None = None
    """A run still open at the end: how many windows were inside the band, the last verdict."""

    def report(self) -> dict[str, Any]:
        detected = self.alert is not None
        ttd = (self.alert.at - self.start) if self.alert is not None else None
        tta = (self.approved_wall - self.run_started_wall
               if self.approved_wall is not None and self.run_started_wall is not None else None)
        ttr = (self.recovered_at - self.alert.at
               if self.recovered_at is not None and self.alert is not None else None)
        first = (self.first_action_wall - self.alert_wall
                 if self.first_action_wall is not None and self.alert_wall is not None
                 else None)
        return {
            "detected": detected,
            "incident": self.spec,
            "alert": None if self.alert is None else {
                "rule": self.alert.rule, "labels": self.alert.labels,
                "value": self.alert.value, "expected": self.alert.expected},
            "playbook": self.playbook,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "ttd_s": ttd, "tta_s": tta, "ttr_s": ttr, "first_action_s": first,
            "stages": self.stages,
            "actions": self.actions,
            "evaluating": self.evaluating,
            "passed": bool(detected and self.playbook == self.scenario
                           and self.outcome == "recovered"
                           and set(self.stages) >= {"identify", "decide", "act", "evaluate"}),
        }


def _affected(spec: str) -> dict[str, str]:
    """``{dim: value}`` of an incident spec's ``/dim=value,...`` tail."""
    _, _, tail = spec.partition("/")
    return dict(kv.split("=", 1) for kv in tail.split(",") if "=" in kv)


def schedule(scenarios: list[str], *, warm: float, recovery: float = RECOVERY,
             sequential: bool = False) -> list[Drill]:
    """After ``warm``, the waves one after the other, each ``recovery`` after its longest
    incident; ``sequential``: every scenario a wave of its own."""
    waves: dict[int, list[str]] = {}
    for i, name in enumerate(scenarios):
        waves.setdefault(i if sequential else PLAN[name][2], []).append(name)
    out = []
    at = DRILL_START + warm
    for wave in sorted(waves):
        longest = 0.0
        for name in waves[wave]:
            tail, duration, _ = PLAN[name]
            out.append(Drill(name, at, at + duration,
                             f"{name}@{at - DRILL_START:.0f}s+{duration:.0f}s{tail}"))
            longest = max(longest, duration)
        at += longest + recovery
    return out


class Watcher:
    """Reads the worker's alerts and playbook steps and ties them to the drills: a drill's
    run is the run of its scenario's playbook started during its incident (or recovery),
    its alert the alert that started that run."""

    def __init__(self, drills: list[Drill], app: str, bootstrap: str, web: str, token: str,
                 recovery: float = RECOVERY) -> None:
        self.drills = drills
        self.app = app
        self.bootstrap = bootstrap
        self.web = web
        self.token = token
        self.recovery = recovery
        self.run_of: dict[str, Drill] = {}
        self.alerts: dict[str, list[tuple[Alert, float]]] = {}  # fingerprint -> firings
        self.started: dict[str, int] = {}  # runs started per playbook, the drills' or not
        self.inhibited: dict[str, int] = {}  # alerts recorded on a run that explains them

    def _drill_for(self, playbook: str, t: float, labels: dict[str, str]) -> Drill | None:
        """The drill of this run: its scenario's playbook, started during the incident (or
        its recovery), on an alert that does not name another value of a dimension the
        incident hits (a GMV drop of electronics is not fashion's stock-out)."""
        for d in self.drills:
            if d.scenario == playbook and d.start <= t <= d.end + self.recovery:
                if any(labels.get(k, v) != v for k, v in _affected(d.spec).items()):
                    continue
                return d
        return None

    def on_alert(self, alert: Alert, wall: float) -> None:
        if alert.state != "firing":
            return
        seen = self.alerts.setdefault(alert.fingerprint, [])
        if all(a.episode != alert.episode for a, _ in seen):
            seen.append((alert, wall))

    def firing(self, fingerprint: str, at: float) -> tuple[Alert, float] | None:
        """The firing that started a run (its alert's event time), else the latest before:
        an alert fires again in a later wave, and that episode is the one to time."""
        before = sorted((aw for aw in self.alerts.get(fingerprint, []) if aw[0].at <= at),
                        key=lambda aw: aw[0].at)
        return before[-1] if before else None  # the exact one, if any, sorts last

    def on_step(self, step: PlaybookStep) -> None:
        if step.stage == "identify" and step.status == "started":
            self.started[step.playbook] = self.started.get(step.playbook, 0) + 1
        elif step.status == "inhibited":
            name = str(step.inputs.get("playbook"))
            self.inhibited[name] = self.inhibited.get(name, 0) + 1
        d = self.run_of.get(step.run_id)
        if d is None and step.stage == "identify" and step.status == "started":
            got = self.firing(step.fingerprint, step.event_at)
            d = self._drill_for(step.playbook, step.event_at,
                                got[0].labels if got is not None else {})
            if d is None or d.run_id is not None:
                return
            d.run_id, d.playbook, d.run_started_wall = step.run_id, step.playbook, step.at
            d.stages = {"identify": 0.0}
            if got is not None:
                d.alert, d.alert_wall = got
            self.run_of[step.run_id] = d
            return
        if d is None:
            return
        d.stages.setdefault(step.stage, round(step.at - (d.run_started_wall or step.at), 3))
        if step.stage == "decide" and step.status == "awaiting_approval":
            self.approve(step.run_id)
        elif step.stage == "decide" and step.status == "approved":
            d.approved_wall = step.at
        elif step.stage == "act" and step.status in ("succeeded", "dry_run"):
            if d.first_action_wall is None:
                d.first_action_wall = step.at
            d.actions.append(f"{step.step}: " + str(step.result.get("audit")
                                                   or step.result or "done"))
        elif step.status in ("recovered", "escalated", "rejected", "failed") and not d.outcome:
            d.outcome = step.status
            if step.status == "recovered" and d.alert is not None:
                d.recovered_at = d.alert.at + float(step.result.get("ttr_s", 0))

    def approve(self, run_id: str) -> None:
        """As the on-call would: the bearer-token endpoint of the worker."""
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
                                self.on_alert(Alert.loads(m.value), m.timestamp / 1000.0)
                            else:
                                await asyncio.to_thread(self.on_step,
                                                        PlaybookStep.loads(m.value))
                if all(d.outcome for d in self.drills):
                    return
        finally:
            await consumer.stop()


def progress(port: int) -> tuple[int, float, float]:
    """How far the worker's stages are: windows closed (points of
    ``sessions_started_overall``, a series with a point in every window), and the event
    time the alert stage and the playbook agent have reached."""
    from shoppulse.commands.bench import _scrape

    try:
        text = _scrape(port)
    except OSError:
        return 0, 0.0, 0.0

    def value(pattern: str) -> float:
        got = re.search(rf"^{pattern} (\S+)$", text, re.M)
        return float(got.group(1)) if got else 0.0

    return (int(value(r'shoppulse_metric_points_total\{metric="sessions_started_overall"\}')),
            value(r'shoppulse_alert_clock_seconds\{input="points"\}'),
            value(r"shoppulse_playbook_clock_seconds"))


def runs_of(port: int) -> list[dict[str, Any]]:
    """The worker's runs (``GET /playbooks/runs``); none when it cannot answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/playbooks/runs",
                                    timeout=10) as resp:
            return list(json.loads(resp.read()).get("runs", []))
    except (OSError, ValueError):
        return []


def segment_ends(drills: list[Drill], total: float) -> list[float]:
    """Where the feed holds event time: the end of each wave's longest incident, then the
    end of the drill."""
    waves: dict[float, float] = {}
    for d in drills:
        waves[d.start] = max(waves.get(d.start, 0.0), d.end)
    return [*sorted(waves.values()), DRILL_START + total]


def run_drills(scenarios: list[str], *, rate: float = 16.0, warm: float = 2100.0,
               recovery: float = RECOVERY, timeout: float = 900.0, grace: float = 60.0,
               live_actions: bool = False, config_path: str | None = None,
               sequential: bool = False, workdir: str = ".", say: Any = print
               ) -> dict[str, Any]:
    """The whole drill; returns ``{"drills": {SCENARIO: report}, "wall_s": ...}``."""
    from shoppulse.streams.config import load_config
    from shoppulse.streams.incidents import parse_incident
    from shoppulse.streams.simulator import Simulator
    from shoppulse.streams.topics import ensure_topics

    began = time.monotonic()
    drills = schedule(scenarios, warm=warm, recovery=recovery, sequential=sequential)
    total = max(d.end for d in drills) + recovery + TAIL - DRILL_START
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
    feed: Feed | None = None
    with EmbeddedBroker() as broker:
        log = open(os.path.join(workdir, f"shoppulse-drill-{os.getpid()}.log"),  # noqa: SIM115
                   "ab")
        try:
            procs.append(subprocess.Popen(
                [*cmd, "worker", "--broker", broker.url, "--config", config,
                 "--web-port", str(port), "--loglevel", "info"], env=env, stdout=log,
                stderr=log, cwd=workdir, start_new_session=True, preexec_fn=die_with_parent))
            cfg = ensure_topics(load_config(config, overrides={"broker": broker.url, "app": app}),
                                broker.bootstrap, wait=30.0)
            sim = Simulator(seed=7, rate=rate, start=DRILL_START, incidents=[
                parse_incident(d.spec, origin=DRILL_START) for d in drills])
            ends = segment_ends(drills, total)
            say(f"drill: {len(drills)} scenario(s), {warm / 60:g} min of warm-up history, "
                f"{total / 3600:.1f} h of event time at {rate:g} sessions/s in {len(ends)} "
                f"segments; log {log.name}")
            feed = Feed(cfg, broker.bootstrap, sim, ends)
            feed.start()
            watcher = Watcher(drills, app, broker.bootstrap, f"http://127.0.0.1:{port}", token,
                              recovery)

            expect = int(total // 60) - 2  # the last windows close only when all is idle
            shown = 0.0
            reached = [0, 0.0, 0.0]  # windows closed, alert and playbook clocks
            holds: list[float] = []  # wall seconds the feed held event time, per wave

            async def main() -> None:
                nonlocal shown
                assert feed is not None
                done = asyncio.Event()
                task = asyncio.ensure_future(watcher.watch(done))
                deadline = time.monotonic() + timeout
                last = DRILL_START + expect * 60.0
                caught_up: float | None = None  # wall time the stages reached the hold
                while not task.done() and time.monotonic() < deadline:
                    closed, judged, books = await asyncio.to_thread(progress, port)
                    reached[:] = [max(reached[0], closed), max(reached[1], judged),
                                  max(reached[2], books)]
                    if feed.error is not None:
                        raise SystemExit(f"the drill's simulator failed: {feed.error!r}")
                    seg = feed.segment
                    if 0 < seg < len(ends) and not feed.gates[seg].is_set():
                        # event time held at a wave's end: go on once its runs evaluate, or
                        # once every stage judged the wave and a grace found no run to wait for
                        hold = ends[seg - 1]
                        wave = [d for d in drills if d.end <= hold and d.end > (
                            ends[seg - 2] if seg >= 2 else 0.0)]
                        ready = all("evaluate" in d.stages or d.outcome for d in wave)
                        if caught_up is None and min(judged, books) >= hold - 90.0:
                            caught_up = time.monotonic()
                        waited = 0.0 if caught_up is None else time.monotonic() - caught_up
                        acting = any(d.run_id and "evaluate" not in d.stages for d in wave)
                        if ready or waited > HOLD_MAX or (waited > HOLD_IDLE and not acting):
                            holds.append(round(time.monotonic() - (caught_up or
                                                                   time.monotonic()), 1))
                            caught_up = None
                            feed.release(seg)
                    if time.monotonic() - shown > 20:
                        shown = time.monotonic()
                        say(f"drill: {closed}/{expect} windows closed, alerts at "
                            f"{max(0.0, judged - DRILL_START) / 60:.0f} min, playbooks at "
                            f"{max(0.0, books - DRILL_START) / 60:.0f} min of event time "
                            f"(produced {(feed.produced - DRILL_START) / 60:.0f} min); "
                            f"{sum(bool(d.outcome) for d in drills)}/{len(drills)} runs closed")
                    if (feed.segment == len(ends) and closed >= expect
                            and min(judged, books) >= last):
                        # every window judged by every stage: a last grace for the runs
                        deadline = min(deadline, time.monotonic() + grace)
                    if procs[0].poll() is not None:
                        done.set()
                        raise SystemExit(f"the worker exited {procs[0].returncode}; "
                                         f"see {log.name}")
                    await asyncio.sleep(1)
                done.set()
                await task

            asyncio.run(main())
            open_runs = {d.run_id: d for d in drills if d.run_id and not d.outcome}
            for run in runs_of(port) if open_runs else []:
                if run.get("run_id") in open_runs:
                    open_runs[run["run_id"]].evaluating = {
                        k: run.get(k) for k in ("stage", "windows_inside", "windows_needed",
                                                "last_verdict")}
        finally:
            if feed is not None:
                feed.stop()
            stop_groups(procs)
            log.close()
    return {"drills": {d.scenario: d.report() for d in drills},
            "runs_started": dict(sorted(watcher.started.items())),
            "inhibited": dict(sorted(watcher.inhibited.items())),
            "wall_s": round(time.monotonic() - began, 1), "event_time_s": total,
            "windows_closed": reached[0],
            "alerts_judged_s": max(0.0, reached[1] - DRILL_START),
            "playbooks_at_s": max(0.0, reached[2] - DRILL_START),
            "rate": rate, "log": log.name}


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def report_lines(result: dict[str, Any]) -> list[str]:
    """One line per drill: PASS/FAIL, alert, playbook and the stage times."""
    out = []
    for name, r in result["drills"].items():
        if r["alert"] is None and r["playbook"] is None:
            out.append(f"FAIL {name:<24} not detected: no run of playbook {name} "
                       f"(incident {r['incident']})")
            continue
        alert = r["alert"]["rule"] if r["alert"] else "-"
        out.append(f"{'PASS' if r['passed'] else 'FAIL'} {name:<24} alert {alert:<18} "
                   f"playbook {r['playbook'] or '-':<24} ttd {_secs(r['ttd_s'])} "
                   f"tta {_secs(r['tta_s'])} ttr {_secs(r['ttr_s'])} "
                   f"first action {_secs(r['first_action_s'])} ({r['outcome'] or 'open'})")
    if "wall_s" in result:
        out.append(f"{sum(r['passed'] for r in result['drills'].values())}/"
                   f"{len(result['drills'])} passed in {result['wall_s']:.0f}s wall "
                   f"({result['event_time_s'] / 3600:.1f} h of event time at "
                   f"{result['rate']:g} sessions/s); worker log {result['log']}")
    if result.get("runs_started") is not None:
        out.append(f"{sum(result['runs_started'].values())} runs started "
                   f"({', '.join(f'{k} {v}' for k, v in result['runs_started'].items())}); "
                   f"{sum(result['inhibited'].values())} alerts taken by a run that explains "
                   f"them")
    return out
