"""Faust tables whose changelog writes an agent can wait for.

Why: before committing an offset Faust flushes its producer buffer, but that flush
gives up after 0.1 s (faust-streaming 0.15, ``ProducerBuffer.flush_atmost``), so the
offset of an event can be committed while the table writes it caused are still
queued. A SIGKILL at that moment loses them: the next owner of the partition
restores the table without those writes and resumes after the event. An agent that
awaits :meth:`DurableTable.written` before it takes its next event (which is when
Faust acks the previous one) only ever lets Faust commit what the changelog holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from typing import Any

import faust


class DurableTable(faust.Table):
    """A :class:`faust.Table` that remembers its changelog sends until they are acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unwritten: list[asyncio.Future] = []

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


async def written(*tables: Any) -> None:
    """Wait for the changelog writes of several tables."""
    await asyncio.gather(*(t.written() for t in tables))


class Staged(MutableMapping[str, bytes]):
    """A table seen through the writes of the record in hand, which reach the table only
    at :meth:`flush`.

    Why: the alert agents publish a record's transitions and save the lifecycle state it
    produced. Saved first, a crash before the send lands loses the transition for good (the
    replayed record meets a state that already moved); sent first, the replay finds the
    transition on the alerts topic and does not send it again. So the state waits here
    until the sends are acknowledged.

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
        self.pending: dict[str, bytes | None] = {}  # None: deleted

    def __getitem__(self, key: str) -> bytes:
        if key in self.pending:
            value = self.pending[key]
            if value is None:
                raise KeyError(key)
            return value
        return self.table[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.pending[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = None

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self.pending:
                yield key
        yield from (k for k, v in self.pending.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Hand the staged writes to the table (whose changelog sends then start)."""
        for key, value in self.pending.items():
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        self.pending.clear()
