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


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _reader: AIOKafkaConsumer | None = None

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
