"""The playbook run state machine: plain code driven by alerts, verdicts, approvals and a clock.

Why a pure machine: the same code runs in the worker (state in Faust tables), in drills,
in ``replay --dry-run`` and in tests, and every decision it takes is a record. The engine
never performs a side effect itself; it hands out :class:`Call` s that a runner executes
after claiming them (:mod:`shoppulse.alerting.playbooks.runner`), and it learns each
outcome through :meth:`Engine.finished`.

A run is unique per incident while open: a new firing of the same fingerprint attaches
to it, and so does another alert of the same playbook that names every dimension the run's
alert names with the same value (bots on ads raise CTR, sessions and impressions alerts on
ads: one run, one approval, recovered when each of those series is back).
Stages: ``identify`` -> ``decide`` -> ``act`` -> ``evaluate`` -> closed with an outcome
(``recovered``, ``escalated``, ``rejected``, ``failed``).
Event time (the alert's and the verdicts' windows) drives evaluation; approvals wait in
wall time, because humans answer in wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shoppulse.alerting.playbooks.spec import Action, Playbook
from shoppulse.streams.records import Alert, PlaybookStep, Verdict, series_key

STAGES = ("identify", "decide", "act", "evaluate")
OUTCOMES = ("recovered", "escalated", "rejected", "failed")


@dataclass
class Run:
    """Everything a run needs to resume after a restart (stored as a plain dict)."""

    run_id: str
    playbook: str
    fingerprint: str
    series: str
    labels: dict[str, str]
    alert: dict[str, Any]
    detected_at: float
    """Event time the alert fired."""
    started_at: float
    """Wall time the run was created."""
    episodes: list[int] = field(default_factory=list)
    stage: str = "identify"
    step: int = 0
    outcome: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    approval_deadline: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    acted_at: float | None = None
    """Event time ``act`` finished: the evaluation clock starts here."""
    recovered_at: float | None = None
    inside: int = 0
    last_window: float = 0.0  # JSON has no infinity: event times are positive
    completed: list[str] = field(default_factory=list)
    in_flight: str | None = None
    cleared_at: float | None = None
    """Event time the alert resolved (``None`` while it fires): the recovery of a run that
    reads no verdicts, or of one whose series the detector is still learning."""
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The incident's other alerts (fingerprint -> rule, labels, series, episodes and their
    own recovery count): the run recovers when they are back too, not only its first."""

    @property
    def open(self) -> bool:
        return self.outcome is None

    @property
    def fingerprints(self) -> list[str]:
        return [self.fingerprint, *self.members]

    @property
    def watched(self) -> set[str]:
        """The series whose verdicts the run's evaluation reads."""
        return {self.series, *(m["series"] for m in self.members.values() if m["series"])}

    @property
    def reads_verdicts(self) -> bool:
        """Its alert names a metric series; an absence on a topic has no verdicts, so its
        recovery is the flow coming back (the alert's resolve)."""
        return bool(self.labels.get("metric"))


@dataclass(frozen=True, slots=True)
class Call:
    """A side effect the runner must claim, perform once and report back."""

    run_id: str
    stage: str
    step: str
    action: Action
    inputs: dict[str, Any]
    compensation: bool = False

    @property
    def key(self) -> str:
        """The claim key: (run, stage, step) — one side effect, ever."""
        return f"{self.run_id}:{self.stage}:{self.step}"


def run_id_of(playbook: str, fingerprint: str, episode: int) -> str:
    """Deterministic, so a replay of the alerts topic finds the run it already created."""
    digest = hashlib.sha256(f"{playbook}\x00{fingerprint}\x00{episode}".encode()).hexdigest()
    return f"{playbook}-{digest[:12]}"


class Engine:
    """Runs keyed by id in ``runs``; ``open_runs`` maps ``playbook:fingerprint`` to the open id.

    Both mappings may be Faust tables (values are plain dicts), so the state survives
    SIGKILL and rebalance. Every method returns the audit records it produced and, where
    something must happen, the calls to perform.
    """

    def __init__(
        self,
        playbooks: dict[str, Playbook],
        runs: MutableMapping[str, dict[str, Any]] | None = None,
        open_runs: MutableMapping[str, str] | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.playbooks = playbooks
        self.runs: MutableMapping[str, dict[str, Any]] = {} if runs is None else runs
        self.open_runs: MutableMapping[str, str] = {} if open_runs is None else open_runs
        self.dry_run = dry_run

    # -- state access -----------------------------------------------------------------------
    def get(self, run_id: str) -> Run | None:
        data = self.runs.get(run_id)
        return None if data is None else Run(**data)

    def _save(self, run: Run) -> None:
        self.runs[run.run_id] = asdict(run)
        for fp in run.fingerprints:
            key = f"{run.playbook}:{fp}"
            if run.open:
                self.open_runs[key] = run.run_id
            elif self.open_runs.get(key) == run.run_id:
                del self.open_runs[key]

    def active(self) -> list[Run]:
        """Each open run once (a run with members is under several keys)."""
        out = []
        for run_id in dict.fromkeys(list(self.open_runs.values())):
            run = self.get(run_id)
            if run is not None and run.open:
                out.append(run)
        return out

    def record(self, run: Run, stage: str, status: str, *, now: float, step: str = "",
                who: str = "shoppulse", inputs: dict[str, Any] | None = None,
                result: dict[str, Any] | None = None, error: str = "") -> PlaybookStep:
        return PlaybookStep(
            run_id=run.run_id, playbook=run.playbook, fingerprint=run.fingerprint,
            stage=stage, step=step, status=status, who=who, at=now,
            event_at=run.alert.get("at", 0.0), inputs=inputs or {}, result=result or {},
            error=error, dry_run=self.dry_run,
            drill=run.labels.get("drill") == "true",
        )

    # -- inputs -------------------------------------------------------------------------------
    def on_alert(self, alert: Alert, now: float, *, related: list[Alert] | None = None,
                 recent: list[float | None] | None = None
                 ) -> tuple[list[PlaybookStep], list[Call]]:
        """A FIRING transition starts (or attaches to) a run of every matching playbook; a
        RESOLVED one recovers the runs that have no series to read verdicts of."""
        if alert.state == "resolved":
            return self._cleared(alert, now)
        if alert.state != "firing":
            return [], []
        labels = match_labels(alert)
        linked = alert.annotations.get("playbook")
        steps: list[PlaybookStep] = []
        calls: list[Call] = []
        for book in self.playbooks.values():
            if book.name != linked and not book.matches(labels):
                continue
            if book.inhibited_by and (source := self._explaining(book.inhibited_by, labels)):
                steps += self._inhibit(source, book.name, alert, now)
                continue
            open_id = self.open_runs.get(f"{book.name}:{alert.fingerprint}")
            run = None if open_id is None else self.get(open_id)
            if run is not None and run.open:
                steps += self._refire(run, alert, now)
                continue
            run_id = run_id_of(book.name, alert.fingerprint, alert.episode)
            if run_id in self.runs:
                continue  # a replayed alert: this episode already has its run
            if self._joined(book.name, alert):
                continue  # a replayed alert that a run, since closed, took in
            if (source := self._explaining([book.name], labels, joining=True)) is not None:
                steps.append(self._join(source, alert, now))
                continue
            run = Run(run_id=run_id, playbook=book.name, fingerprint=alert.fingerprint,
                      series=alert_series(alert), labels=dict(alert.labels),
                      alert=alert_summary(alert), detected_at=alert.at, started_at=now,
                      episodes=[alert.episode])
            steps.append(self.record(run, "identify", "started", now=now,
                                      inputs={"alert": run.alert}))
            s, c = self._identify(run, book, now, related or [], recent or [])
            steps += s
            calls += c
        return steps, calls

    def _explaining(self, names: list[str], labels: dict[str, str], *, joining: bool = False
                    ) -> Run | None:
        """An open run of one of ``names`` that explains an alert with these match labels,
        as Alertmanager's inhibition: the run's alert is still firing (not resolved), and
        the new alert names every dimension the run's alert names with the same value
        (``equal``, on the ``where_`` labels: bots on ads explain a site-wide bounce whose top
        contributor is ads; not search's bounce, nor a site-wide drop naming no channel).
        Another playbook's run inhibits the alert; the same playbook's run takes it in
        (``joining``), also the other way round: an alert naming fewer dimensions, at least
        one, each with the run's value (impressions on ads and web first, then sessions on
        ads), so one incident is one run whichever of its alerts comes first."""
        for run in self.active():
            if run.playbook not in names or run.cleared_at is not None:
                continue
            theirs = where_labels(run.labels, run.alert.get("contributors") or [])
            if all(labels.get(k) == v for k, v in theirs.items()):
                return run
            ours = {k: v for k, v in labels.items() if k.startswith("where_")}
            if joining and ours and all(theirs.get(k) == v for k, v in ours.items()):
                return run
        return None

    def _refire(self, run: Run, alert: Alert, now: float) -> list[PlaybookStep]:
        """A new episode of an alert the run already has: firing again, not cleared."""
        member = run.members.get(alert.fingerprint)
        episodes = run.episodes if member is None else member["episodes"]
        if alert.episode in episodes:
            return []  # a replay
        episodes.append(alert.episode)
        if member is None:
            run.cleared_at = None
        else:
            member["cleared_at"] = None
        self._save(run)
        return [self.record(run, run.stage, "attached", now=now, inputs={
            "fingerprint": alert.fingerprint, "episode": alert.episode})]

    def _join(self, run: Run, alert: Alert, now: float) -> PlaybookStep:
        """Another alert of the run's incident becomes a member: watched until it is back."""
        series = alert_series(alert) if alert.labels.get("metric") else ""
        run.members[alert.fingerprint] = {
            "rule": alert.rule, "labels": dict(alert.labels), "series": series,
            "episodes": [alert.episode], "at": alert.at, "value": alert.value,
            "inside": 0, "last_window": 0.0, "cleared_at": None}
        self._save(run)
        return self.record(run, run.stage, "attached", now=now, inputs={
            "fingerprint": alert.fingerprint, "episode": alert.episode, "rule": alert.rule,
            "labels": alert.labels, "series": series, "at": alert.at, "value": alert.value})

    def _joined(self, playbook: str, alert: Alert) -> bool:
        return any(
            alert.episode in data["members"][alert.fingerprint]["episodes"]
            for data in self.runs.values()
            if data["playbook"] == playbook and alert.fingerprint in data.get("members", {}))

    def _inhibit(self, run: Run, playbook: str, alert: Alert, now: float
                 ) -> list[PlaybookStep]:
        """Record the explained alert on the explaining run, once per alert episode."""
        key = f"{playbook}:{alert.fingerprint}:{alert.episode}"
        seen = run.context.setdefault("inhibited", [])
        if key in seen:
            return []
        seen.append(key)
        self._save(run)
        return [self.record(run, run.stage, "inhibited", now=now, inputs={
            "playbook": playbook, "rule": alert.rule, "labels": alert.labels,
            "fingerprint": alert.fingerprint, "episode": alert.episode, "at": alert.at})]

    def _cleared(self, alert: Alert, now: float) -> tuple[list[PlaybookStep], list[Call]]:
        steps: list[PlaybookStep] = []
        at = alert.ends_at or alert.at
        for run in self.active():
            member = run.members.get(alert.fingerprint)
            if member is not None and member["cleared_at"] is None:
                member["cleared_at"] = at
            elif run.fingerprint == alert.fingerprint and not run.cleared_at:
                run.cleared_at = at
            else:
                continue
            if run.stage == "evaluate" and self._back(run):
                steps.append(self._recover_cleared(run, now, at))
            self._save(run)
        return steps, []

    def _back(self, run: Run) -> bool:
        """Every alert of the run is back: its series inside the band for N windows, or,
        with no verdicts to read (an absence; a series still warming up), its alert
        resolved."""
        n = self.playbooks[run.playbook].evaluate.windows
        return _is_back(run.inside, n, run.cleared_at, run.reads_verdicts,
                        run.context.get("warming_up", False)) and all(
            _is_back(m["inside"], n, m["cleared_at"], bool(m["series"]),
                     m.get("warming_up", False)) for m in run.members.values())

    def _recover_cleared(self, run: Run, now: float, at: float | None = None, **why: Any
                         ) -> PlaybookStep:
        """Recovered on an alert's resolve (the last of the run's alerts to be back)."""
        at = max(at or run.cleared_at or run.detected_at, run.acted_at or 0.0)
        run.outcome, run.recovered_at = "recovered", at
        return self.record(run, "evaluate", "recovered", now=now,
                           result={"cleared": True, "ttr_s": at - run.detected_at, **why})

    def on_verdict(self, verdict: Verdict, now: float) -> tuple[list[PlaybookStep], list[Call]]:
        """Evaluation: count consecutive windows of each watched series inside the band."""
        steps: list[PlaybookStep] = []
        calls: list[Call] = []
        key = series_key(verdict.metric, verdict.labels)
        for run in self.active():
            if run.stage != "evaluate" or key not in run.watched or run.acted_at is None:
                continue
            if verdict.window_end <= run.acted_at:
                continue  # a window from before the actions took effect
            counted = False
            if run.series == key and verdict.window_start > run.last_window:
                counted = True
                run.inside, warm = _count(run.inside, run.cleared_at, verdict)
                if warm:
                    run.context["warming_up"] = True
                run.last_window = verdict.window_start
                # what the responder asks of a run that does not recover: where is it?
                run.context["last_verdict"] = {
                    "window_start": verdict.window_start, "value": verdict.value,
                    "lower": verdict.lower, "upper": verdict.upper,
                    "warming_up": verdict.warming_up}
            for m in run.members.values():
                if m["series"] != key or verdict.window_start <= m["last_window"]:
                    continue
                counted = True
                m["last_window"] = verdict.window_start
                m["inside"], warm = _count(m["inside"], m["cleared_at"], verdict)
                if warm:
                    m["warming_up"] = True
            if not counted:
                continue  # judged already (a replayed verdict)
            book = self.playbooks[run.playbook]
            if self._back(run) and run.inside < book.evaluate.windows:
                # back on its alert's resolve: no verdicts of its own, or no band yet
                steps.append(self._recover_cleared(
                    run, now, warming_up=bool(run.context.get("warming_up"))))
            elif self._back(run):
                run.outcome, run.recovered_at = "recovered", verdict.window_end
                steps.append(self.record(
                    run, "evaluate", "recovered", now=now,
                    result={"windows": run.inside, "value": verdict.value,
                            "lower": verdict.lower, "upper": verdict.upper,
                            "series": key, "members": len(run.members),
                            "ttr_s": verdict.window_end - run.detected_at}))
            elif verdict.window_end - run.acted_at >= book.evaluate.timeout:
                s, c = self._escalate(run, book.evaluate.escalate_to, "evaluate", now,
                                      "not back inside its band within "
                                      f"{book.evaluate.timeout:.0f}s of event time")
                steps += s
                calls += c
            self._save(run)
        return steps, calls

    def approve(self, run_id: str, who: str, now: float, *, approve: bool = True
                ) -> tuple[list[PlaybookStep], list[Call]]:
        """A human's answer; only a run awaiting approval accepts one (no race, no replay)."""
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        if run.stage != "decide" or not run.open or run.approval_deadline is None:
            raise ApprovalError(f"run {run_id} is not awaiting approval (stage {run.stage}, "
                                f"outcome {run.outcome})")
        run.acknowledged_at, run.acknowledged_by = now, who
        run.approval_deadline = None
        if not approve:
            run.outcome = "rejected"
            self._save(run)
            return [self.record(run, "decide", "rejected", now=now, who=who)], []
        steps = [self.record(run, "decide", "approved", now=now, who=who,
                              result={"tta_s": now - run.started_at})]
        run.stage, run.step = "act", 0
        s, c = self._next_action(run, now)
        return steps + s, c

    def tick(self, now: float) -> tuple[list[PlaybookStep], list[Call]]:
        """Approvals past their deadline escalate and never act."""
        steps: list[PlaybookStep] = []
        calls: list[Call] = []
        for run in self.active():
            if (run.stage != "decide" or run.approval_deadline is None
                    or now < run.approval_deadline):
                continue
            book = self.playbooks[run.playbook]
            run.approval_deadline = None
            s, c = self._escalate(run, book.decide.escalate_to, "decide", now,
                                  f"no approval within {book.decide.timeout:.0f}s")
            steps += s
            calls += c
        return steps, calls

    def finished(self, call: Call, now: float, event_now: float, *, ok: bool,
                 result: dict[str, Any] | None = None, error: str = "",
                 ) -> tuple[list[PlaybookStep], list[Call]]:
        """The runner reports a call's outcome: go on, compensate, or close."""
        run = self.get(call.run_id)
        if run is None:
            return [], []
        if call.stage == "act" and (not run.open or run.stage != "act"
                                    or run.in_flight != call.step):
            return [], []  # reported already (a replay, or a resume after the state moved on)
        run.in_flight = None
        status = "succeeded" if ok else "failed"
        if self.dry_run and ok:
            status = "dry_run"
        steps = [self.record(run, call.stage, status, now=now, step=call.step,
                              inputs=call.inputs, result=result, error=error)]
        book = self.playbooks[run.playbook]
        if call.compensation:
            self._save(run)
            return steps, []
        if call.stage == "escalate":
            self._save(run)
            return steps, []
        if not ok:
            comp = [a for a in reversed(book.act) if a.name in run.completed and a.compensate]
            run.outcome = "failed"
            calls = [Call(run.run_id, "compensate", a.name, a.compensate, call.inputs, True)
                     for a in comp if a.compensate is not None]
            esc_steps, esc_calls = self._escalate(run, book.evaluate.escalate_to, "act", now,
                                                  f"action {call.step} failed: {error}",
                                                  outcome="failed")
            return steps + esc_steps, calls + esc_calls
        run.completed.append(call.step)
        run.step += 1
        s, c = self._next_action(run, now, event_now)
        return steps + s, c

    # -- stages -------------------------------------------------------------------------------
    def _identify(self, run: Run, book: Playbook, now: float, related: list[Alert],
                  recent: list[float | None]) -> tuple[list[PlaybookStep], list[Call]]:
        ctx: dict[str, Any] = {
            "affected": {k: v for k, v in run.labels.items() if k not in ("metric", "drill")},
            "contributors": run.alert.get("contributors", []),
        }
        if book.identify.related_alerts:
            ctx["related"] = [
                {"rule": a.rule, "labels": a.labels, "value": a.value}
                for a in related if a.fingerprint != run.fingerprint and a.state == "firing"
            ][:20]
        if book.identify.recent_windows:
            ctx["recent"] = list(recent[-book.identify.recent_windows:])
        run.context = ctx
        run.stage = "decide"
        steps = [self.record(run, "identify", "succeeded", now=now, result=ctx)]
        if book.decide.mode == "approval":
            run.approval_deadline = now + book.decide.timeout
            self._save(run)
            steps.append(self.record(run, "decide", "awaiting_approval", now=now,
                                      result={"deadline": run.approval_deadline}))
            return steps, []
        run.acknowledged_at, run.acknowledged_by = now, "auto"
        steps.append(self.record(run, "decide", "approved", now=now, who="auto",
                                  result={"tta_s": 0.0}))
        run.stage, run.step = "act", 0
        s, c = self._next_action(run, now)
        return steps + s, c

    def _next_action(self, run: Run, now: float, event_now: float | None = None
                     ) -> tuple[list[PlaybookStep], list[Call]]:
        book = self.playbooks[run.playbook]
        if run.step < len(book.act):
            action = book.act[run.step]
            run.in_flight = action.name
            self._save(run)
            return [], [Call(run.run_id, "act", action.name, action, self.inputs(run))]
        run.stage = "evaluate"
        # event time never runs behind the alert (a restarted worker may not know it yet)
        run.acted_at = max(event_now or 0.0, run.detected_at)
        steps = [self.record(run, "evaluate", "started", now=now,
                             inputs={"series": run.series, "windows": book.evaluate.windows})]
        if run.cleared_at is not None and not run.reads_verdicts:
            # an absence alert resolved while the actions ran: the flow is back
            steps.append(self._recover_cleared(run, now))
        self._save(run)
        return steps, []

    def pending(self) -> list[Call]:
        """Calls of runs that were mid-``act`` when the process stopped: resume them."""
        out = []
        for run in self.active():
            if run.stage != "act" or run.in_flight is None:
                continue
            book = self.playbooks.get(run.playbook)
            if book is None or run.step >= len(book.act):
                continue
            out.append(Call(run.run_id, "act", book.act[run.step].name, book.act[run.step],
                            self.inputs(run)))
        return out

    def _escalate(self, run: Run, receiver: str, stage: str, now: float, reason: str, *,
                  outcome: str = "escalated") -> tuple[list[PlaybookStep], list[Call]]:
        run.outcome = outcome
        self._save(run)
        action = Action(name="escalate", type="notify", receiver=receiver,
                        message=f"playbook {run.playbook} escalated at {stage}: {reason}")
        step = self.record(run, stage, "escalated", now=now, error=reason)
        return [step], [Call(run.run_id, "escalate", stage, action,
                             {**self.inputs(run), "reason": reason})]

    def inputs(self, run: Run) -> dict[str, Any]:
        """What an action sees: the run, the alert and what identify gathered."""
        return {"run_id": run.run_id, "playbook": run.playbook, "series": run.series,
                "labels": run.labels, "alert": run.alert, "context": run.context}


class ApprovalError(Exception):
    """An answer to a run that is not waiting for one (already decided, timed out, closed)."""


def match_labels(alert: Alert) -> dict[str, str]:
    """What triggers match on: the alert's labels plus ``alertname``, ``severity``,
    ``direction`` (``drop``/``rise`` of the value against the expected), ``signal``
    (``metric:direction``, so one matcher can accept a drop of one metric *or* a rise of
    another), ``top_<dim>`` for the dimensions of the top contributor, so a playbook can
    react to *where* a site-wide series moved, and ``where_<dim>``: the alert's own label,
    else the top contributor's (a split series and a site-wide one alike)."""
    labels = {**alert.labels, "alertname": alert.rule, "severity": alert.severity}
    v = alert.value
    if v is not None and alert.expected is not None and v != alert.expected:
        labels["direction"] = "drop" if v < alert.expected else "rise"
    elif v is not None and alert.lower is not None and v < alert.lower:
        labels["direction"] = "drop"
    elif v is not None and alert.upper is not None and v > alert.upper:
        labels["direction"] = "rise"
    if "direction" in labels:
        labels["signal"] = f"{alert.labels.get('metric', '')}:{labels['direction']}"
    if alert.contributors:
        for dim, value in (alert.contributors[0].get("labels") or {}).items():
            labels[f"top_{dim}"] = str(value)
    labels.update(where_labels(alert.labels, alert.contributors))
    return labels


def where_labels(labels: dict[str, str], contributors: list[dict[str, Any]]
                 ) -> dict[str, str]:
    """``where_<dim>``: the alert's own label, else its top contributor's."""
    where = {k: v for k, v in labels.items() if k not in ("metric", "drill")}
    if contributors:
        for dim, value in (contributors[0].get("labels") or {}).items():
            where.setdefault(dim, str(value))
    return {f"where_{k}": v for k, v in where.items()}


def _count(inside: int, cleared_at: float | None, verdict: Verdict) -> tuple[int, bool]:
    """One more judged window of a watched series: its run of windows inside the band, and
    whether it has no band yet while its alert has resolved. (A series the detector is still
    learning, e.g. a carrier's first half hour: the rule's own resolve, reached on this
    clock, is the evidence there is, rather than a run that waits hours to escalate.)"""
    warm = (verdict.warming_up and cleared_at is not None
            and verdict.window_end >= cleared_at)
    return (inside + 1 if verdict.inside_band else 0), warm


def _is_back(inside: int, windows: int, cleared_at: float | None, reads_verdicts: bool,
             warming_up: bool) -> bool:
    """One alert of a run is back: its series inside the band for ``windows``, or its alert
    resolved with no verdicts to read (an absence) or no band yet (warming up)."""
    return inside >= windows or (cleared_at is not None and (not reads_verdicts or warming_up))


def alert_series(alert: Alert) -> str:
    """The series an alert is about: its metric and labels, less ``drill``."""
    return series_key(alert.labels.get("metric", ""), {
        k: v for k, v in alert.labels.items() if k not in ("metric", "drill")})


def alert_summary(alert: Alert) -> dict[str, Any]:
    """The fields of an alert a run keeps (and an audit record shows)."""
    return {"rule": alert.rule, "severity": alert.severity, "episode": alert.episode,
            "at": alert.at, "starts_at": alert.starts_at, "value": alert.value,
            "expected": alert.expected, "lower": alert.lower, "upper": alert.upper,
            "score": alert.score, "contributors": alert.contributors,
            "annotations": alert.annotations}
