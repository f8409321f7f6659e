"""The detector stage: one model per metric series, kept in a table, scored per point.

Plain logic over a dict-like table (a Faust table in the worker): the model of
a series is stored pickled with its format version, next to the window it last
saw. A point for a window already seen (a re-emission after a crash) is
skipped, so every window is learned once. A model that fails to load is rebuilt
and the event logged and counted, never a crash.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shoppulse.detectors import ModelFormatError, dump_detector, load_detector, make_detector
from shoppulse.streams.config import Config
from shoppulse.streams.records import MetricPoint, Verdict

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

    def params_for(self, metric: str) -> tuple[str, dict[str, Any]]:
        """Detector kind and parameters: config ``detectors`` defaults, then the metric's."""
        spec = self.specs[metric]
        merged = {**self.config.detectors, **spec.detector}
        kind = merged.pop("kind", "default")
        merged.setdefault("window", self.config.window_of(spec))
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
