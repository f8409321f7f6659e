"""Faust's Kafka transport, with changelog recovery that reads to the true log end.

Why: Faust recovers a table by reading its changelog up to the partition's end offset
and then stops, dropping whatever it fetched beyond. The embedded broker reports an
end offset that is short by the size of the last record batch minus one
(:mod:`shoppulse.streams.offsets`), so a worker that took over a partition could
restore a table without the last writes of the worker that died, although Faust had
committed the input offsets behind them. Here the end offsets Faust asks for are
corrected with one fetch of the last batch per partition, by a spare consumer of the
consumer thread. On Kafka the correction finds nothing to correct.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from shoppulse.streams.offsets import log_end_offsets

#: Faust hard-codes 1 500 ms. Tansu answers a fetch only when its wait is up, not when
#: data arrives (measured: one record every 50 ms on 4 partitions reached the consumer
#: after 0.37 s median, 0.75 s max, at 1 500 ms; 0.13 / 0.27 s at 500 ms; 0.011 / 0.030 s
#: at 20 ms), so every agent hop cost up to 0.75 s. 100 ms bounds a hop at ~50 ms; an
#: idle worker sends 10 fetches a second.
FETCH_MAX_WAIT_MS = 100


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _reader: AIOKafkaConsumer | None = None

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by start(): no public setter
        return consumer

    async def _highwaters(self, partitions: Any) -> Mapping[Any, int]:
        if self.consumer.in_transaction:
            return await super()._highwaters(partitions)
        if self._reader is None:
            servers = [f"{u.host}:{u.port or 9092}" for u in self.app.conf.broker]
            auth = faust_aiokafka.credentials_to_aiokafka_auth(self.app.conf.broker_credentials)
            self._reader = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                            **auth)
            await self._reader.start()
        return await log_end_offsets(self._reader, partitions)

    async def on_thread_stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
        await super().on_thread_stop()


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A :class:`faust.App` on :class:`Transport`."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
