"""Faust tables whose changelog writes an agent can wait for.

Why: before committing an offset Faust flushes its producer buffer, but that flush
gives up after 0.1 s (faust-streaming 0.15, ``ProducerBuffer.flush_atmost``), so the
offset of an event can be committed while the table writes it caused are still
queued. A SIGKILL at that moment loses them: the next owner of the partition
restores the table without those writes and resumes after the event. An agent whose
events are acked only once :meth:`DurableTable.written` returns (:class:`AckAfterWrites`,
or awaiting it before it takes its next event, which is when Faust acks the previous
one) only ever lets Faust commit what the changelog holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

import faust

log = logging.getLogger(__name__)

# Agents take what arrived within BATCH_WAIT seconds (at most BATCH_EVENTS events, Faust's
# ``take_events``) and have Faust ack a batch only once its table writes are acknowledged
# (:class:`AckAfterWrites`), while they go on with the next batch: a round trip per
# partials message (a dozen a second) kept a live worker ever further behind, and a round
# trip per batch still held every record that arrived meanwhile (0.05 s median, 0.5 s
# under load). Each agent hop waits up to BATCH_WAIT for its batch.
BATCH_EVENTS = 500
BATCH_WAIT = 0.02


class DurableTable(faust.Table):
    """A :class:`faust.Table` that remembers its changelog sends until they are acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unwritten: list[asyncio.Future] = []
        self.writes_to: int | None = None  # see writing_to()

    def partition_for_key(self, key: Any) -> int | None:
        """Faust takes a write's changelog partition from the event being iterated; an
        agent that takes events in batches says which one it is handling instead."""
        if self.writes_to is not None:
            return self.writes_to
        return super().partition_for_key(key)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self._unwritten.append(fut)
        if len(self._unwritten) > 4096:  # an agent that never waits: keep only the pending
            self._unwritten = [f for f in self._unwritten if not f.done()]
        return fut

    async def written(self) -> None:
        """Return once every write so far is acknowledged by the broker."""
        while self._unwritten:
            pending, self._unwritten = self._unwritten, []
            await asyncio.gather(*pending)


@contextmanager
def writing_to(partition: int, *tables: DurableTable) -> Iterator[None]:
    """Writes to ``tables`` go to the changelog partition of the event being handled."""
    for t in tables:
        t.writes_to = partition
    try:
        yield
    finally:
        for t in tables:
            t.writes_to = None


async def written(*tables: Any) -> None:
    """Wait for the changelog writes of several tables."""
    await asyncio.gather(*(t.written() for t in tables))


class AckAfterWrites:
    """Has Faust ack an agent's batches only once the table writes they caused are
    acknowledged by the broker, in a background task, in order: the agent takes its next
    batch meanwhile, and one wait covers every batch handed over during it.

    Why: Faust commits acked offsets (the acked prefix of each partition), so a committed
    offset never outruns the changelog, as when the agent awaited :func:`written` itself,
    without holding the next records behind that round trip. ``take_events`` acks a batch
    when the agent asks for the next one; :meth:`hold` takes a reference on each message
    first, so that ack does not complete it and :meth:`done` does, later.
    """

    def __init__(self, stream: Any, *tables: DurableTable) -> None:
        self.stream = stream
        self.tables = tables
        self._batches: list[Sequence[Any]] = []
        self._more = asyncio.Event()
        self._task: asyncio.Future | None = None
        self._error: BaseException | None = None

    def hold(self, events: Sequence[Any]) -> None:
        """Before the batch is handled: its events stay unacked until :meth:`done`."""
        if self._error is not None:
            raise RuntimeError("table writes failed") from self._error
        for event in events:
            event.message.incref()

    def done(self, events: Sequence[Any]) -> None:
        """The batch's writes are handed to the tables: ack it once they are written."""
        self._batches.append(events)
        self._more.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            batches, self._batches = self._batches, []
            try:
                await written(*self.tables)
            except Exception as exc:  # not durable: never ack; the agent fails at its next
                log.error("table writes failed (%s): the batch stays unacked", exc)
                self._error = exc
                return
            for events in batches:
                for event in events:
                    await self.stream.ack(event)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class Staged(MutableMapping[str, bytes]):
    """A table seen through the writes of the batch in hand, which reach the table only at
    :meth:`flush`.

    Why: the alert agents publish a batch's transitions and save the lifecycle state it
    produced. Saved first, a crash before the sends land loses a transition for good (the
    replayed record meets a state that already moved); sent first, the replay finds the
    transition on the alerts topic and does not send it again. So the state waits here
    until the sends are acknowledged. The combine agent does the same with the windows it
    marks emitted: their points are sent for the whole batch and acknowledged together,
    and a window cannot be marked emitted in the changelog before its points are out.

    >>> table = {"a": b"1"}
    >>> s = Staged(table)
    >>> s["b"] = b"2"; del s["a"]
    >>> sorted(s), table
    (['b'], {'a': b'1'})
    >>> s.flush(); table
    {'b': b'2'}
    """

    def __init__(self, table: MutableMapping[str, bytes]) -> None:
        self.table = table
        self.partition = 0  # of the record being judged: its writes go to that partition
        self.pending: dict[str, tuple[int, bytes | None]] = {}  # (partition, None: deleted)

    def __getitem__(self, key: str) -> bytes:
        if key not in self.pending:
            return self.table[key]
        value = self.pending[key][1]
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.pending.pop(key, None)  # flushed in the order of the last writes
        self.pending[key] = (self.partition, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending.pop(key, None)
        self.pending[key] = (self.partition, None)

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self.pending:
                yield key
        yield from (k for k, (_, v) in self.pending.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Hand the staged writes to the table (whose changelog sends then start)."""
        tables = durable(self.table)
        for key, (partition, value) in self.pending.items():
            with writing_to(partition, *tables):
                if value is None:
                    self.table.pop(key, None)
                else:
                    self.table[key] = value
        self.pending.clear()


def durable(table: Any) -> tuple[DurableTable, ...]:
    """``table`` if it is a Faust table of ours (a plain dict in the doctests)."""
    return (table,) if isinstance(table, DurableTable) else ()
