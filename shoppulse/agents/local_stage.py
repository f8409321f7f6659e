"""The local stage: one source partition's events pre-aggregated into partials.

Plain Python, no Kafka: the ingest service feeds it raw batches, the tests and
``bench detect`` feed it directly. Everything here is a deterministic function
of the partition's events in offset order, which is what makes the pipeline
replayable and crash-safe:

* **watermark** of the partition = the largest event time seen so far;
* an event is **late** for a metric when the watermark before it has already
  passed its window's end + grace (it is counted, and feeds nothing);
* a **duplicate** repeats the ``event_id`` and event time of an earlier event of
  the partition (counted, feeds nothing);
* **sessions** follow :mod:`shoppulse.agents.sessions`.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shoppulse.agents.plan import (
    COUNT,
    DISTINCT,
    KEY_DISTINCT,
    SCALE,
    SESSION,
    SUM,
    UNSET,
    VALUES,
    Feed,
    Plan,
    new_acc,
)
from shoppulse.agents.sessions import SessionTracker
from shoppulse.streams.config import Config
from shoppulse.streams.schemas import Invalid

NONE_LABEL = "none"
OTHER_LABEL = "other"

# key of a partial: (metric index, label values, window start)
PartKey = tuple[int, tuple[str, ...], float]


class DimensionCap:
    """At most ``cap`` distinct values per dimension; the rest fold into ``other``.

    Shared by all partitions of a process so the cap holds per worker.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.known: dict[str, set[str]] = defaultdict(set)
        self.folded: dict[str, int] = defaultdict(int)

    def label(self, dim: str, value: Any) -> str:
        if value is UNSET or value is None:
            return NONE_LABEL
        value = str(value)
        known = self.known[dim]
        if value in known:
            return value
        if len(known) < self.cap:
            known.add(value)
            return value
        self.folded[dim] += 1
        return OTHER_LABEL


@dataclass
class Batch:
    """What one batch of one partition produced."""

    first: int = -1
    last: int = -1
    parts: dict[PartKey, list[Any]] = field(default_factory=dict)
    invalid: list[tuple[int, bytes | None, bytes | None, Invalid]] = field(default_factory=list)
    events: int = 0
    late: int = 0
    duplicates: int = 0


class PartitionAggregator:
    """Pre-aggregates the events of one source partition into partials."""

    def __init__(
        self,
        config: Config,
        plan: Plan,
        topic: str,
        decode: Callable[[bytes], Any],
        cap: DimensionCap,
    ) -> None:
        spec = config.topics[topic]
        self.topic = topic
        self.plan = plan
        self.decode = decode
        self.cap = cap
        self.grace = plan.grace
        self.wm = -math.inf
        self.time_of = operator.attrgetter(spec.time)
        self.id_of = operator.attrgetter("event_id") if "event_id" in spec.fields else None
        self.feeds = plan.by_topic.get(topic, ())
        self.windows = sorted({f.window for f in self.feeds})
        self.sessions: SessionTracker | None = None
        if config.sessions.topic == topic and plan.session_feeds:
            self.sessions = SessionTracker(config, plan, cap)
            if config.session_window not in self.windows:
                self.windows.append(config.session_window)
        self.win_index = {w: i for i, w in enumerate(self.windows)}
        self.feed_win = [self.win_index[f.window] for f in self.feeds]
        self.session_win = (
            self.win_index[config.session_window] if self.sessions is not None else -1
        )
        # event-type style dispatch: feeds indexed by the value of the field most
        # filters pin down, so an event only visits the feeds that may match it
        self.dispatch_field, self.dispatch = _dispatch_index(self.feeds, config, topic)
        self.seen: dict[float, set[tuple[str, float]]] = {}
        self.distinct: dict[tuple[int, int, tuple[str, ...], float], set[Any]] = {}
        self.horizon = plan.horizon

    # -- the hot loop -------------------------------------------------------------
    def process(self, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> Batch:
        """Aggregate ``(offset, key, value)`` records, in offset order."""
        batch = Batch()
        parts = batch.parts
        ops = self.plan.ops
        windows = self.windows
        nwin = len(windows)
        grace = self.grace
        cap_label = self.cap.label
        feed_win = self.feed_win
        dispatch = self.dispatch
        dget = operator.attrgetter(self.dispatch_field) if self.dispatch_field else None
        all_feeds = tuple(range(len(self.feeds)))
        feeds = self.feeds
        sessions = self.sessions
        session_win = self.session_win
        seen = self.seen
        max_w = windows[-1] if windows else 60.0
        decode = self.decode
        time_of = self.time_of
        id_of = self.id_of
        wm = self.wm
        n = 0
        for offset, key, raw in records:
            if batch.first < 0:
                batch.first = offset
            batch.last = offset
            ev = decode(raw)
            if type(ev) is Invalid:
                batch.invalid.append((offset, key, raw, ev))
                continue
            n += 1
            ts = time_of(ev)
            starts = [ts // w * w for w in windows]
            late = [wm >= starts[i] + windows[i] + grace for i in range(nwin)]
            prev_wm = wm
            if ts > wm:
                wm = ts
            if all(late):
                batch.late += 1
                continue
            if any(late):
                batch.late += 1  # late for the shorter windows only
            if id_of is not None:
                bucket = ts // max_w
                ident = (id_of(ev), ts)
                bucket_set = seen.get(bucket)
                if bucket_set is None:
                    bucket_set = seen[bucket] = set()
                elif ident in bucket_set:
                    batch.duplicates += 1
                    continue
                bucket_set.add(ident)
            selected = dispatch.get(dget(ev), all_feeds) if dget is not None else all_feeds
            for fi in selected:
                f = feeds[fi]
                wi = feed_win[fi]
                if late[wi] or not f.filter(ev):
                    continue
                labels = tuple([cap_label(d, getattr(ev, d)) for d in f.dims])
                pkey = (f.metric, labels, starts[wi])
                acc = parts.get(pkey)
                if acc is None:
                    acc = parts[pkey] = new_acc(ops[f.metric])
                acc[-1] += 1
                self._accumulate(f, acc, ev, pkey)
            if sessions is not None and not late[session_win]:
                sessions.observe(ev, ts, prev_wm, parts)
        self.wm = wm
        batch.events = n
        if sessions is not None:
            sessions.resolve(wm, parts)
        self._expire(wm)
        return batch

    def _accumulate(self, f: Feed, acc: list[Any], ev: Any, pkey: PartKey) -> None:
        op = f.op
        c = f.comp
        if op == COUNT:
            acc[c] += 1
        elif op == SUM or op == VALUES:
            v = getattr(ev, f.field)  # type: ignore[arg-type]
            if f.minus is not None:
                v = v - getattr(ev, f.minus)
            scaled = round(v * SCALE)
            if op == SUM:
                acc[c] += scaled
            else:
                acc[c].append(scaled)
        elif op == KEY_DISTINCT or op == DISTINCT:
            v = getattr(ev, f.field)  # type: ignore[arg-type]
            if v is UNSET:
                return
            dkey = (f.metric, c, pkey[1], pkey[2])
            known = self.distinct.get(dkey)
            if known is None:
                known = self.distinct[dkey] = set()
            if v in known:
                return
            known.add(v)
            if op == KEY_DISTINCT:
                acc[c] += 1
            else:
                acc[c].append(v)
        elif op == SESSION:  # pragma: no cover - session feeds are driven by SessionTracker
            raise AssertionError("session feed on a topic")

    def _expire(self, wm: float) -> None:
        """Forget state no later event can touch: it would be late for every window."""
        if not self.windows:
            return
        max_w = self.windows[-1]
        grace = self.grace
        for bucket in [b for b in self.seen if (b + 1) * max_w + grace <= wm]:
            del self.seen[bucket]
        if self.distinct:
            for dkey in [k for k in self.distinct if k[3] + max_w + grace <= wm]:
                del self.distinct[dkey]


def _dispatch_index(
    feeds: tuple[Feed, ...], config: Config, topic: str
) -> tuple[str | None, dict[Any, tuple[int, ...]]]:
    """Index feeds by the field that most of their filters pin to values (eq / in)."""
    pins: list[dict[str, frozenset[Any]]] = []
    for f in feeds:
        metric = config.metrics[f.metric]
        comp = metric.components()[f.comp]
        p = {}
        for name, cond in comp.filter.items():
            if isinstance(cond, list):
                p[name] = frozenset(cond)
            elif not isinstance(cond, dict):
                p[name] = frozenset([cond])
            elif set(cond) <= {"eq", "in"}:
                vals = cond.get("in", [])
                p[name] = frozenset((vals if isinstance(vals, list) else [vals]) +
                                    ([cond["eq"]] if "eq" in cond else []))
        pins.append(p)
    counts: dict[str, int] = defaultdict(int)
    for p in pins:
        for name in p:
            counts[name] += 1
    if not counts:
        return None, {}
    best = max(counts, key=lambda k: counts[k])
    fspec = config.topics[topic].fields[best]
    if fspec.enum is None:
        return None, {}
    index: dict[Any, tuple[int, ...]] = {}
    for value in fspec.enum:
        index[value] = tuple(i for i, p in enumerate(pins) if best not in p or value in p[best])
    return best, index
