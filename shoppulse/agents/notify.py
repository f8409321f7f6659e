"""The ``notify`` agent: ``<app>.alerts`` -> the notifiers' dispatcher (thin glue).

Rows (a fingerprint's recent transitions and, per receiver, the last one delivered) live
in the Faust table ``notifications``, partitioned like the alerts topic, so they move and
recover with its partitions. The dispatcher writes a row twice: when a transition arrives
(inside the stream; the record is acked, so Faust may commit it, only once the write is
acknowledged) and when a receiver got it (from the receiver's task, outside stream
iteration, hence the explicit partition). After every recovery the
dispatcher re-queues what was recorded but not delivered; a revoked partition's alerts
leave this worker's queues.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from mode import Service
from prometheus_client import CollectorRegistry, Counter

from shoppulse.agents.contiguous import Contiguous
from shoppulse.alerting.notifiers.dispatcher import Dispatcher
from shoppulse.streams.config import Config
from shoppulse.streams.deadletter import deadletter_headers
from shoppulse.streams.records import ALERT_STATES, Alert
from shoppulse.streams.topics import INTERNAL_PARTITIONS

log = logging.getLogger(__name__)



def check_alert(alert: Alert) -> Alert:
    """An Alert the dispatcher can use, or ValueError naming the field that is not."""
    if alert.state not in ALERT_STATES:
        raise ValueError(f"state: {alert.state!r} is not one of {', '.join(ALERT_STATES)}")
    for name, kind in (("fingerprint", str), ("rule", str), ("severity", str),
                       ("episode", int), ("labels", dict), ("annotations", dict)):
        if not isinstance(getattr(alert, name), kind) or (kind is str and not
                                                          getattr(alert, name)):
            raise ValueError(f"{name}: expected a non-empty {kind.__name__}")
    if not isinstance(alert.starts_at, int | float):
        raise ValueError("starts_at: expected epoch seconds")
    return alert


class TableRows:
    """A :class:`~shoppulse.alerting.notifiers.dispatcher.RowStore` over a Faust table."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        return self.table.get(key)

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.table.data[key] = value  # what Table.__setitem__ does, minus the current-event
        self.table.send_changelog(partition, key, value)  # lookup of the partition

    def items(self) -> list[tuple[str, bytes]]:
        # the Contiguous notes share the table under keys "<partition>|next"
        return [(k, v) for k, v in self.table.data.items() if not k.endswith("|next")]


class NotifyService(Service):
    """Starts and stops the receivers' delivery tasks with the app."""

    def __init__(self, dispatcher: Dispatcher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dispatcher = dispatcher

    async def on_start(self) -> None:
        self.dispatcher.start()

    async def on_stop(self) -> None:
        await self.dispatcher.stop()


def attach_notify(app: faust.App, config: Config, bootstrap: str, registry: CollectorRegistry,
                  refetched: Counter) -> Dispatcher | None:
    """Add the ``notify`` agent and its table to ``app``; ``None`` without receivers."""
    if not config.notifiers:
        return None
    n = INTERNAL_PARTITIONS["alerts"]
    alerts = app.topic(config.topic_name("alerts"), partitions=n, key_serializer="raw",
                       value_serializer="raw")
    deadletter = app.topic(config.topic_name("deadletter"), key_serializer="raw",
                           value_serializer="raw")
    rows = app.Table("notifications", partitions=n, key_type=str, value_type=bytes)
    invalid = Counter("shoppulse_alert_records_invalid",
                      "Records of the alerts topic that are not Alerts, dead-lettered",
                      registry=registry)

    async def emit(alert: Alert) -> None:
        """The notifiers' own alerts (NotifierDown) go through the topic like any other."""
        fut = await alerts.send(key=alert.fingerprint.encode(), value=alert.dumps())
        await fut

    store = TableRows(rows)
    dispatcher = Dispatcher.from_config(config.notifiers, store, registry, emit=emit)
    records_in = Contiguous(bootstrap, rows, refetched, loop=app.loop)
    app._extra_services.extend([records_in, NotifyService(dispatcher, loop=app.loop)])

    @app.agent(alerts, name="notify")
    async def notify(stream: faust.StreamT) -> None:
        # An event is acked (so Faust may commit its offset) only once the table writes it
        # caused are acknowledged, but the stream does not wait for that: a background
        # task acks in order after each wait, so one changelog round trip covers every
        # record that arrived meanwhile. Faust commits the acked prefix of a partition.
        stream.enable_acks = False
        unacked: list[Any] = []
        more = asyncio.Event()

        async def acker() -> None:
            while True:
                await more.wait()
                more.clear()
                batch = unacked[:]
                del unacked[:]
                try:
                    await rows.written()
                except Exception as exc:  # not durable: retry the wait, never ack early
                    log.warning("notifications table write failed (%s); retrying", exc)
                    unacked[:0] = batch
                    more.set()
                    await asyncio.sleep(0.5)
                    continue
                for event in batch:
                    await stream.ack(event)

        acking = asyncio.ensure_future(acker())
        try:
            async for event in stream.events():
                await take(event)
                unacked.append(event)
                more.set()
        finally:
            acking.cancel()

    async def take(event: Any) -> None:
        async for rec in records_in.records(event):
            try:
                alert = check_alert(Alert.loads(rec.value))
            except Exception as exc:  # bad input: dead-letter with the reason
                invalid.inc()
                log.warning("alerts[%d]@%d is not an Alert: %s", rec.partition, rec.offset,
                            exc)
                await deadletter.send(key=rec.key, value=rec.value or b"",
                                      headers=deadletter_headers(
                                          alerts.get_topic_name(), rec.partition, rec.offset,
                                          "bad_alert", str(exc)[:500]))
                continue
            dispatcher.handle(alert, rec.partition)

    @rows.on_recover
    async def requeue() -> None:
        dispatcher.restore()

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == alerts.get_topic_name()}
        if gone:
            dispatcher.forget(dispatcher.fingerprints_of(gone))

    return dispatcher
