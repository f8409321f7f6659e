"""The playbook agent: alerts and verdicts in, runs and their audit records out.

Thin glue over :mod:`shoppulse.alerting.playbooks`. Alerts (keyed by fingerprint) and
verdicts (keyed by series) arrive on different partitions, while a run needs both, so
two small forwarders put them, tagged, on one single-partition topic,
``<app>.playbook-input``; one agent owns every run, in order. The outcomes of side
effects, the approval answers and a clock tick come back through the same topic: Faust
tables take writes only while an agent iterates its stream, and the runs' state (runs,
open runs, claims) lives in tables so it survives SIGKILL and rebalance. Every step is
a :class:`~shoppulse.streams.records.PlaybookStep` on ``<app>.playbook-runs``.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shoppulse.agents.contiguous import Contiguous
from shoppulse.agents.tables import written
from shoppulse.alerting.playbooks.actions import Executors
from shoppulse.alerting.playbooks.engine import Engine
from shoppulse.alerting.playbooks.runner import Runner
from shoppulse.alerting.playbooks.spec import load_library
from shoppulse.streams.config import Config
from shoppulse.streams.records import Alert, PlaybookStep, Verdict, series_key

log = logging.getLogger(__name__)

ALERT, VERDICT, DONE, TICK, ANSWER = b"A", b"V", b"D", b"T", b"P"
_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)


class JsonTable(MutableMapping[str, Any]):
    """A bytes-valued Faust table seen as a mapping of plain JSON values; ``writes[0]``
    counts the writes of every table sharing that list (did a record change state?)."""

    def __init__(self, table: Any, writes: list[int] | None = None) -> None:
        self.table = table
        self.writes = writes if writes is not None else [0]

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self.table[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = orjson.dumps(value)
        self.writes[0] += 1

    def __delitem__(self, key: str) -> None:
        del self.table[key]
        self.writes[0] += 1

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


class PlaybookMetrics:
    """Runs by stage, and the three durations the operations plan reviews."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.active = Gauge("shoppulse_playbook_runs_active", "Open playbook runs by stage",
                            ["playbook", "stage"], registry=r)
        self.shown: set[tuple[str, str]] = set()
        self.outcomes = Counter("shoppulse_playbook_runs", "Closed playbook runs by outcome",
                                ["playbook", "outcome"], registry=r)
        self.ttd = Histogram("shoppulse_playbook_time_to_detect_seconds",
                             "Event time from the condition's start to the alert firing",
                             ["playbook"], buckets=_BUCKETS, registry=r)
        self.tta = Histogram("shoppulse_playbook_time_to_acknowledge_seconds",
                             "Wall time from the run's start to its decision",
                             ["playbook"], buckets=_BUCKETS, registry=r)
        self.ttr = Histogram("shoppulse_playbook_time_to_recover_seconds",
                             "Event time from the alert firing to recovery",
                             ["playbook"], buckets=_BUCKETS, registry=r)

    def observe(self, step: PlaybookStep, engine: Engine) -> None:
        run = engine.get(step.run_id)
        if run is None:
            return
        if step.stage == "identify" and step.status == "started":
            starts = run.alert.get("starts_at") or run.detected_at
            self.ttd.labels(run.playbook).observe(max(0.0, run.detected_at - starts))
        elif step.stage == "decide" and step.status == "approved":
            self.tta.labels(run.playbook).observe(float(step.result.get("tta_s", 0.0)))
        elif step.status == "recovered":
            self.ttr.labels(run.playbook).observe(float(step.result.get("ttr_s", 0.0)))
        if step.status in ("recovered", "escalated", "rejected") or (
                step.status == "failed" and step.stage == "act"):
            self.outcomes.labels(run.playbook, run.outcome or step.status).inc()

    def refresh(self, engine: Engine) -> None:
        counts: dict[tuple[str, str], int] = {}
        for run in engine.active():
            counts[(run.playbook, run.stage)] = counts.get((run.playbook, run.stage), 0) + 1
        for key in self.shown - set(counts):
            self.active.labels(*key).set(0)
        for key, n in counts.items():
            self.active.labels(*key).set(n)
        self.shown |= set(counts)


def api_token() -> str | None:
    """The bearer token of mutating endpoints; unset means they refuse every request."""
    return os.environ.get("SHOPPULSE_API_TOKEN") or None


def authorized(request: Request, token: str | None) -> bool:
    """Bearer token, compared in constant time."""
    if not token:
        return False
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


def wire_playbooks(app: faust.App, config: Config, bootstrap: str, registry: CollectorRegistry,
                   refetched: Any, alerts_topic: Any, anomalies_topic: Any) -> Runner:
    """Tables, topics, forwarders, the playbook agent, its timer and its web views."""
    settings = config.playbooks
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    inbox = app.topic(config.topic_name("playbook-input"), partitions=1, **raw)
    audit = app.topic(config.topic_name("playbook-runs"), partitions=1, **raw)
    runs_t = app.Table("playbook_runs", partitions=1, key_type=str, value_type=bytes)
    open_t = app.Table("playbook_open", partitions=1, key_type=str, value_type=bytes)
    claims_t = app.Table("playbook_claims", partitions=1, key_type=str, value_type=bytes)
    books = load_library(settings.folder)
    writes = [0]  # state writes of the engine and the runner, not the offset notes
    engine = Engine(books, JsonTable(runs_t, writes), JsonTable(open_t, writes),
                    dry_run=settings.dry_run)
    metrics = PlaybookMetrics(registry)
    inbox_in = Contiguous(bootstrap, claims_t, refetched, loop=app.loop)
    app._extra_services.append(inbox_in)

    async def emit(step: PlaybookStep) -> None:
        await audit.send(key=step.run_id.encode(), value=step.dumps())
        metrics.observe(step, engine)
        log.info("playbook %s %s %s %s%s", step.run_id, step.stage, step.step, step.status,
                 f": {step.error}" if step.error else "")

    async def report(key: str, ok: bool, result: dict[str, Any], error: str) -> None:
        body = orjson.dumps({"key": key, "ok": ok, "result": result, "error": error})
        await inbox.send(key=b"done", value=DONE + body)

    async def send_kafka(topic: str, key: bytes, value: bytes) -> None:
        name = topic if "." in topic else config.topic_name(topic)
        await (await app.topic(name, **raw).send(key=key, value=value))

    secrets = [s for s in os.environ.get(settings.secrets_env, "").split(",") if s]
    executors = Executors(send_kafka=send_kafka, secrets=secrets,
                          shell_allow=settings.shell_allow)
    runner = Runner(engine, executors, emit, claims=JsonTable(claims_t, writes),
                    persist=lambda: written(runs_t, open_t, claims_t), report=report)
    resumed = False
    alert_clock = [0.0]  # newest alert event time applied (the gauge; not evaluate's clock)
    Gauge("shoppulse_playbook_clock_seconds", "Newest event time the playbook agent has seen "
          "(alerts and verdicts): how far behind the pipeline it runs",
          registry=registry).set_function(
              lambda: max(runner.event_now, skipped_clock[0], alert_clock[0]))

    @app.agent(alerts_topic, name="playbook-alerts")
    async def forward_alerts(stream: faust.StreamT) -> None:
        async for value in stream:
            await inbox.send(key=b"alert", value=ALERT + value)

    skipped_clock = [0.0]  # newest window of a verdict no open run needed

    def watched() -> set[str] | None:
        """Series of the open runs, when this worker owns them (None: forward everything,
        the runs live on another worker). Evaluate counts only windows after a run's
        actions, so a verdict of a series without an open run is never needed."""
        owned = any(tp.topic == inbox.get_topic_name()
                    for tp in app.assignor.assigned_actives())
        if not owned:
            return None
        out: set[str] = set()
        for run in engine.active():
            out |= run.watched
        return out

    @app.agent(anomalies_topic, name="playbook-verdicts")
    async def forward_verdicts(stream: faust.StreamT) -> None:
        async for value in stream:
            series = watched()
            if series is not None:
                v = orjson.loads(value)
                if series_key(v.get("metric", ""), v.get("labels") or {}) not in series:
                    skipped_clock[0] = max(skipped_clock[0], float(v.get("window_end", 0.0)))
                    continue  # most verdicts: one table read, no message, no changelog
            await inbox.send(key=b"verdict", value=VERDICT + value)

    @app.agent(inbox, name="playbooks")
    async def playbooks(stream: faust.StreamT) -> None:
        nonlocal resumed
        async for event in stream.events():
            async for rec in inbox_in.records(event):
                if not resumed:  # the first message after (re)start: runs cut mid-act go on
                    resumed = True
                    await runner.resume()
                before = writes[0]
                await apply(rec.value)
                if writes[0] != before:  # a record that moved no run (most verdicts) needs
                    await written(runs_t, open_t, claims_t)  # no wait: replaying it is harmless
            metrics.refresh(engine)

    async def apply(value: bytes) -> None:
        tag, body = value[:1], value[1:]
        now = time.time()
        # Evaluate's clock is the verdicts' (forwarded or skipped), never the alerts': the
        # threshold and absence rules judge points and may run far ahead of the detectors
        # (at a replay or a drill, by an hour of event time). A run whose actions ended at
        # the alerts' clock would wait for verdicts of windows that never come.
        runner.event_now = max(runner.event_now, skipped_clock[0])
        try:
            if tag == ALERT:
                alert = Alert.loads(body)
                alert_clock[0] = max(alert_clock[0], alert.at)
                await runner.handle(*engine.on_alert(alert, now))
            elif tag == VERDICT:
                verdict = Verdict.loads(body)
                runner.event_now = max(runner.event_now, verdict.window_end)
                await runner.handle(*engine.on_verdict(verdict, now))
            elif tag == DONE:
                d = orjson.loads(body)
                await runner.complete(d["key"], d["ok"], d["result"], d["error"])
            elif tag == TICK:
                await runner.handle(*engine.tick(now))
            elif tag == ANSWER:
                d = orjson.loads(body)
                await runner.handle(*engine.approve(d["run_id"], d["who"], now,
                                                    approve=d["approve"]))
        except Exception:  # one bad record must not stop every run
            log.exception("playbook agent: cannot apply %r", value[:200])

    @app.timer(1.0)
    async def tick() -> None:
        if len(open_t):
            await inbox.send(key=b"tick", value=TICK)

    class Answer(View):
        async def post(self, request: Request, run_id: str, verb: str) -> Response:
            if not authorized(request, api_token()):
                return self.json({"error": "a valid bearer token is required "
                                  "(SHOPPULSE_API_TOKEN)"}, status=401)
            if verb not in ("approve", "reject"):
                return self.json({"error": f"unknown verb {verb!r}"}, status=404)
            run = engine.get(run_id)
            if run is None:
                return self.json({"error": f"no run {run_id}"}, status=404)
            if run.stage != "decide" or run.approval_deadline is None or not run.open:
                return self.json({"error": f"run {run_id} is not awaiting approval",
                                  "stage": run.stage, "outcome": run.outcome}, status=409)
            who = request.headers.get("X-Shoppulse-User", "api")[:64]
            body = orjson.dumps({"run_id": run_id, "who": who, "approve": verb == "approve"})
            await inbox.send(key=b"answer", value=ANSWER + body)
            return self.json({"run_id": run_id, "accepted": verb}, status=202)

    class Runs(View):
        async def get(self, request: Request) -> Response:
            out = []
            for key in list(runs_t.keys()):
                run = engine.get(key)
                if run is not None:
                    out.append({"run_id": run.run_id, "playbook": run.playbook,
                                "stage": run.stage, "outcome": run.outcome,
                                "fingerprint": run.fingerprint, "series": run.series,
                                "detected_at": run.detected_at, "completed": run.completed,
                                "awaiting_approval": run.approval_deadline is not None,
                                "acknowledged_by": run.acknowledged_by,
                                "windows_inside": run.inside,
                                "members": [{"rule": m["rule"], "series": m["series"],
                                             "windows_inside": m["inside"]}
                                            for m in run.members.values()],
                                "windows_needed": engine.playbooks[run.playbook].evaluate.windows
                                if run.playbook in engine.playbooks else None,
                                "last_verdict": run.context.get("last_verdict"),
                                "recovered_at": run.recovered_at,
                                "started_at": run.started_at})
            return self.json({"runs": out})

    app.page("/playbooks/runs/{run_id}/{verb}")(Answer)
    app.page("/playbooks/runs")(Runs)
    return runner
