"""The detector stage: one model per metric series, kept in a table, scored per point.

Plain logic over a dict-like table (a Faust table in the worker): the model of
a series is stored pickled with its format version, next to the window it last
saw. A point for a window already seen (a re-emission after a crash) is
skipped, so every window is learned once. A model that fails to load is rebuilt
and the event logged and counted, never a crash.

Each metric's detector is told the metric's kind (``family``, from
:func:`~shoppulse.detectors.default.family_for`) unless the config sets one; every
metric's ``detector:`` is built once when the stage starts, so a bad kind or parameter
stops the worker at start, naming the metric, not at its first point.

Hierarchy (config ``hierarchy: {child metric: parent metric}``), live: the ingest routes
every metric of a hierarchy to its top ancestor's destination (``Plan.route``), so a
window's parent and children close together; :meth:`DetectorStage.route` sends them to
one metrics partition (chosen by that ancestor), deepest first, and the ``detect`` agent
judges them in that order with :meth:`DetectorStage.judge`: a child's verdict is added to
its parent's :class:`~shoppulse.detectors.hierarchy.Pool`, and the parent's verdict, which
comes after all its children of the window, gets the contributors and loses its alarm if
a child carries it. Pools live in memory and are written to the table (``pool|<parent
series>``) with each parent verdict; after a crash the children judged since then are
not re-judged (their models have learned the window), which can only thin the next
window's contributors. :meth:`DetectorStage.score_window` does the same for a list of
points (backtests, tests).
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import struct
import zlib
from collections.abc import MutableMapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shoppulse.detectors import ModelFormatError, dump_detector, load_detector, make_detector
from shoppulse.detectors.default import family_for
from shoppulse.detectors.hierarchy import Pool, roots
from shoppulse.streams.config import Config, MetricSpec
from shoppulse.streams.records import MetricPoint, Verdict, series_key

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">d")  # last window_start learned, before the model bytes


class DetectorStage:
    def __init__(self, config: Config, models: MutableMapping[str, bytes],
                 registry: CollectorRegistry) -> None:
        self.config = config
        self.models = models
        self.specs = {m.name: m for m in config.metrics}
        dims = sorted({d for m in config.metrics for d in m.dimensions})
        self.label_names = ["metric", *dims]
        r = registry
        self.score_g = Gauge("shoppulse_anomaly_score", "Anomaly score of the last window (0..1)",
                             self.label_names, registry=r)
        self.expected_g = Gauge("shoppulse_expected_value", "Expected value of the last window",
                                self.label_names, registry=r)
        self.lower_g = Gauge("shoppulse_expected_lower", "Lower bound of the expected band",
                             self.label_names, registry=r)
        self.upper_g = Gauge("shoppulse_expected_upper", "Upper bound of the expected band",
                             self.label_names, registry=r)
        self.anomalous = Counter("shoppulse_anomalous_points", "Points judged anomalous",
                                 ["metric"], registry=r)
        self.rebuilt = Counter("shoppulse_detector_models_rebuilt",
                               "Stored models that could not be loaded and were rebuilt",
                               registry=r)
        self.owner: dict[int, set[tuple[str, ...]]] = {}
        self.parents = set(config.hierarchy.values())
        self.roots = roots(config.hierarchy)
        self.pools: dict[str, Pool] = {}  # parent series -> its pool (table: pool|<series>)
        for spec in config.metrics:  # a bad detector config fails here, naming the metric
            kind, params = self.params_for(spec.name)
            try:
                make_detector(kind, **params)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"metrics {spec.name}: detector: {exc}") from None

    def params_for(self, metric: str) -> tuple[str, dict[str, Any]]:
        """Detector kind and parameters: config ``detectors`` defaults, then the metric's;
        the default kind is told the metric's family unless the config gives one."""
        spec = self.specs[metric]
        merged = {**self.config.detectors, **spec.detector}
        kind = merged.pop("kind", "default")
        merged.setdefault("window", self.config.window_of(spec))
        if kind == "default":
            merged.setdefault("family", metric_family(spec))
        return kind, merged

    def score(self, point: MetricPoint) -> Verdict | None:
        """Score then learn; ``None`` for a window this series has already learned."""
        if point.metric not in self.specs:
            return None
        key = point.series
        raw = self.models.get(key)
        detector, last = None, -math.inf
        if raw is not None:
            try:
                (last,) = _HEADER.unpack_from(raw)
                detector = load_detector(raw[_HEADER.size:])
            except (ModelFormatError, struct.error) as exc:
                log.warning("detector model of %s unusable (%s): rebuilt", key, exc)
                self.rebuilt.inc()
                detector, last = None, -math.inf
        if point.window_start <= last:
            return None
        if detector is None:
            kind, params = self.params_for(point.metric)
            detector = make_detector(kind, **params)
        value = math.nan if point.value is None else point.value
        verdict = detector.update(point.window_start, value, numerator=point.numerator,
                                  denominator=point.denominator)
        self.models[key] = _HEADER.pack(point.window_start) + dump_detector(detector)
        return Verdict(
            score=verdict.score, expected=verdict.expected, lower=verdict.lower,
            upper=verdict.upper, anomalous=verdict.anomalous, warming_up=verdict.warming_up,
            alarming=verdict.alarming,
            metric=point.metric, labels=point.labels, window_start=point.window_start,
            window_end=point.window_end, value=point.value, detector=verdict.detector)

    def route(self, points: Sequence[MetricPoint], partitions: int
              ) -> list[tuple[int, MetricPoint]]:
        """(metrics partition, point) for a closed window's points, deepest first: every
        point of a hierarchy goes to the partition of its top ancestor, so the ``detect``
        agent judges the children of a window before their parent. Other points keep the
        partition of their series."""
        out = []
        for p in points:
            top, depth = self.roots.get(p.metric, (None, 0))
            name = p.series if top is None else top
            out.append((-depth, zlib.crc32(name.encode()) % partitions, p))
        out.sort(key=lambda r: r[0])  # stable: the stage's order within a level
        return [(part, p) for _, part, p in out]

    def judge(self, point: MetricPoint) -> Verdict | None:
        """:meth:`score`, then the hierarchy: a child's verdict goes into its parent's pool,
        a parent's verdict comes out of its pool with contributors (and without its alarm
        when a child carries the incident). Children must come before their parent."""
        v = self.score(point)
        if v is None:
            return None
        parent = self.config.hierarchy.get(point.metric)
        if parent is not None:
            self._pool(self._parent_key(parent, point.labels)).child(
                point.labels, v, numerator=point.numerator, denominator=point.denominator)
        if point.metric in self.parents:
            pool = self._pool(point.series)
            v = pool.parent(v)
            self.models["pool|" + point.series] = pickle.dumps(pool, protocol=5)
        return v

    def score_window(self, points: list[MetricPoint]) -> list[Verdict]:
        """Judge the points of one closed window in :meth:`route` order (children first);
        the verdicts in the order of ``points`` (re-emitted windows are left out)."""
        index = {id(p): i for i, p in enumerate(points)}
        verdicts: dict[int, Verdict] = {}
        for _, p in self.route(points, 1):
            v = self.judge(p)
            if v is not None:
                verdicts[index[id(p)]] = v
        return [verdicts[i] for i in sorted(verdicts)]

    def _pool(self, key: str) -> Pool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = self._load_pool(key)
        return pool

    def _parent_key(self, parent: str, labels: dict[str, str]) -> str:
        dims = self.specs[parent].dimensions
        return series_key(parent, {d: labels[d] for d in dims if d in labels})

    def _load_pool(self, key: str) -> Pool:
        raw = self.models.get("pool|" + key)
        if raw is not None:
            try:
                pool = pickle.loads(raw)
                if isinstance(pool, Pool):
                    return pool
            except Exception as exc:  # unusable state: start a new run, never crash
                log.warning("hierarchy pool of %s unusable (%s): reset", key, exc)
        return Pool()

    def observe(self, verdict: Verdict, partition: int) -> None:
        labels = self._labels(verdict)
        for gauge, value in ((self.score_g, verdict.score), (self.expected_g, verdict.expected),
                             (self.lower_g, verdict.lower), (self.upper_g, verdict.upper)):
            gauge.labels(*labels).set(math.nan if value is None else value)
        if verdict.anomalous:
            self.anomalous.labels(verdict.metric).inc()
        self.owner.setdefault(partition, set()).add(labels)

    def forget(self, partition: int) -> None:
        self.pools.clear()  # another worker may judge them now: reload from the table
        for labels in self.owner.pop(partition, set()):
            for gauge in (self.score_g, self.expected_g, self.lower_g, self.upper_g):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)

    def _labels(self, verdict: Verdict) -> tuple[str, ...]:
        return (verdict.metric, *(verdict.labels.get(d, "") for d in self.label_names[1:]))


def metric_family(spec: MetricSpec) -> str:
    """The detector family of a metric from its config kind (a ratio summing a field in
    its numerator is an average)."""
    num = spec.numerator
    return family_for(spec.kind, sum_numerator=num is not None and num.field is not None)
