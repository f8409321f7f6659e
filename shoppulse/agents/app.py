"""The Faust application: ingest service, global stage agent, tables, /metrics.

Reads like the data flow: input topics -> :class:`Ingest` (batched, plain
Python) -> ``<app>.partials`` -> ``combine`` agent over the ``windows`` and
``progress`` tables -> ``<app>.metrics`` (MetricPoint) -> gauges. Later stages
(detectors, alerting) are agents over the internal topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors

from shoppulse.agents.alerts import AlertsRuntime, attach_alerts
from shoppulse.agents.cardinality import cardinality_of
from shoppulse.agents.contiguous import Contiguous
from shoppulse.agents.detection import DetectorStage
from shoppulse.agents.exporter import Exporter
from shoppulse.agents.global_stage import GlobalStage
from shoppulse.agents.ingest import Ingest
from shoppulse.agents.notify import attach_notify
from shoppulse.agents.plan import Plan, compile_plan
from shoppulse.agents.playbooks import wire_playbooks
from shoppulse.agents.status import attach_status
from shoppulse.agents.tables import (
    BATCH_EVENTS,
    BATCH_WAIT,
    AckAfterWrites,
    DurableTable,
    Staged,
)
from shoppulse.agents.transport import App
from shoppulse.streams.config import Config
from shoppulse.streams.records import MetricPoint
from shoppulse.streams.topics import INTERNAL_PARTITIONS

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a worker process holds; handy for tests and the demo view."""

    app: faust.App
    config: Config
    plan: Plan
    exporter: Exporter
    ingest: Ingest
    stage: GlobalStage
    detection: DetectorStage
    notify: Any = None  # the notifiers' Dispatcher, when config has receivers
    alerts: AlertsRuntime | None = None


def faust_settings(config: Config, bootstrap: str, web_port: int) -> dict[str, Any]:
    """Faust settings; rebalance and session timeouts of seconds keep group joins fast."""
    credentials = config.kafka.faust_credentials()
    return {
        **({"broker_credentials": credentials} if credentials is not None else {}),
        "broker": f"kafka://{bootstrap}",
        "store": "memory://",
        "web_port": web_port,
        "web_bind": config.web_bind,
        "web_host": "127.0.0.1",
        "topic_partitions": INTERNAL_PARTITIONS["partials"],
        "topic_replication_factor": 1,
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 10.0,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
        "key_serializer": "json",  # table keys are str; our topics say raw explicitly
        "value_serializer": "raw",
        "table_cleanup_interval": 3600.0,
        "broker_commit_interval": 1.0,
        "producer_linger": 0.005,
        "stream_wait_empty": True,  # a rebalance waits for the event in hand: its table
        # writes must land before the changelog is read back (memory store)
        "web_transport": "tcp://",
        "Table": DurableTable,  # agents wait for their table writes before the next event
    }


def create_app(config: Config, bootstrap: str, *, web_port: int | None = None) -> Runtime:
    n_dest = INTERNAL_PARTITIONS["partials"]
    n_metrics = INTERNAL_PARTITIONS["metrics"]
    port = web_port if web_port is not None else config.web_port
    app = App(config.app, **faust_settings(config, bootstrap, port))
    plan = compile_plan(config)
    exporter = Exporter(config)
    partials = app.topic(config.topic_name("partials"), partitions=n_dest,
                         key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(config.topic_name("metrics"),
                              partitions=INTERNAL_PARTITIONS["metrics"],
                              key_serializer="raw", value_serializer="raw")
    anomalies_topic = app.topic(config.topic_name("anomalies"),
                                partitions=INTERNAL_PARTITIONS["anomalies"],
                                key_serializer="raw", value_serializer="raw")
    alerts_topic = app.topic(config.topic_name("alerts"), partitions=INTERNAL_PARTITIONS["alerts"],
                             key_serializer="raw", value_serializer="raw")
    models = app.Table("models", partitions=INTERNAL_PARTITIONS["metrics"], key_type=str,
                       value_type=bytes)
    detection = DetectorStage(config, models, exporter.registry)
    status = attach_status(app, config)  # the read-only page at / and its headline series
    windows = app.Table("windows", partitions=n_dest, key_type=str, value_type=bytes)
    progress = app.Table("progress", partitions=n_dest, key_type=str, value_type=bytes)
    sources = [f"{t}:{p}" for t, spec in config.topics.items() for p in range(spec.partitions)]
    # the combine agent's state waits in these views until the points it closed are acked
    staged_windows, staged_progress = Staged(windows), Staged(progress)
    stage = GlobalStage(plan, staged_windows, staged_progress, sources,
                        cardinality_of(config, plan))
    ingest = Ingest(config, plan, bootstrap, exporter, n_dest=n_dest, loop=app.loop)
    # the agents' notes of the last offset they started live next to their state
    kafka = config.kafka.client_options()
    partials_in = Contiguous(bootstrap, staged_progress, exporter.refetched, kafka,
                             loop=app.loop)
    points_in = Contiguous(bootstrap, models, exporter.refetched, kafka, loop=app.loop)
    app._extra_services.extend([ingest, partials_in, points_in])  # started and stopped with the app

    @app.agent(partials, name="combine")
    async def combine(stream: faust.StreamT) -> None:
        acks = AckAfterWrites(stream, windows, progress)
        try:
            await combine_batches(stream, acks)
        finally:
            acks.stop()

    async def combine_batches(stream: faust.StreamT, acks: AckAfterWrites) -> None:
        async for events in stream.take_events(BATCH_EVENTS, within=BATCH_WAIT):
            acks.hold(events)
            closed: list[tuple[int, list[MetricPoint]]] = []
            sends: list[Any] = []
            for event in events:
                staged_windows.partition = staged_progress.partition = event.message.partition
                async for rec in partials_in.records(event):
                    await combine_one(rec.partition, rec.value, closed, sends)
            # the batch's points acknowledged first, then its state (windows marked emitted)
            # handed to the tables: one round trip for every window the batch closed, and
            # a crash before the state lands replays the batch, which emits them again
            await asyncio.gather(*sends)
            now = time.time()
            for dest, points in closed:
                for p in points:
                    exporter.observe(p, dest)
                    exporter.close_delay.observe(max(0.0, now - p.window_end - plan.grace))
            staged_windows.flush()
            staged_progress.flush()
            acks.done(events)  # Faust may commit these events once those writes are acked

    async def combine_one(dest: int, value: bytes, closed: list[tuple[int, list[MetricPoint]]],
                          sends: list[Any]) -> None:
        result = stage.apply(dest, orjson.loads(value))
        if result.replayed:
            exporter.replayed.inc(result.replayed)
        for topic, n in (result.late_topics or {}).items():
            exporter.late.labels(topic).inc(n)
        for wkey, points in stage.close_ready(dest):
            sends += [await metrics_topic.send(key=p.series.encode(), value=p.dumps(),
                                               partition=part)
                      for part, p in detection.route(points, n_metrics)]
            closed.append((dest, points))
            stage.mark_emitted(wkey)  # staged: reaches the table after the points' acks

    @app.agent(metrics_topic, name="detect")
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async for rec in points_in.records(event):
                verdict = detection.judge(MetricPoint.loads(rec.value))
                if verdict is None:
                    continue  # a re-emitted window: learned once already
                await anomalies_topic.send(key=rec.key, value=verdict.dumps())
                detection.observe(verdict, rec.partition)
                status.observe(verdict, rec.partition)
                # no wait for the model write here: a crash can at worst cost a series one
                # learning step (the verdict is out), and waiting for each point slows it down

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == partials.get_topic_name():
                exporter.forget(tp.partition)
            elif tp.topic == metrics_topic.get_topic_name():
                detection.forget(tp.partition)
                status.forget(tp.partition)

    # no rules, no alert stage (and none of its cost: ``bench throughput --with-alerts``)
    alerts = (attach_alerts(app, config, bootstrap, exporter, metrics_topic, anomalies_topic)
              if config.rules else None)
    notify = attach_notify(app, config, bootstrap, exporter.registry, exporter.refetched)
    if config.playbooks.enabled:
        wire_playbooks(app, config, bootstrap, exporter.registry, exporter.refetched,
                       alerts_topic, anomalies_topic)

    setup_prometheus_sensors(app, pattern="/metrics", registry=exporter.registry,
                             name_prefix="faust")
    exporter.rename_faust_runtime(app.monitor)
    return Runtime(app=app, config=config, plan=plan, exporter=exporter, ingest=ingest,
                   stage=stage, detection=detection, notify=notify, alerts=alerts)
