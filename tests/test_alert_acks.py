"""``AckAfterWrites``: an agent's batch is acked only once its table writes are acknowledged.

The agents (combine, alert_points, alert_verdicts) take their next batch while the writes
of the previous one are in flight; what keeps a committed offset from outrunning the
changelog is that Faust acks a batch only after :meth:`DurableTable.written`. The SIGKILL
tests cover the whole worker; this checks the ordering itself, with a table whose writes
the test acknowledges by hand and Faust's own message refcounting.
"""

from __future__ import annotations

import asyncio

import pytest
from faust.types.tuples import Message

from shoppulse.agents.tables import AckAfterWrites


class Consumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


class Event:
    """What ``take_events`` hands over: an event whose ack is Faust's message refcount."""

    def __init__(self, offset: int, consumer: Consumer) -> None:
        self.message = FinalAck(consumer, offset)
        self.message.incref()  # the conductor's reference for the one stream

    def ack(self) -> bool:
        return self.message.ack(self.message.consumer)


class FinalAck(Message):
    def __init__(self, consumer: Consumer, offset: int) -> None:
        super().__init__("t", 0, offset, 0.0, 0, None, b"k", b"v", None)
        self.consumer = consumer

    def on_final_ack(self, consumer: Consumer) -> bool:  # what ConsumerMessage does
        self.acked = True
        return consumer.ack(self)


class Stream:
    async def ack(self, event: Event) -> bool:
        return event.ack()


class Table:
    """A table whose changelog writes the test acknowledges (or fails) by hand."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future] = []

    def write(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut

    async def written(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            await asyncio.gather(*batch)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_batches_are_acked_after_their_writes_in_order():
    async def main() -> None:
        consumer, table, stream = Consumer(), Table(), Stream()
        acks = AckAfterWrites(stream, table)  # type: ignore[arg-type]
        first = [Event(o, consumer) for o in (0, 1)]
        acks.hold(first)
        w1 = table.write()
        for e in first:  # what take_events does when the agent asks for the next batch
            await stream.ack(e)
        acks.done(first)
        second = [Event(2, consumer)]
        acks.hold(second)
        w2 = table.write()
        for e in second:
            await stream.ack(e)
        acks.done(second)
        await settle()
        assert consumer.acked == []  # take_events' own acks did not complete them
        w1.set_result(None)
        await settle()
        assert consumer.acked == []  # the second batch's write is still in flight
        w2.set_result(None)
        await settle()
        assert consumer.acked == [0, 1, 2]
        acks.stop()

    asyncio.run(main())


def test_a_failed_write_leaves_the_batch_unacked_and_stops_the_agent():
    async def main() -> None:
        consumer, table, stream = Consumer(), Table(), Stream()
        acks = AckAfterWrites(stream, table)  # type: ignore[arg-type]
        batch = [Event(0, consumer)]
        acks.hold(batch)
        w = table.write()
        await stream.ack(batch[0])
        acks.done(batch)
        w.set_exception(OSError("broker gone"))
        await settle()
        assert consumer.acked == []
        with pytest.raises(RuntimeError, match="table writes failed"):
            acks.hold([Event(1, consumer)])
        acks.stop()

    asyncio.run(main())
