"""Which Prometheus names a worker exposes, and which the alerting contract adds later.

Rules and boards may only name these: a typo in a query is then a test failure, not an
empty panel in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from shoppulse.agents.detection import DetectorStage
from shoppulse.agents.exporter import Exporter
from shoppulse.streams.config import Config

#: Names of the alerting contract (alerts, notifiers, playbooks), produced by other modules.
CONTRACT = frozenset({
    "shoppulse_alerts_firing", "shoppulse_alert_transitions_total",
    "shoppulse_notifications_total", "shoppulse_notification_failures_total",
    "shoppulse_notification_queue", "shoppulse_broker_up",
    "shoppulse_broker_last_fetch_age_seconds", "shoppulse_playbook_runs_total",
    "shoppulse_playbook_runs_active",
    *(f"shoppulse_playbook_time_to_{s}_seconds_{p}"
      for s in ("detect", "acknowledge", "recover") for p in ("bucket", "sum", "count")),
})

_NAME = re.compile(r"\b(shoppulse_[a-z0-9_]+|shoppulse:[a-z0-9_:]+|faust_[a-z0-9_]+)")


def sample_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can expose, also for families without samples yet."""
    out: set[str] = set()
    for fam in registry.collect():
        if fam.type == "counter":
            out.add(f"{fam.name}_total")
        elif fam.type == "histogram":
            out.update(f"{fam.name}_{s}" for s in ("bucket", "sum", "count"))
        else:
            out.add(fam.name)
    return out


def worker_names(config: Config) -> set[str]:
    """The shoppulse_* names of a worker running ``config`` (same classes as the app)."""
    exporter = Exporter(config)
    DetectorStage(config, {}, exporter.registry)
    return {n for n in sample_names(exporter.registry) if n.startswith("shoppulse_")}


def names_in(exprs: Iterable[str]) -> set[str]:
    """shoppulse_*, shoppulse:* (recording rules) and faust_* names used in PromQL."""
    return {m for e in exprs for m in _NAME.findall(e)}
