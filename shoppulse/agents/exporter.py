"""Prometheus exporter: metric gauges and pipeline counters on the worker's /metrics.

One registry per worker (never the global one), so tests build their own and
read it with ``registry.get_sample_value``. Names follow Prometheus conventions,
enforced in code: metric gauges are named by :attr:`MetricSpec.prometheus_name`,
counters end in ``_total``, durations in ``_seconds``. Label sets stay bounded:
``topic`` and ``reason`` take values from config and a fixed list, metric labels
are the metric's dimensions, capped by ``cardinality_cap``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shoppulse.streams.config import Config
from shoppulse.streams.records import MetricPoint

# ``*_created`` series double the scrape for no operator value
disable_created_metrics()


class Exporter:
    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("shoppulse_events", "Valid events consumed", ["topic"], registry=r)
        self.invalid = Counter(
            "shoppulse_events_invalid", "Events rejected to the dead-letter topic",
            ["topic", "reason"], registry=r)
        self.late = Counter(
            "shoppulse_late_events", "Events later than their window's end + grace, dropped",
            ["topic"], registry=r)
        self.duplicates = Counter(
            "shoppulse_duplicate_events", "Events repeating an earlier event_id and time, dropped",
            ["topic"], registry=r)
        self.points = Counter(
            "shoppulse_metric_points", "MetricPoints emitted on window close", ["metric"],
            registry=r)
        self.replayed = Counter(
            "shoppulse_partials_replayed", "Partial sections dropped as already applied",
            registry=r)
        self.refetched = Counter(
            "shoppulse_skipped_records_refetched",
            "Records Faust skipped after a rebalance, read directly by the agent",
            ["topic"], registry=r)
        self.close_delay = Histogram(
            "shoppulse_window_close_delay_seconds",
            "Wall-clock time from a window's end + grace to its emission",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        #: ``(topic, partition, lag)`` of partitions whose high watermark is fresh; read
        #: at scrape time, so a lag that went stale in an outage is absent, not 0
        self.lag_source: Callable[[], Iterable[tuple[str, int, float]]] = tuple
        r.register(_LagCollector(self))
        # computed at scrape time by the ingest (set_function), so never stale
        self.broker_up = Gauge(
            "shoppulse_broker_up", "1 while the broker answers this worker's fetches, else 0",
            registry=r)
        self.broker_fetch_age = Gauge(
            "shoppulse_broker_last_fetch_age_seconds",
            "Seconds since the broker last answered a fetch of this worker", registry=r)
        self.alert_transitions = Counter(
            "shoppulse_alert_transitions", "Alert lifecycle transitions written to the alerts "
            "topic", ["rule", "state"], registry=r)
        self.alert_inputs_invalid = Counter(
            "shoppulse_alert_inputs_invalid", "Points or verdicts the alert stage could not "
            "read, sent to the dead-letter topic", ["topic"], registry=r)
        #: callables giving {(rule, severity): n} of alerts firing on this worker
        self.alerts_firing_sources: list[Callable[[], dict[tuple[str, str], int]]] = []
        r.register(_AlertsFiring(self.alerts_firing_sources,
                                 [(x.name, x.severity) for x in config.rules]))
        # ``_total`` metrics are counters that grow by each closed window's count (so
        # ``increase()`` over a window is its value); all others are gauges holding the
        # value of the last closed window.
        self.gauges: dict[str, Gauge | Counter] = {}
        self.counts: set[str] = set()
        for m in config.metrics:
            if m.prometheus_unit == "total":
                self.counts.add(m.name)
                self.gauges[m.name] = Counter(
                    m.prometheus_name.removesuffix("_total"),
                    m.help or f"{m.kind} metric {m.name}, summed over closed windows",
                    m.dimensions, registry=r)
            else:
                self.gauges[m.name] = Gauge(
                    m.prometheus_name, m.help or f"{m.kind} metric {m.name}, last closed window",
                    m.dimensions, registry=r)
        self.owner: dict[int, set[tuple[str, tuple[str, ...]]]] = {}

    def observe(self, point: MetricPoint, dest: int) -> None:
        """Set the series gauge to the point's value; remember which partition carries it."""
        gauge = self.gauges.get(point.metric)
        if gauge is None:
            return
        spec_labels = tuple(point.labels.values())
        child = gauge.labels(*spec_labels) if spec_labels else gauge
        if point.metric in self.counts:
            child.inc(point.value or 0.0)
        else:
            child.set(math.nan if point.value is None else point.value)
        self.owner.setdefault(dest, set()).add((point.metric, spec_labels))
        self.points.labels(point.metric).inc()

    def rename_faust_runtime(self, monitor: object) -> None:
        """Faust's ``*_events_runtime_ms`` fails promtool's unit lint: serve it in seconds."""
        metrics = monitor._metrics  # type: ignore[attr-defined]
        self.registry.unregister(metrics.events_runtime_latency)
        seconds = Histogram("faust_events_runtime_seconds", "Faust event processing time",
                            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
                            registry=self.registry)
        monitor._metrics = metrics._replace(  # type: ignore[attr-defined]
            events_runtime_latency=_MillisToSeconds(seconds))

    def forget(self, dest: int) -> None:
        """The partition moved to another worker: its series leave this /metrics."""
        for metric, labels in self.owner.pop(dest, set()):
            if labels:
                with contextlib.suppress(KeyError):
                    self.gauges[metric].remove(*labels)


class _LagCollector(Collector):
    """``shoppulse_consumer_lag_messages{topic,partition}`` from the exporter's lag source."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "shoppulse_consumer_lag_messages",
            "Input messages not yet consumed by this worker (absent while the broker is lost)",
            labels=["topic", "partition"])
        for topic, partition, lag in self.exporter.lag_source():
            family.add_metric([topic, str(partition)], lag)
        yield family


class _MillisToSeconds:
    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def observe(self, ms: float) -> None:
        self.histogram.observe(ms / 1000.0)


class _AlertsFiring:
    """``shoppulse_alerts_firing{rule,severity}``, counted from the lifecycle state at
    scrape time (so a restart or rebalance cannot leave it off by the alerts it missed)."""

    def __init__(self, sources: list[Callable[[], dict[tuple[str, str], int]]],
                 rules: list[tuple[str, str]]) -> None:
        self.sources = sources
        self.rules = rules

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("shoppulse_alerts_firing", "Alerts firing on this worker",
                              labels=["rule", "severity"])
        counts = dict.fromkeys(self.rules, 0)
        for source in self.sources:
            for key, n in source().items():
                counts[key] = counts.get(key, 0) + n
        for (rule, severity), n in sorted(counts.items()):
            g.add_metric([rule, severity], n)
        yield g

    def describe(self) -> list[GaugeMetricFamily]:
        return []
