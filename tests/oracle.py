"""An independent batch computation of every window metric, with pandas.

It reads the same records the pipeline read (topic, partition, offset, raw
value), never calls pipeline code, and applies the semantics documented in the
README: per-partition watermark lateness, duplicates by (event_id, event time),
sessions and bounce in event time, integer-millionth sums, nearest-rank
quantiles.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

SCALE = 1_000_000
Key = tuple[str, tuple[str, ...], float]


def frame(records: list[tuple[str, int, int, bytes]]) -> dict[str, pd.DataFrame]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for topic, partition, offset, raw in records:
        ev = json.loads(raw)
        ev["o_partition"], ev["o_offset"] = partition, offset
        rows.setdefault(topic, []).append(ev)
    out = {}
    for topic, evs in rows.items():
        df = pd.DataFrame(evs).sort_values(["o_partition", "o_offset"]).reset_index(drop=True)
        prev = df.groupby("o_partition")["ts"].cummax().groupby(df["o_partition"]).shift(1)
        df["o_wm"] = prev.fillna(-math.inf)
        df["o_dup"] = df.duplicated(subset=["o_partition", "event_id", "ts"], keep="first")
        out[topic] = df
    return out


def _late(df: pd.DataFrame, window: float, grace: float) -> pd.Series:
    start = df["ts"] // window * window
    return df["o_wm"] >= start + window + grace


def _mask(df: pd.DataFrame, spec: dict[str, Any]) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for field, cond in spec.items():
        col = df[field] if field in df else pd.Series(np.nan, index=df.index)
        ops = cond if isinstance(cond, dict) else {"in" if isinstance(cond, list) else "eq": cond}
        for op, arg in ops.items():
            if op == "eq":
                mask &= col == arg
            elif op == "in":
                mask &= col.isin(arg if isinstance(arg, list) else [arg])
            elif op == "exists":
                mask &= col.notna() == bool(arg)
            elif op in ("le", "lt", "ge", "gt", "ne"):
                cmp = {"le": col <= arg, "lt": col < arg, "ge": col >= arg, "gt": col > arg,
                       "ne": col != arg}[op]
                mask &= cmp & col.notna()
            elif op.endswith("_field"):
                other = df[arg] if arg in df else pd.Series(np.nan, index=df.index)
                cmp = {"le": col <= other, "lt": col < other, "ge": col >= other,
                       "gt": col > other}[op.removesuffix("_field")]
                mask &= cmp & col.notna() & other.notna()
            else:
                raise NotImplementedError(op)
    return mask


def sessions(df: pd.DataFrame, window: float, grace: float, timeout: float,
             start: dict[str, Any]) -> list[tuple[str, float, dict[str, Any]]]:
    """(transition, start ts, start event) for every session transition, per the README."""
    out = []
    starts = _mask(df, start)
    for _, part in df.assign(o_start=starts).groupby("o_partition"):
        active: dict[str, list[Any]] = {}
        heap: list[tuple[float, int, str]] = []
        n = 0
        for row in part.sort_values("o_offset").itertuples(index=False):
            wm_before = row.o_wm
            ws = row.ts // window * window
            if wm_before >= ws + window + grace or row.o_dup:
                continue
            while heap and heap[0][0] <= wm_before:
                _, _, sid = heapq.heappop(heap)
                st = active.pop(sid)
                out.append(("engaged" if st[2] else "bounced", st[0], st[1]))
            sid = row.session_id
            if sid in active:
                st = active[sid]
                if row.ts < st[0] + timeout:
                    st[2] = True
            elif row.o_start:
                n += 1
                active[sid] = [row.ts, row._asdict(), False]
                heapq.heappush(heap, (row.ts + timeout, n, sid))
                out.append(("started", row.ts, row._asdict()))
        # end of input: the pipeline resolves what the final watermark allows
        wm = part["ts"].max()
        while heap and heap[0][0] <= wm:
            _, _, sid = heapq.heappop(heap)
            st = active.pop(sid)
            out.append(("engaged" if st[2] else "bounced", st[0], st[1]))
    return out


def _label(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    return str(v)


# Cardinality cap, as the README states it: per metric and window, each dimension keeps
# the values listed in dimensions_keep, "none", "other", and the cap minus the number
# listed of the other values most counted (events of the metric, ties by value) over the
# last earlier period (cardinality_period, epoch-aligned) in which the metric had any
# window, or over the window itself when there is none. A period's counts are summed
# window by window in order of window start and cut to the 4 x cap most counted (ties by
# value) after each window. The rest read "other".
Fold = Callable[[str, float, int, str], str]


def kept_labels(config: Any, raw: dict[Key, tuple]) -> dict[tuple[str, float], list[set[str]]]:
    """{(metric, window start): per dimension, the labels that are not folded}."""
    cap, period = config.cardinality_cap, config.cardinality_period
    out: dict[tuple[str, float], list[set[str]]] = {}
    for metric in config.metrics:
        dims = list(metric.dimensions)
        if not dims:
            continue
        listed = [set(config.dimensions_keep.get(d, [])) for d in dims]
        by_window: dict[float, list[Counter]] = {}
        for (name, labels, ws), point in raw.items():
            if name != metric.name:
                continue
            per_dim = by_window.setdefault(ws, [Counter() for _ in dims])
            for i, v in enumerate(labels):
                per_dim[i][v] += point[3]
        history: dict[float, list[Counter]] = {}
        for ws in sorted(by_window):
            here = math.floor(ws / period) * period
            before = [p for p in history if p < here]
            ranking = history[max(before)] if before else by_window[ws]
            kept = []
            for i in range(len(dims)):
                free = [(-n, v) for v, n in ranking[i].items()
                        if v not in listed[i] and v not in ("none", "other")]
                top = [v for _, v in sorted(free)[:max(0, cap - len(listed[i]))]]
                kept.append(listed[i] | {"none", "other"} | set(top))
            out[(metric.name, ws)] = kept
            counts = history.setdefault(here, [Counter() for _ in dims])
            for i, window_counts in enumerate(by_window[ws]):
                for v, n in window_counts.items():
                    if v not in listed[i] and v not in ("none", "other"):
                        counts[i][v] += n
                if len(counts[i]) > 4 * cap:
                    counts[i] = Counter(dict(sorted(counts[i].items(),
                                                    key=lambda kv: (-kv[1], kv[0]))[:4 * cap]))
    return out


def compute_points(config: Any, records: list[tuple[str, int, int, bytes]]) -> dict[Key, tuple]:
    """{(metric, labels, window_start): (value, numerator, denominator, count)}."""
    frames = frame(records)
    raw = _points(config, frames, None)
    kept = kept_labels(config, raw)
    if all(v in kept[(name, ws)][i] for name, labels, ws in raw for i, v in enumerate(labels)):
        return raw
    return _points(config, frames,
                   lambda name, ws, i, v: v if v in kept[(name, ws)][i] else "other")


def _points(config: Any, frames: dict[str, pd.DataFrame], fold: Fold | None) -> dict[Key, tuple]:
    grace = config.windows.grace
    sess_window = config.sessions.window or config.windows.size
    sess = None
    result: dict[Key, tuple] = {}
    for metric in config.metrics:
        window = metric.window or config.windows.size
        comps = ([metric.numerator, metric.denominator] if metric.kind == "ratio" else
                 [metric])
        # per component: {(labels, wstart): (component value, matched events)}
        per_comp: list[dict[tuple[tuple[str, ...], float], tuple[Any, int]]] = []
        for comp in comps:
            acc: dict[tuple[tuple[str, ...], float], tuple[Any, int]] = {}
            if comp.session is not None:
                if sess is None:
                    sdf = frames.get(config.sessions.topic)
                    sess = [] if sdf is None else sessions(
                        sdf, sess_window, grace, config.sessions.bounce_timeout,
                        config.sessions.start)
                for state, ts, ev in sess:
                    if state != comp.session:
                        continue
                    ws = ts // sess_window * sess_window
                    labels = tuple(_label(ev.get(d)) for d in metric.dimensions)
                    if fold is not None:
                        labels = tuple(fold(metric.name, ws, i, v) for i, v in enumerate(labels))
                    key = (labels, ws)
                    v, n = acc.get(key, (0, 0))
                    acc[key] = (v + 1, n + 1)
                per_comp.append(acc)
                continue
            df = frames.get(comp.topic)
            if df is None:
                per_comp.append(acc)
                continue
            sel = df[~df["o_dup"] & ~_late(df, window, grace) & _mask(df, comp.filter)].copy()
            sel["_ws"] = sel["ts"] // window * window
            dims = list(metric.dimensions)
            for i, d in enumerate(dims):
                sel[d] = sel[d].map(_label) if d in sel else "none"
                if fold is not None:
                    sel[d] = [fold(metric.name, ws, i, v) for ws, v in zip(sel["_ws"], sel[d],
                                                                          strict=True)]
            if metric.kind == "quantile" or comp.field is not None:
                val = sel[comp.field] - (sel[comp.minus] if comp.minus else 0)
                sel["_v"] = (val * SCALE).round().astype("int64")
            for (*labels, ws), g in sel.groupby([*dims, "_ws"], sort=False):
                key = (tuple(labels), ws)
                if metric.kind == "quantile":
                    acc[key] = (sorted(g["_v"].tolist()), len(g))
                elif comp.field is not None:
                    acc[key] = (int(g["_v"].sum()), len(g))
                elif comp.distinct is not None:
                    acc[key] = (int(g[comp.distinct].nunique()), len(g))
                else:
                    acc[key] = (len(g), len(g))
            per_comp.append(acc)
        keys = set().union(*[set(a) for a in per_comp])
        for labels, ws in keys:
            vals = [a.get((labels, ws), (None, 0)) for a in per_comp]
            count = sum(n for _, n in vals)
            if metric.kind == "ratio":
                num = _comp_value(metric.numerator, vals[0][0])
                den = _comp_value(metric.denominator, vals[1][0])
                value = num / den if den else None
                result[(metric.name, labels, ws)] = (value, num, den, count)
            elif metric.kind == "quantile":
                values = vals[0][0]
                rank = max(1, math.ceil(metric.q * len(values)))
                result[(metric.name, labels, ws)] = (values[rank - 1] / SCALE, None, None, count)
            else:
                result[(metric.name, labels, ws)] = (
                    _comp_value(metric, vals[0][0]), None, None, count)
    return result


def _comp_value(comp: Any, v: Any) -> float:
    if v is None:
        return 0.0
    if comp.field is not None:
        return v / SCALE
    return float(v)
