"""The local stage: one source partition's events pre-aggregated into partials.

Plain Python, no Kafka: the ingest service feeds it raw batches, the tests and
``bench detect`` feed it directly. Everything here is a deterministic function
of the partition's events in offset order, which is what makes the pipeline
replayable and crash-safe:

* **watermark** of the partition = the largest event time seen so far;
* an event is **late** for a window when the watermark before it has already
  passed the window's end + grace; it feeds nothing of that window and is
  counted late once, however many windows (sizes) it is late for;
* every batch names the windows its on-time events fed (:attr:`Batch.spans`),
  so the global stage can count, once per event, those whose window had
  already closed there;
* a **duplicate** repeats the ``event_id`` and event time of an earlier event of
  the partition (counted, feeds nothing);
* **sessions** follow :mod:`shoppulse.agents.sessions`.
"""

from __future__ import annotations

import logging
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shoppulse.agents.cardinality import label
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
    acc_for,
)
from shoppulse.agents.sessions import SessionTracker
from shoppulse.streams.config import Config
from shoppulse.streams.schemas import Invalid, internal_error

log = logging.getLogger(__name__)

# key of a partial: (metric index, label values, window start)
PartKey = tuple[int, tuple[str, ...], float]


class Record(NamedTuple):
    """One input record, for callers that do not hold aiokafka's ConsumerRecord."""

    offset: int
    key: bytes | None
    value: bytes | None


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
    #: events that were not dropped, per tuple of their window starts (one per
    #: window size of the topic; ``None`` where the event was late and counted)
    spans: dict[tuple[float | None, ...], int] = field(default_factory=dict)


class PartitionAggregator:
    """Pre-aggregates the events of one source partition into partials."""

    def __init__(
        self,
        config: Config,
        plan: Plan,
        topic: str,
        decode: Callable[[bytes], Any],
    ) -> None:
        spec = config.topics[topic]
        self.topic = topic
        self.plan = plan
        self.decode = decode
        self.grace = plan.grace
        self.wm = -math.inf
        self.time_of = operator.attrgetter(spec.time)
        self.id_of = operator.attrgetter("event_id") if "event_id" in spec.fields else None
        self.feeds = plan.by_topic.get(topic, ())
        self.windows = sorted({f.window for f in self.feeds})
        self.sessions: SessionTracker | None = None
        if config.sessions.topic == topic and plan.session_feeds:
            self.sessions = SessionTracker(config, plan)
            if config.session_window not in self.windows:
                self.windows.append(config.session_window)
        self.win_index = {w: i for i, w in enumerate(self.windows)}
        self.feed_win = [self.win_index[f.window] for f in self.feeds]
        self.session_win = (
            self.win_index[config.session_window] if self.sessions is not None else -1
        )
        # Counting feeds whose filters and dimensions only read low-cardinality
        # fields are evaluated once per distinct *signature* (the tuple of those
        # fields) per batch, not once per event. The others (sums, distincts,
        # quantiles, field comparisons) run per event, dispatched on the field
        # most filters pin down so an event only visits feeds that may match.
        fields = config.topics[topic].fields
        grouped, direct = [], []
        for i, f in enumerate(self.feeds):
            (grouped if _groupable(f, config, fields) else direct).append(i)
        self.grouped = tuple(grouped)
        sig_fields = sorted({name for i in grouped for name in _feed_fields(self.feeds[i], config)})
        self.sig_fields = tuple(sig_fields)
        self.sig_of = operator.attrgetter(*sig_fields) if sig_fields else (lambda ev: ())
        if len(sig_fields) == 1:
            one = self.sig_of
            self.sig_of = lambda ev: (one(ev),)
        self.direct_field, self.direct = _dispatch_index(
            [self.feeds[i] for i in direct], direct, config, topic)
        self.direct_all = tuple(direct)
        self.seen: dict[float, set[tuple[str, float]]] = {}
        self.distinct: dict[tuple[int, int, tuple[str, ...], float], set[Any]] = {}
        self.horizon = plan.horizon

    # -- the hot loop -------------------------------------------------------------
    def process(self, records: Sequence[Any]) -> Batch:
        """Aggregate records (``.offset``, ``.key``, ``.value``: a :class:`Record` or an
        aiokafka ``ConsumerRecord``), in offset order."""
        batch = Batch()
        parts = batch.parts
        ops = self.plan.ops
        windows = self.windows
        grace = self.grace
        single = len(windows) == 1
        w0 = windows[0] if windows else 60.0
        feeds = self.feeds
        feed_win = self.feed_win
        direct = self.direct
        dget = operator.attrgetter(self.direct_field) if self.direct_field else None
        direct_all = self.direct_all
        sig_of = self.sig_of
        groups: dict[tuple[Any, ...], int] = {}
        sessions = self.sessions
        session_win = self.session_win
        seen = self.seen
        max_w = windows[-1] if windows else 60.0
        decode = self.decode
        time_of = self.time_of
        id_of = self.id_of
        wm = self.wm
        for rec in records:
            try:
                ev = decode(rec.value)
                if type(ev) is Invalid:
                    batch.invalid.append((rec.offset, rec.key, rec.value, ev))
                    continue
                ts = time_of(ev)
                prev_wm = wm
                if ts > wm:
                    wm = ts
                if single:
                    start = ts // w0 * w0
                    if prev_wm >= start + w0 + grace:
                        batch.late += 1
                        continue
                    starts: tuple[float, ...] = (start,)
                    late: tuple[bool, ...] = (False,)
                else:
                    starts = tuple([ts // w * w for w in windows])
                    late = tuple([prev_wm >= s + w + grace
                                  for s, w in zip(starts, windows, strict=True)])
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
                gkey = (starts, late, sig_of(ev))
                groups[gkey] = groups.get(gkey, 0) + 1
                if direct_all:
                    for fi in (direct.get(dget(ev), direct_all) if dget is not None
                               else direct_all):
                        f = feeds[fi]
                        wi = feed_win[fi]
                        if late[wi] or not f.filter(ev):
                            continue
                        pkey = (f.metric, self._labels(f, ev), starts[wi])
                        acc = acc_for(parts, pkey, ops[f.metric])
                        acc[-1] += 1
                        self._accumulate(f, acc, ev, pkey)
                if sessions is not None and not late[session_win]:
                    sessions.observe(ev, ts, prev_wm, parts)
            except Exception as exc:  # a bug costs one dead letter, never the partition
                batch.invalid.append((rec.offset, rec.key, rec.value, internal_error(exc)))
                log.error("%s@%d: internal error, record dead-lettered", self.topic, rec.offset,
                          exc_info=True)
        if records:
            batch.first = records[0].offset
            batch.last = records[-1].offset
        self.wm = wm
        batch.events = len(records) - len(batch.invalid)  # late and duplicates included
        self._count_groups(groups, batch)
        if sessions is not None:
            sessions.resolve(wm, parts)
        self._expire(wm)
        return batch

    def _count_groups(self, groups: dict[tuple[Any, ...], int], batch: Batch) -> None:
        """Apply the counting feeds once per (windows, lateness, signature) group."""
        feeds, feed_win, ops = self.feeds, self.feed_win, self.plan.ops
        fields = self.sig_fields
        parts, spans = batch.parts, batch.spans
        for (starts, late, sig), count in groups.items():
            span = tuple([None if x else s for s, x in zip(starts, late, strict=True)])
            spans[span] = spans.get(span, 0) + count
            proxy = _Proxy()
            proxy.__dict__.update(zip(fields, sig, strict=False))
            for fi in self.grouped:
                f = feeds[fi]
                wi = feed_win[fi]
                if late[wi] or not f.filter(proxy):
                    continue
                acc = acc_for(parts, (f.metric, self._labels(f, proxy), starts[wi]),
                              ops[f.metric])
                acc[f.comp] += count
                acc[-1] += count

    def _labels(self, f: Feed, ev: Any) -> tuple[str, ...]:
        """Raw values: the cap folds them when the window closes (agents.cardinality)."""
        return tuple([label(getattr(ev, d)) for d in f.dims])

    def _accumulate(self, f: Feed, acc: list[Any], ev: Any, pkey: PartKey) -> None:
        op = f.op
        c = f.comp
        if op == COUNT:
            acc[c] += 1
        elif op in (SUM, VALUES):
            v = getattr(ev, f.field)  # type: ignore[arg-type]
            if f.minus is not None:
                v = v - getattr(ev, f.minus)
            scaled = round(v * SCALE)
            if op == SUM:
                acc[c] += scaled
            else:
                acc[c].append(scaled)
        elif op in (KEY_DISTINCT, DISTINCT):
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


class _Proxy:
    """Stands in for the events of one signature group: the signature fields as attributes."""


def _feed_fields(f: Feed, config: Config) -> set[str]:
    comp = config.metrics[f.metric].components()[f.comp]
    out = set(f.dims) | set(comp.filter)
    for cond in comp.filter.values():
        if isinstance(cond, dict):
            out |= {v for k, v in cond.items() if k.endswith("_field")}
    return out


def _groupable(f: Feed, config: Config, fields: dict[str, Any]) -> bool:
    """A count whose fields are all enums or capped dimensions, compared to constants."""
    if f.op != COUNT:
        return False
    comp = config.metrics[f.metric].components()[f.comp]
    for name, cond in comp.filter.items():
        if fields[name].type in ("number", "integer", "timestamp"):
            return False
        if isinstance(cond, dict) and any(k.endswith("_field") for k in cond):
            return False
        if fields[name].enum is None and not (isinstance(cond, dict) and set(cond) == {"exists"}):
            return False
    return all(fields[d].type in ("string", "boolean") for d in f.dims)


def _dispatch_index(
    feeds: list[Feed], indices: list[int], config: Config, topic: str
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
        index[value] = tuple(indices[i] for i, p in enumerate(pins)
                             if best not in p or value in p[best])
    return best, index
