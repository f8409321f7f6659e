"""The global stage: partials combined per window, points emitted on close.

Plain logic over two dict-like tables (Faust tables in the worker, dicts in
tests and benchmarks), for one *destination* partition of the partials topic:

* ``windows[f"{dest}|{size}|{start}"]`` holds every series of that window as
  accumulators plus, per source partition, the last source offset applied.
  Series and guard live in one value, so one changelog record carries both:
  a replayed section whose last offset is not above the guard is dropped.
* ``progress[f"{dest}|wm"]`` holds each source partition's watermark and
  whether it is idle; ``progress[f"{dest}|closed"]`` the largest finite
  watermark windows were closed at (the *close frontier*).

A window closes when every source partition that is not idle has a watermark
at or past ``end + grace`` (all idle: everything closes). Every section names
the windows its events fed (``w``), also to destinations that got no series of
them, so all destinations know the same windows and close the same ones. An
emitted window stays as a tombstone until the frontier is ``RETAIN_WINDOWS``
sizes past it (the frontier never moves while all sources are idle, so late
data after an all-idle close meets the tombstone); a partial for an emitted
window, or for one that old, is late: it is dropped and its events are counted
once, at the destination the ingest marked ``tally``. Series carry raw
dimension values; closing folds those beyond the cap into ``other``
(:mod:`shoppulse.agents.cardinality`, ranking counts kept in ``progress``). Emission is
send-then-mark, so a crash in between re-emits identical points; consumers
key points by (series, window).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from shoppulse.agents.cardinality import Cardinality
from shoppulse.agents.plan import DISTINCT, SCALE, SUM, VALUES, Plan, merge_acc
from shoppulse.streams.records import MetricPoint

SEP = "\x1f"
#: Emitted windows are remembered this many window sizes behind the close
#: frontier, to count partials that arrive after the close as late; older ones
#: are late by the frontier alone.
RETAIN_WINDOWS = 10


APPLIED, REPLAYED, LATE = range(3)


@dataclass
class ApplyResult:
    applied: int = 0  # sections merged into some window
    replayed: int = 0  # window sections dropped by the offset guard
    late_after_close: int = 0  # events whose window was already closed (tally sections)
    late_topics: dict[str, int] | None = None


class GlobalStage:
    def __init__(
        self,
        plan: Plan,
        windows: MutableMapping[str, bytes],
        progress: MutableMapping[str, bytes],
        sources: Iterable[str],
        cardinality: Cardinality | None = None,
    ) -> None:
        self.plan = plan
        self.cardinality = cardinality
        self.windows = windows
        self.progress = progress
        self.sources = tuple(sources)
        self.by_name = {m.name: i for i, m in enumerate(plan.metrics)}
        self.win_of = [0.0] * len(plan.metrics)
        for f in [*plan.session_feeds, *(f for fs in plan.by_topic.values() for f in fs)]:
            self.win_of[f.metric] = f.window

    # -- merging ------------------------------------------------------------------
    def apply(self, dest: int, message: dict[str, Any]) -> ApplyResult:
        result = ApplyResult(late_topics={})
        pkey = f"{dest}|wm"
        prog = orjson.loads(self.progress[pkey]) if pkey in self.progress else {}
        frontier = self.frontier(dest)
        for sec in message["sources"]:
            src = f"{sec['topic']}:{sec['partition']}"
            old = prog.get(src)
            marks = [w for w in (sec["wm"], old[0] if old else None) if w is not None]
            prog[src] = [max(marks) if marks else None, bool(sec.get("idle"))]
            if sec["last"] < 0:
                continue
            by_window: dict[str, list[list[Any]]] = {}
            for windows, _events in sec.get("w", ()):
                for size, start in windows:  # fed elsewhere maybe: known here too
                    by_window.setdefault(f"{dest}|{float(size)!r}|{float(start)!r}", [])
            for part in sec["parts"]:
                mi = self.by_name.get(part[0])
                if mi is None:
                    continue  # metric removed from config since the partial was sent
                size = self.win_of[mi]
                by_window.setdefault(f"{dest}|{size!r}|{float(part[2])!r}", []).append(part)
            outcome = {wkey: self._merge(wkey, src, sec, parts, frontier, result)
                       for wkey, parts in by_window.items()}
            if sec.get("tally"):
                self._tally(dest, sec, outcome, result)
        self.progress[pkey] = orjson.dumps(prog)
        return result

    def _tally(
        self, dest: int, sec: dict[str, Any], outcome: dict[str, int], result: ApplyResult
    ) -> None:
        """Count, once, the events of a section that reached a closed window."""
        late = 0
        for windows, events in sec.get("w", ()):
            states = [outcome.get(f"{dest}|{float(size)!r}|{float(start)!r}")
                      for size, start in windows]
            if LATE in states and REPLAYED not in states:
                late += events
        if late:
            result.late_after_close += late
            topics = result.late_topics
            assert topics is not None
            topics[sec["topic"]] = topics.get(sec["topic"], 0) + late

    def _merge(
        self, wkey: str, src: str, sec: dict[str, Any], parts: list[list[Any]],
        frontier: float, result: ApplyResult,
    ) -> int:
        raw = self.windows.get(wkey)
        if raw is None:
            _, size_s, start_s = wkey.split("|")
            if self._forgotten(float(size_s), float(start_s), frontier):
                return LATE  # emitted so long ago that its tombstone is gone
            val: dict[str, Any] = {"applied": {}, "series": {}}
        else:
            val = orjson.loads(raw)
        if sec["last"] <= val["applied"].get(src, -1):  # before the close: a replay is not late
            if parts:
                result.replayed += 1
            return REPLAYED
        if val.get("emitted"):
            val["applied"][src] = sec["last"]  # a replay of a late section is not counted twice
            self.windows[wkey] = orjson.dumps(val)
            return LATE
        if not parts and raw is not None:
            return APPLIED  # a window known here already, with nothing of this section
        val["applied"][src] = sec["last"]
        series = val["series"]
        ops_of = self.plan.ops
        for name, labels, _start, acc in parts:
            ops = ops_of[self.by_name[name]]
            skey = SEP.join([name, *labels])
            cur = series.get(skey)
            if cur is None:
                series[skey] = acc
                continue
            merge_acc(ops, cur, acc)
        self.windows[wkey] = orjson.dumps(val)
        if parts:
            result.applied += 1
        return APPLIED

    def _forgotten(self, size: float, start: float, frontier: float) -> bool:
        """An emitted window's tombstone is dropped this far behind the close frontier."""
        return start + size * (1 + RETAIN_WINDOWS) + self.plan.grace <= frontier

    def frontier(self, dest: int) -> float:
        """The largest finite watermark windows of ``dest`` were closed at."""
        raw = self.progress.get(f"{dest}|closed")
        return -math.inf if raw is None else orjson.loads(raw)

    # -- closing ------------------------------------------------------------------
    def watermark(self, dest: int) -> float:
        """Min watermark over the source partitions that are not idle."""
        raw = self.progress.get(f"{dest}|wm")
        prog = orjson.loads(raw) if raw is not None else {}
        marks = []
        for src in self.sources:
            state = prog.get(src)
            if state is None:
                return -math.inf
            if not state[1]:
                marks.append(-math.inf if state[0] is None else state[0])
        return min(marks) if marks else math.inf

    def close_ready(self, dest: int) -> Iterator[tuple[str, list[MetricPoint]]]:
        """Windows of ``dest`` that can close now, with their points (not yet marked).

        Lazy: mark each window emitted before taking the next, whose folding may rank
        values by the counts of the windows before it (:mod:`shoppulse.agents.cardinality`).
        """
        wm = self.watermark(dest)
        grace = self.plan.grace
        frontier = self.frontier(dest)
        if math.isfinite(wm) and wm > frontier:  # all idle (+inf) does not move it
            frontier = wm
            self.progress[f"{dest}|closed"] = orjson.dumps(wm)
        prefix = f"{dest}|"
        keys = [k for k in list(self.windows.keys()) if k.startswith(prefix)]
        for wkey in sorted(keys, key=_window_order):
            _, size_s, start_s = wkey.split("|")
            size, start = float(size_s), float(start_s)
            if start + size + grace > wm:
                continue
            val = orjson.loads(self.windows[wkey])
            if val.get("emitted"):
                if self._forgotten(size, start, frontier):
                    del self.windows[wkey]
                continue
            yield wkey, self.points(start, size, self._folded(dest, start, val["series"]))

    def mark_emitted(self, wkey: str) -> None:
        val = orjson.loads(self.windows[wkey])
        if self.cardinality is not None and not val.get("emitted"):
            dest = wkey.split("|")[0]
            start = float(wkey.split("|")[2])
            for mi, series in self._by_metric(val["series"]).items():
                hkey = self._history_key(dest, mi)
                raw = self.progress.get(hkey)
                hist = self.cardinality.record(mi, start, series,
                                               orjson.loads(raw) if raw is not None else None)
                if hist is not None:
                    self.progress[hkey] = orjson.dumps(hist)
        self.windows[wkey] = orjson.dumps({"applied": val["applied"], "series": {},
                                           "emitted": True})

    def _folded(self, dest: str | int, start: float, series: dict[str, list[Any]]
                ) -> dict[str, list[Any]]:
        """The window's series with the values beyond the cardinality cap as ``other``."""
        if self.cardinality is None:
            return series
        out: dict[str, list[Any]] = {}
        for mi, group in self._by_metric(series).items():
            raw = self.progress.get(self._history_key(dest, mi))
            hist = orjson.loads(raw) if raw is not None else None
            out.update(self.cardinality.fold(mi, start, group, hist))
        return out

    def _by_metric(self, series: dict[str, list[Any]]) -> dict[int, dict[str, list[Any]]]:
        out: dict[int, dict[str, list[Any]]] = {}
        for skey, acc in series.items():
            mi = self.by_name.get(skey.split(SEP, 1)[0])
            if mi is not None:
                out.setdefault(mi, {})[skey] = acc
        return out

    def _history_key(self, dest: str | int, mi: int) -> str:
        return f"{dest}|card|{self.plan.metrics[mi].name}"

    def points(self, start: float, size: float, series: dict[str, list[Any]]) -> list[MetricPoint]:
        out = []
        for skey in sorted(series):
            name, *labels = skey.split(SEP)
            mi = self.by_name.get(name)
            if mi is None:
                continue  # metric removed from config since the partial was sent
            out.append(metric_point(self.plan, mi, labels, start, size, series[skey]))
        return out


def _window_order(wkey: str) -> tuple[float, float]:
    """Windows by end, then size: a metric's windows close in order of start."""
    _, size, start = wkey.split("|")
    return float(start) + float(size), float(size)


def metric_point(
    plan: Plan, mi: int, labels: list[str], start: float, size: float, acc: list[Any]
) -> MetricPoint:
    """The value of one series-window from its accumulator."""
    spec = plan.metrics[mi]
    ops = plan.ops[mi]
    comps = [_component_value(op, c) for op, c in zip(ops, acc, strict=False)]
    labels_d = dict(zip(spec.dimensions, labels, strict=True))
    common = {"metric": spec.name, "labels": labels_d, "window_start": start,
              "window_end": start + size, "count": acc[-1], "kind": spec.kind}
    if spec.kind == "ratio":
        num, den = comps
        value = num / den if den else None
        return MetricPoint(value=value, numerator=num, denominator=den, **common)
    if spec.kind == "quantile":
        values = sorted(acc[0])
        rank = max(1, math.ceil(spec.q * len(values)))  # type: ignore[operator]
        value = values[rank - 1] / SCALE if values else None
        return MetricPoint(value=value, **common)
    return MetricPoint(value=comps[0], **common)


def _component_value(op: int, c: Any) -> float:
    if op == SUM:
        return c / SCALE
    if op == DISTINCT:
        return float(len(c))
    if op == VALUES:
        return float(len(c))
    return float(c)


def encode_partials(sections: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"sources": sections})
