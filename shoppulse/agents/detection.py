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

Hierarchy (config ``hierarchy: {child metric: parent metric}``):
:meth:`DetectorStage.score_window` scores the points of one closed window together,
children before parents, and passes them through the parent's
:class:`~shoppulse.detectors.hierarchy.Pool` (contributors, one alarm at the most
specific level). It needs every point of the window in one place; :meth:`score` (one
point, as the Faust agent keyed by series calls it) does no pooling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import struct
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shoppulse.detectors import ModelFormatError, dump_detector, load_detector, make_detector
from shoppulse.detectors.default import family_for
from shoppulse.detectors.hierarchy import Pool
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
            metric=point.metric, labels=point.labels, window_start=point.window_start,
            window_end=point.window_end, value=point.value, detector=verdict.detector)

    def score_window(self, points: list[MetricPoint]) -> list[Verdict]:
        """Score the points of one closed window together: children first, then parents
        with their :class:`Pool` (contributors; a child alarming clears the parent's
        alarm). Returns the verdicts in the order of ``points`` (re-emitted windows are
        left out)."""
        parents = set(self.config.hierarchy.values())
        order = sorted(range(len(points)), key=lambda i: points[i].metric in parents)
        verdicts: dict[int, Verdict] = {}
        pools: dict[str, Pool] = {}
        for i in order:
            p = points[i]
            v = self.score(p)
            if v is None:
                continue
            parent = self.config.hierarchy.get(p.metric)
            if parent is not None:
                key = self._parent_key(parent, p.labels)
                pool = pools.get(key) or pools.setdefault(key, self._load_pool(key))
                pool.child(p.labels, v, numerator=p.numerator, denominator=p.denominator)
            if p.metric in parents:
                pool = pools.get(p.series) or pools.setdefault(p.series,
                                                                self._load_pool(p.series))
                v = pool.parent(v)
            verdicts[i] = v
        for key, pool in pools.items():
            self.models["pool|" + key] = pickle.dumps(pool, protocol=5)
        return [verdicts[i] for i in range(len(points)) if i in verdicts]

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
