"""The cardinality cap: which values of a dimension keep their own series.

A rule that depends only on the events, never on fetch order or on which worker
runs a partition, so a replay gives the same points and two workers fold alike:

* the local stage labels events with their raw values (``none`` when missing);
  partials are routed by metric, so every series of a metric's window meets in
  one place of the global stage;
* when a window closes, each dimension of the metric keeps the values listed
  in ``dimensions_keep``, ``none`` and ``other``, plus the
  ``cardinality_cap - len(listed)`` most counted other values (events of the
  metric; ties by value) of the **last closed period** (``cardinality_period``,
  default one day of event time, aligned to the epoch) that had any; in the
  metric's first period, of the window itself;
* the other values fold into ``other`` (accumulators merged exactly).

The counts of a period are those of the metric's emitted windows, added when a
window is marked emitted, at most once per window (windows of one metric close
in order of start), and kept for the ``TRACK`` most counted values only (ties by
value, trimmed after each window), so state stays bounded whatever producers send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoppulse.agents.plan import UNSET, Plan, merge_acc
from shoppulse.streams.config import Config

NONE_LABEL = "none"
OTHER_LABEL = "other"
#: values whose period counts are tracked, per dimension, as a multiple of the cap
TRACK_FACTOR = 4
SEP = "\x1f"


def label(value: Any) -> str:
    """The raw label of a dimension value: missing fields read ``none``."""
    if value is UNSET or value is None:
        return NONE_LABEL
    return str(value)


def kept_values(counts: Mapping[str, int], listed: Iterable[str], cap: int) -> frozenset[str]:
    """Listed values, ``none``, ``other`` and the most counted others up to ``cap``.

    >>> sorted(kept_values({"a": 5, "b": 7, "c": 5, "d": 1}, ["d"], 3))
    ['a', 'b', 'd', 'none', 'other']
    """
    fixed = set(listed)
    ranked = sorted((v for v in counts if v not in fixed and v not in (NONE_LABEL, OTHER_LABEL)),
                    key=lambda v: (-counts[v], v))
    return frozenset(fixed | {NONE_LABEL, OTHER_LABEL} | set(ranked[:max(0, cap - len(fixed))]))


def value_counts(series: Mapping[str, list[Any]], n_dims: int) -> list[dict[str, int]]:
    """Per dimension, events per value over the series (``name SEP labels...``) of a metric."""
    out: list[dict[str, int]] = [{} for _ in range(n_dims)]
    for skey, acc in series.items():
        labels = skey.split(SEP)[1:]
        for i, v in enumerate(labels):
            out[i][v] = out[i].get(v, 0) + acc[-1]
    return out


class Cardinality:
    """Folding of closed windows, and the per-period counts it ranks by."""

    def __init__(self, plan: Plan, cap: int, keep: Mapping[str, Iterable[str]],
                 period: float) -> None:
        self.plan = plan
        self.cap = cap
        self.keep = {d: frozenset(v) for d, v in keep.items()}
        self.period = period
        self.track = TRACK_FACTOR * cap

    def period_of(self, start: float) -> float:
        return start // self.period * self.period

    def fold(
        self, mi: int, start: float, series: dict[str, list[Any]], history: dict[str, Any] | None
    ) -> dict[str, list[Any]]:
        """Series of metric ``mi`` in the window at ``start``, the dropped values as ``other``.

        ``series`` maps ``name SEP labels...`` to accumulators; ``history`` is what
        :meth:`record` keeps for the metric on this destination partition.
        """
        dims = self.plan.metrics[mi].dimensions
        if not dims or not series:
            return series
        ranking = self._ranking(mi, start, history)
        if ranking is None:
            ranking = value_counts(series, len(dims))
        kept = [kept_values(ranking[i], self.keep.get(d, ()), self.cap)
                for i, d in enumerate(dims)]
        out: dict[str, list[Any]] = {}
        ops = self.plan.ops[mi]
        for skey in sorted(series):
            name, *labels = skey.split(SEP)
            folded = [v if v in k else OTHER_LABEL for v, k in zip(labels, kept, strict=True)]
            fkey = SEP.join([name, *folded])
            cur = out.get(fkey)
            if cur is None:  # a copy: merging into it must not change the caller's series
                out[fkey] = [list(c) if isinstance(c, list) else c for c in series[skey]]
            else:
                merge_acc(ops, cur, series[skey])
        return out

    def _ranking(
        self, mi: int, start: float, history: dict[str, Any] | None
    ) -> list[dict[str, int]] | None:
        """Counts of the last period before this window's that had any, if one did."""
        if not history:
            return None
        here = self.period_of(start)
        earlier = [float(p) for p in history["periods"] if float(p) < here]
        if not earlier:
            return None
        ranking = history["periods"][_pkey(max(earlier))]
        dims = self.plan.metrics[mi].dimensions
        return ranking if len(ranking) == len(dims) else None

    def record(
        self, mi: int, start: float, series: dict[str, list[Any]], history: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """``history`` with the raw series of an emitted window added (once), or None if
        nothing changes."""
        dims = self.plan.metrics[mi].dimensions
        if not dims or not series:
            return None
        hist = history or {"upto": None, "periods": {}}
        if hist["upto"] is not None and start <= hist["upto"]:
            return None  # already counted: a re-emission after a crash
        here = self.period_of(start)
        periods = hist["periods"]
        earlier = [float(p) for p in periods if float(p) < here]
        last = max(earlier) if earlier else None
        for p in list(periods):
            if float(p) != here and float(p) != last:
                del periods[p]
        counts = periods.setdefault(_pkey(here), [{} for _ in dims])
        if len(counts) != len(dims):  # the metric's dimensions changed in config
            counts = periods[_pkey(here)] = [{} for _ in dims]
        for i, (d, add) in enumerate(zip(dims, value_counts(series, len(dims)), strict=True)):
            fixed = self.keep.get(d, frozenset())
            dim_counts = counts[i]
            for v, n in add.items():
                if v not in fixed and v not in (NONE_LABEL, OTHER_LABEL):
                    dim_counts[v] = dim_counts.get(v, 0) + n
            if len(dim_counts) > self.track:
                top = sorted(dim_counts, key=lambda v: (-dim_counts[v], v))[:self.track]
                counts[i] = {v: dim_counts[v] for v in top}
        hist["upto"] = start
        return hist


def _pkey(period: float) -> str:
    return repr(float(period))


def cardinality_of(config: Config, plan: Plan) -> Cardinality:
    """The rule as configured: ``cardinality_cap``, ``dimensions_keep``, ``cardinality_period``."""
    return Cardinality(plan, config.cardinality_cap, config.dimensions_keep,
                       config.cardinality_period)
