"""The alert agents: points and verdicts through rules and lifecycle to ``<app>.alerts``.

Thin Faust glue over :class:`~shoppulse.alerting.engine.AlertEngine`. Two agents, one on
``<app>.metrics`` (threshold, change, absence rules) and one on ``<app>.anomalies``
(anomaly rules), each with its state in its own table keyed by fingerprint, and each
reading its input through :class:`Contiguous` so that no offset is skipped.

Exactly one record per transition, also across SIGKILL and rebalance:

* the lifecycle ignores samples it has already judged, so a replayed point or verdict
  changes nothing once its state write is in the changelog (Faust may commit a record
  only once that write is acknowledged: :class:`~shoppulse.agents.tables.AckAfterWrites`);
* a crash between sending a transition and that write replays the record against the
  old state, which decides the same transition again. Each transition goes to the
  alerts partition numbered like its input partition (a fingerprint always comes from
  the same one), and the agent reads that partition back once per assignment: a
  transition already there is not sent again.

The web views ``GET /alerts`` and ``GET /alerts/{fingerprint}/timeline`` answer from
the alerts topic itself (all partitions), so any worker answers for every alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from mode import Service
from prometheus_client import Gauge

from shoppulse.agents.contiguous import Contiguous
from shoppulse.agents.exporter import Exporter
from shoppulse.agents.ingest import dest_of
from shoppulse.agents.tables import (
    BATCH_EVENTS,
    BATCH_WAIT,
    AckAfterWrites,
    Staged,
    writing_to,
)
from shoppulse.alerting.audit import AlertLog
from shoppulse.alerting.engine import AlertEngine
from shoppulse.streams.config import Config
from shoppulse.streams.deadletter import deadletter_headers
from shoppulse.streams.offsets import log_end_offsets, read_range
from shoppulse.streams.records import Alert, MetricPoint, Verdict
from shoppulse.streams.topics import INTERNAL_PARTITIONS

log = logging.getLogger(__name__)


class AlertsTopicReader(Service):
    """Reads ``<app>.alerts`` directly: the sent transitions of a partition (once per
    assignment) and, for the web views, every record so far."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._sent: dict[int, dict[str, set[tuple[int, str]]]] = {}
        self.audit = AlertLog()
        self._audit_pos = dict.fromkeys(range(partitions), 0)

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                            enable_auto_commit=False)
            await self._reader.start()
        return self._reader

    async def _read(self, partition: int, start: int,
                    stall: float | None = None) -> tuple[list[Alert], int]:
        """Records from ``start`` to the end; ``stall``: give up after that long without
        progress (the audit may; the sent transitions must be read whole)."""
        reader = await self._consumer()
        tp = TopicPartition(self.topic, partition)
        end = (await log_end_offsets(reader, [tp]))[tp]
        out = []
        pos = start
        async for rec in read_range(reader, tp, start, end, stall=stall):
            pos = rec.offset + 1
            try:
                out.append(Alert.loads(rec.value))
            except (TypeError, ValueError) as exc:
                log.warning("%s[%d]@%d is not an Alert (%s): skipped", self.topic,
                            partition, rec.offset, exc)
        return out, pos if stall is not None else end

    async def sent(self, partition: int) -> dict[str, set[tuple[int, str]]]:
        """(episode, state) already on the partition, per fingerprint (latest episode)."""
        async with self._lock:
            got = self._sent.get(partition)
            if got is None:
                records, _ = await self._read(partition, 0)
                got = self._sent[partition] = {}
                for a in records:
                    remember(got, a)
            return got

    def forget(self, partition: int) -> None:
        self._sent.pop(partition, None)

    async def refreshed(self) -> AlertLog:
        async with self._lock:
            for p in range(self.partitions):
                records, end = await self._read(p, self._audit_pos[p], stall=5.0)
                for a in records:
                    self.audit.add(a)
                self._audit_pos[p] = end
            return self.audit

    async def on_stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()


def remember(sent: dict[str, set[tuple[int, str]]], a: Alert) -> None:
    """Keep only the newest episode per fingerprint: older ones are never decided again."""
    have = sent.get(a.fingerprint)
    if have and max(have)[0] > a.episode:
        return
    if have and max(have)[0] < a.episode:
        have.clear()
    sent.setdefault(a.fingerprint, set()).add((a.episode, a.state))


@dataclass
class AlertsRuntime:
    points: AlertEngine
    verdicts: AlertEngine
    reader: AlertsTopicReader

    def firing_counts(self) -> dict[tuple[str, str], int]:
        counts = self.points.firing_counts()
        for k, n in self.verdicts.firing_counts().items():
            counts[k] = counts.get(k, 0) + n
        return counts


def attach_alerts(app: faust.App, config: Config, bootstrap: str, exporter: Exporter,
                  metrics_topic: Any, anomalies_topic: Any) -> AlertsRuntime:
    """Tables, agents and web views of the alert stage, added to ``app``."""
    n = INTERNAL_PARTITIONS["alerts"]
    alerts_topic = app.topic(config.topic_name("alerts"), partitions=n,
                             key_serializer="raw", value_serializer="raw")
    deadletter = app.topic(config.topic_name("deadletter"), key_serializer="raw",
                           value_serializer="raw")
    on_point_table = app.Table("alert_points", partitions=INTERNAL_PARTITIONS["metrics"],
                               key_type=str, value_type=bytes)
    on_verdict_table = app.Table("alert_verdicts",
                                 partitions=INTERNAL_PARTITIONS["anomalies"],
                                 key_type=str, value_type=bytes)
    staged_points, staged_verdicts = Staged(on_point_table), Staged(on_verdict_table)
    on_points = AlertEngine(config, staged_points, kinds={"threshold", "change", "absence"},
                            partitions=INTERNAL_PARTITIONS["metrics"],
                            lane=lambda metric: dest_of(metric, INTERNAL_PARTITIONS["partials"]))
    on_verdicts = AlertEngine(config, staged_verdicts, kinds={"anomaly"},
                              partitions=INTERNAL_PARTITIONS["anomalies"])
    reader = AlertsTopicReader(bootstrap, alerts_topic.get_topic_name(), n, loop=app.loop)
    points_in = Contiguous(bootstrap, on_point_table, exporter.refetched, loop=app.loop)
    verdicts_in = Contiguous(bootstrap, on_verdict_table, exporter.refetched, loop=app.loop)
    app._extra_services.extend([reader, points_in, verdicts_in])
    rt = AlertsRuntime(on_points, on_verdicts, reader)
    exporter.alerts_firing_sources.append(rt.firing_counts)
    clock = Gauge("shoppulse_alert_clock_seconds", "Newest window end the alert stage has "
                  "judged (event time): how far behind the points it runs", ["input"],
                  registry=exporter.registry)
    clock.labels("points").set_function(lambda: on_points.clock)
    clock.labels("verdicts").set_function(lambda: on_verdicts.clock)

    async def publish(partition: int, alerts: Iterable[Alert]) -> list[Any]:
        """Send the transitions not already on the topic; returns their ack futures."""
        futures = []
        for a in alerts:
            sent = await reader.sent(partition)
            if (a.episode, a.state) in sent.get(a.fingerprint, ()):
                log.info("alert %s %s #%d already on the topic: not sent again", a.rule,
                         a.state, a.episode)
                continue
            futures.append(await alerts_topic.send(key=a.fingerprint.encode(),
                                                   value=a.dumps(), partition=partition))
            remember(sent, a)
            exporter.alert_transitions.labels(a.rule, a.state).inc()
            log.info("alert %s %s #%d %s value=%s", a.rule, a.state, a.episode, a.labels,
                     a.value)
        return futures

    async def dead(rec: Any, exc: Exception) -> None:
        exporter.alert_inputs_invalid.labels(rec.topic).inc()
        log.warning("%s[%d]@%d is not a valid record (%s): -> %s", rec.topic, rec.partition,
                    rec.offset, exc, deadletter.get_topic_name())
        headers = deadletter_headers(rec.topic, rec.partition, rec.offset, "invalid_record",
                                     str(exc))
        await deadletter.send(key=rec.key, value=rec.value or b"", headers=headers)

    async def judge(stream: faust.StreamT, reader: Contiguous, table: Any, staged: Staged,
                    read: Callable[[Any], list[Alert]]) -> None:
        """Each record in offset order judged and its transitions published; per batch of
        events the sends acknowledged, then the state handed to the table, and the batch
        acked once that is written (in the background: the next batch does not wait).
        Sends before state: a crash between the two replays the records, whose
        transitions are then found on the topic (see :class:`Staged`)."""
        acks = AckAfterWrites(stream, table)
        try:
            async for events in stream.take_events(BATCH_EVENTS, within=BATCH_WAIT):
                acks.hold(events)
                sends: list[Any] = []
                for event in events:
                    with writing_to(event.message.partition, table):
                        async for rec in reader.records(event):
                            staged.partition = rec.partition
                            try:
                                alerts = read(rec)
                            except (TypeError, ValueError, KeyError,
                                    orjson.JSONDecodeError) as exc:
                                await dead(rec, exc)
                                continue
                            sends += await publish(rec.partition, alerts)
                if sends:
                    await asyncio.gather(*sends)
                staged.flush()
                acks.done(events)
        finally:
            acks.stop()

    @app.agent(metrics_topic, name="alert_points")
    async def alert_points(stream: faust.StreamT) -> None:
        await judge(stream, points_in, on_point_table, staged_points,
                    lambda rec: on_points.on_point(MetricPoint.loads(rec.value), rec.partition))

    @app.agent(anomalies_topic, name="alert_verdicts")
    async def alert_verdicts(stream: faust.StreamT) -> None:
        await judge(stream, verdicts_in, on_verdict_table, staged_verdicts,
                    lambda rec: on_verdicts.on_verdict(Verdict.loads(rec.value), rec.partition))

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == metrics_topic.get_topic_name():
                on_points.forget(tp.partition)
                reader.forget(tp.partition)
            elif tp.topic == anomalies_topic.get_topic_name():
                on_verdicts.forget(tp.partition)
                reader.forget(tp.partition)

    @app.page("/alerts")
    class AlertsView(faust.web.View):
        """Current alerts, newest transition per fingerprint (``?resolved=0``: active)."""

        async def get(self, request: Any) -> Any:
            audit = await reader.refreshed()
            resolved = request.query.get("resolved", "1") not in ("0", "false", "no")
            return self.json({"alerts": audit.current(resolved=resolved)})

    @app.page("/alerts/{fingerprint}/timeline")
    class TimelineView(faust.web.View):
        """Every transition of one alert, plus what hooks add (deliveries)."""

        async def get(self, request: Any, fingerprint: str) -> Any:
            audit = await reader.refreshed()
            got = audit.timeline(fingerprint)
            if got is None:
                return self.json({"error": f"no alert {fingerprint}"}, status=404)
            return self.json(got)

    return rt
