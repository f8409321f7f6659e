"""Rules and lifecycle over a dict-like store: points and verdicts in, Alert records out.

Plain code (a Faust table in the worker, a dict in tests, ``rules test`` and the
benchmark). The store holds, all as bytes:

* ``s|<fingerprint>``: the :class:`AlertState` of an alert that was ever active;
* ``c|<partition>``: the partition's event-time clock, the newest window end seen;
* ``c|<partition>|<lane>``: the newest window end of each *lane* (the points one emitter
  sends in window order, see ``lane`` below); absence is judged on the slowest live lane;
* ``a|<fingerprint>``: when an absence-watched series or topic was last seen;
* ``h|<series>|<window start>``: values kept a week for change rules.

Everything a record changes is keyed so that the partition it came from owns it, which
is what a Faust table's changelog needs to restore it with that partition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.lifecycle import AlertState, Timing, advance
from shoppulse.alerting.rules import (
    AbsenceRule,
    AnomalyRule,
    ChangeRule,
    Rule,
    RuleSet,
    Sample,
    ThresholdRule,
)
from shoppulse.alerting.templates import render_all
from shoppulse.streams.config import Config
from shoppulse.streams.records import Alert, MetricPoint, Verdict, series_key

Listener = Callable[[Alert], None]
_INACTIVE = b'{"state":"inactive"'  # AlertState.dumps() starts with its state
LANE_SLACK = 2.0  # how far (x an absence's ``for``) one emitter may trail the newest


class AlertEngine:
    def __init__(self, config: Config, store: MutableMapping[str, bytes], *,
                 kinds: set[str] | None = None, partitions: int = 4,
                 on_transition: Listener | None = None,
                 lane: Callable[[str], int] | None = None) -> None:
        """``lane(metric)`` names the emitter of a metric's points (the worker: the global
        stage's destination partition). Emitters run at their own pace, so a fast replay
        puts points of window 10 from one before points of window 5 from another; absence
        judged on the newest window seen would call the slow one's metrics silent."""
        self.rules = RuleSet(config, kinds)
        self.lane = lane
        self.drill = config.drill
        self.store = store
        self.partitions = partitions
        self.on_transition = on_transition
        self.timings = {r.name: Timing(r.hold_for, r.spec.keep_firing_for,
                                       r.spec.flap_window, r.spec.flap_for)
                        for r in self.rules.rules}
        self.has_change = any(isinstance(r, ChangeRule) for r in self.rules.rules)
        # in memory, rebuilt from the store per partition: what to check when the clock moves,
        # and what is firing (the gauge)
        self._loaded: set[int] = set()
        self._watched: dict[int, dict[str, tuple[AbsenceRule, dict[str, str]]]] = {}
        self._lanes: dict[int, dict[int, float]] = {}  # partition -> lane -> newest end
        self.firing: dict[str, tuple[str, str, int]] = {}  # fp -> (rule, severity, partition)
        self.clock = 0.0  # newest window end judged by this process (progress, not state)

    # -- inputs -----------------------------------------------------------------------
    def on_point(self, p: MetricPoint, partition: int = 0) -> list[Alert]:
        self._load(partition)
        self.clock = max(self.clock, p.window_end)
        out: list[Alert] = []
        for rule in self.rules.for_metric(p.metric):
            if not rule.applies(p.metric, p.labels):
                continue
            labels = rule.alert_labels(p.metric, p.labels)
            if isinstance(rule, ThresholdRule):
                out += self._step(rule, labels, rule.evaluate(p), partition)
            elif isinstance(rule, ChangeRule):
                out += self._step(rule, labels, rule.evaluate(p, self._history(p)), partition)
            elif isinstance(rule, AbsenceRule):
                self._seen(rule, labels, p.window_end, partition)
        for rule in self.rules.topic_absence(p.metric):
            if partition == rule.index % self.partitions:  # one partition judges a topic
                self._seen(rule, {"topic": rule.spec.topic or ""}, p.window_end, partition)
        ckey = f"c|{partition}"
        raw = self.store.get(ckey)
        clock = float(raw) if raw is not None else -math.inf
        if p.window_end > clock:
            self._put(ckey, repr(p.window_end).encode())
        lane = 0 if self.lane is None else self.lane(p.metric)
        lanes = self._lanes.setdefault(partition, {})
        if p.window_end > lanes.get(lane, -math.inf):
            lanes[lane] = p.window_end
            # progress, not state: a lane clock lost in a crash only holds absence back
            # until the replayed points move it again
            self.store[f"{ckey}|{lane}"] = repr(p.window_end).encode()
            out += self._absences(partition)
        return out

    def absence_clock(self, partition: int, silence: float) -> float:
        """The slowest lane still alive: every emitter has closed its windows up to here.
        A lane more than ``LANE_SLACK`` x ``silence`` behind the newest one counts as
        silent itself (its metrics may all read the silent topic), not as slow."""
        lanes = self._lanes.get(partition) or {}
        if not lanes:
            return -math.inf
        newest = max(lanes.values())
        return min(c for c in lanes.values() if c >= newest - LANE_SLACK * silence)

    def on_verdict(self, v: Verdict, partition: int = 0) -> list[Alert]:
        self._load(partition)
        self.clock = max(self.clock, v.window_end)
        out: list[Alert] = []
        for rule in self.rules.for_metric(v.metric):
            if isinstance(rule, AnomalyRule) and rule.applies(v.metric, v.labels):
                labels = rule.alert_labels(v.metric, v.labels)
                out += self._step(rule, labels, rule.evaluate(v), partition)
        return out

    def forget(self, partition: int) -> None:
        """The partition left this worker: drop what memory holds of it."""
        self._loaded.discard(partition)
        self._watched.pop(partition, None)
        self._lanes.pop(partition, None)
        for fp in [fp for fp, (_, _, p) in self.firing.items() if p == partition]:
            del self.firing[fp]

    # -- state --------------------------------------------------------------------------
    def _put(self, key: str, value: bytes) -> None:
        self.store[key] = value

    def state(self, fp: str) -> AlertState | None:
        raw = self.store.get(f"s|{fp}")
        return AlertState.loads(raw) if raw is not None else None

    def _step(self, rule: Rule, labels: dict[str, str], sample: Sample,
              partition: int) -> list[Alert]:
        if sample.cond is None:
            return []
        if self.drill:  # a drill's alerts say so, and only drill receivers take them
            labels = {**labels, "drill": "true"}
        fp = fingerprint(rule.name, labels)
        key = f"s|{fp}"
        raw = self.store.get(key)
        if raw is None:
            if not sample.cond:
                return []  # inactive and fine: nothing to keep
            st = AlertState(rule=rule.name, labels=labels, partition=partition)
        else:
            if not sample.cond and raw.startswith(_INACTIVE):
                return []  # still fine: nothing changes (and a replay of it neither)
            st = AlertState.loads(raw)
        transitions = advance(st, sample, self.timings[rule.name])
        if st.last == sample.end:  # judged (not a replay): keep the new state
            self._put(key, st.dumps())
        out = [self._record(rule, fp, st, sample, t) for t in transitions]
        for a in out:
            if a.state == "firing":
                self.firing[fp] = (rule.name, rule.severity, partition)
            elif a.state == "resolved":
                self.firing.pop(fp, None)
            if self.on_transition is not None:
                self.on_transition(a)
        return out

    def _record(self, rule: Rule, fp: str, st: AlertState, s: Sample, state: str) -> Alert:
        episode = st.announced if state == "pending" else st.episode
        starts = st.since if st.since is not None else s.start
        fields: dict[str, Any] = {
            "fingerprint": fp, "episode": episode, "state": state, "rule": rule.name,
            "severity": rule.severity, "labels": dict(st.labels), "starts_at": starts,
            "ends_at": st.clear if state == "resolved" else None, "at": s.end,
            "value": s.value, "peak": st.peak, "expected": s.expected, "lower": s.lower,
            "upper": s.upper, "score": s.score, "numerator": s.numerator,
            "denominator": s.denominator, "contributors": list(s.contributors)}
        ctx = {**fields, "labels": dict(st.labels), "threshold": rule.spec.value,
               "op": rule.spec.op, "for": rule.spec.for_, "kind": rule.kind}
        fields["annotations"] = render_all(rule.spec.annotations, ctx)
        if state == "resolved" and st.since is None:
            fields["starts_at"] = s.start
        return Alert(**fields)

    # -- absence ------------------------------------------------------------------------
    def _seen(self, rule: AbsenceRule, labels: dict[str, str], at: float,
              partition: int) -> None:
        fp = fingerprint(rule.name, labels)
        key = f"a|{fp}"
        raw = self.store.get(key)
        if raw is not None and orjson.loads(raw)["seen"] >= at:
            return
        self._put(key, orjson.dumps({"rule": rule.name, "labels": labels, "seen": at,
                                     "partition": partition}))
        self._watched.setdefault(partition, {})[fp] = (rule, labels)

    def _absences(self, partition: int) -> list[Alert]:
        out: list[Alert] = []
        for fp, (rule, labels) in list(self._watched.get(partition, {}).items()):
            raw = self.store.get(f"a|{fp}")
            if raw is None:
                continue
            seen = orjson.loads(raw)["seen"]
            clock = self.absence_clock(partition, rule.spec.for_)
            if clock >= seen:
                out += self._step(rule, labels, rule.evaluate(seen, clock), partition)
        return out

    # -- change -------------------------------------------------------------------------
    def _history(self, p: MetricPoint) -> list[float | None]:
        series = series_key(p.metric, p.labels)
        size = p.window_end - p.window_start
        if p.value is not None:
            self._put(f"h|{series}|{p.window_start!r}", repr(float(p.value)).encode())
        old = f"h|{series}|{p.window_start - ChangeRule.offsets[-1] - size!r}"
        if old in self.store:
            del self.store[old]
        refs = []
        for off in ChangeRule.offsets:
            raw = self.store.get(f"h|{series}|{p.window_start - off!r}")
            refs.append(float(raw) if raw is not None else None)
        return refs

    def _load(self, partition: int) -> None:
        """First record of a partition here: rebuild the in-memory indexes from the store."""
        if partition in self._loaded:
            return
        self._loaded.add(partition)
        watched = self._watched.setdefault(partition, {})
        lanes = self._lanes.setdefault(partition, {})
        for key in list(self.store.keys()):
            if key.startswith(f"c|{partition}|"):
                lanes[int(key.rsplit("|", 1)[1])] = float(self.store[key])
            if key.startswith("a|"):
                d = orjson.loads(self.store[key])
                rule = self.rules.by_name.get(d["rule"])
                if d["partition"] == partition and isinstance(rule, AbsenceRule):
                    watched[key[2:]] = (rule, d["labels"])
            elif key.startswith("s|"):
                st = AlertState.loads(self.store[key])
                rule = self.rules.by_name.get(st.rule)
                if st.partition == partition and st.state == "firing" and rule is not None:
                    self.firing[key[2:]] = (st.rule, rule.severity, partition)

    def firing_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for rule, severity, _ in self.firing.values():
            counts[(rule, severity)] = counts.get((rule, severity), 0) + 1
        return counts

