"""Metrics from config compiled into per-topic feeds for the local stage.

A *feed* is one component of one metric fed by one topic: a filter, the
dimension fields, the window size and what to accumulate. Compiling once keeps
the per-event loop to attribute reads, a filter call and a dict update.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import msgspec

from shoppulse.detectors.hierarchy import roots
from shoppulse.streams.config import Config, MetricSpec

#: Sums and quantile values are accumulated as integers in millionths, so that
#: partials merge exactly in any order (float addition is not associative).
SCALE = 1_000_000

UNSET = msgspec.UNSET

# How a component accumulates: COUNT events, SUM a scaled field, KEY_DISTINCT
# values of a field that is the topic key (partition-aligned, so per-partition
# counts of new values add up exactly), DISTINCT other values (shipped as
# sets), VALUES of a scaled field (quantiles), SESSION transitions.
COUNT, SUM, KEY_DISTINCT, DISTINCT, VALUES, SESSION = range(6)
INT_OPS = (COUNT, SUM, KEY_DISTINCT, SESSION)

Filter = Callable[[Any], bool]


def new_acc(ops: tuple[int, ...]) -> list[Any]:
    """Accumulator of one series-window: one slot per component, then the event count."""
    return [[] if op in (DISTINCT, VALUES) else 0 for op in ops] + [0]


def acc_for(parts: dict[Any, list[Any]], pkey: Any, ops: tuple[int, ...]) -> list[Any]:
    """The accumulator of ``pkey`` in ``parts``, created on first use."""
    acc = parts.get(pkey)
    if acc is None:
        acc = parts[pkey] = new_acc(ops)
    return acc


def merge_acc(ops: tuple[int, ...], cur: list[Any], acc: list[Any]) -> None:
    """Add accumulator ``acc`` into ``cur`` (same metric): exact in any order."""
    for i, op in enumerate(ops):
        if op == DISTINCT:
            cur[i] = sorted(set(cur[i]).union(acc[i]))
        elif op == VALUES:
            cur[i].extend(acc[i])
        else:
            cur[i] += acc[i]
    cur[-1] += acc[-1]


@dataclass(frozen=True, slots=True)
class Feed:
    metric: int  # index into Plan.metrics
    comp: int  # 0, or 1 for a ratio's denominator
    op: int
    window: float
    filter: Filter
    dims: tuple[str, ...]
    field: str | None = None
    minus: str | None = None
    session: str | None = None  # started | bounced | engaged


@dataclass(frozen=True, slots=True)
class Plan:
    metrics: tuple[MetricSpec, ...]
    ops: tuple[tuple[int, ...], ...]  # per metric, per component
    by_topic: dict[str, tuple[Feed, ...]]
    session_feeds: tuple[Feed, ...]
    windows: tuple[float, ...]  # distinct window sizes
    grace: float
    horizon: float  # longest time state must be remembered: max window + grace
    # metric -> the metric whose destination it shares: a hierarchy's top ancestor, so a
    # window's parent and children close together (detectors pool them children first)
    route: dict[str, str] = dc_field(default_factory=dict)

    def metric_index(self, name: str) -> int:
        return next(i for i, m in enumerate(self.metrics) if m.name == name)


def compile_filter(spec: dict[str, Any]) -> Filter:
    """``{field: value | [values] | {op: value}}`` -> predicate over an event.

    >>> class E:  # any object with attributes
    ...     event_type = "paid"; amount = 12.0; ts = 5.0; promised_ts = 7.0
    >>> compile_filter({"event_type": ["paid", "payment_failed"], "amount": {"gt": 10}})(E())
    True
    >>> compile_filter({"ts": {"le_field": "promised_ts"}})(E())
    True
    >>> compile_filter({"event_type": "placed"})(E())
    False
    """
    checks: list[Filter] = []
    for field, cond in spec.items():
        get = operator.attrgetter(field)
        ops = cond if isinstance(cond, dict) else {"in" if isinstance(cond, list) else "eq": cond}
        for op, arg in ops.items():
            checks.append(_check(get, op, arg))
    if not checks:
        return lambda ev: True
    if len(checks) == 1:
        return checks[0]
    return lambda ev: all(c(ev) for c in checks)


def _check(get: Callable[[Any], Any], op: str, arg: Any) -> Filter:
    if op == "eq":
        return lambda ev: get(ev) == arg
    if op == "ne":
        return lambda ev: get(ev) != arg
    if op in ("in", "not_in"):
        allowed = frozenset(arg if isinstance(arg, list) else [arg])
        if op == "in":
            return lambda ev: get(ev) in allowed
        return lambda ev: get(ev) not in allowed
    if op == "exists":
        return lambda ev: (get(ev) is not UNSET) == bool(arg)
    if op in ("gt", "ge", "lt", "le"):
        cmp = getattr(operator, op)
        return lambda ev: (v := get(ev)) is not UNSET and cmp(v, arg)
    if op in ("gt_field", "ge_field", "lt_field", "le_field"):
        cmp = getattr(operator, op.removesuffix("_field"))
        other = operator.attrgetter(arg)
        return lambda ev: (
            (v := get(ev)) is not UNSET and (w := other(ev)) is not UNSET and cmp(v, w)
        )
    raise ValueError(f"unknown filter operator {op!r}")


def compile_plan(config: Config) -> Plan:
    by_topic: dict[str, list[Feed]] = {t: [] for t in config.topics}
    session_feeds: list[Feed] = []
    ops: list[tuple[int, ...]] = []
    for i, metric in enumerate(config.metrics):
        window = config.window_of(metric)
        comp_ops = []
        for j, comp in enumerate(metric.components()):
            dims = tuple(metric.dimensions)
            if comp.session is not None:
                feed = Feed(i, j, SESSION, config.session_window, lambda ev: True, dims,
                            session=comp.session)
                session_feeds.append(feed)
            else:
                topic = config.topics[comp.topic]  # type: ignore[index]
                if metric.kind == "quantile":
                    op = VALUES
                elif comp.field is not None:
                    op = SUM
                elif comp.distinct is not None:
                    # per-partition counts of keys add up only within one value of each
                    # dimension: where values may fold into "other", ship the keys
                    key_aligned = comp.distinct == topic.key and not any(
                        _may_fold(topic.fields[d], config.cardinality_cap,
                                  config.dimensions_keep.get(d, ())) for d in dims)
                    op = KEY_DISTINCT if key_aligned else DISTINCT
                else:
                    op = COUNT
                feed = Feed(i, j, op, window, compile_filter(comp.filter), dims,
                            field=comp.field or comp.distinct, minus=comp.minus)
                by_topic[comp.topic].append(feed)  # type: ignore[index]
            comp_ops.append(feed.op)
        ops.append(tuple(comp_ops))
    windows = sorted({config.window_of(m) for m in config.metrics} | {config.session_window})
    return Plan(
        metrics=tuple(config.metrics),
        ops=tuple(ops),
        by_topic={t: tuple(f) for t, f in by_topic.items()},
        session_feeds=tuple(session_feeds),
        windows=tuple(windows),
        grace=config.windows.grace,
        horizon=max(windows) + config.windows.grace,
        route={m: top for m, (top, _) in roots(config.hierarchy).items()},
    )


def _may_fold(field: Any, cap: int, listed: Any) -> bool:
    """Whether a dimension can have more values than the cap (then some fold into other)."""
    if field.type == "boolean":
        return False
    return field.enum is None or len({str(v) for v in field.enum} | set(listed)) > cap
