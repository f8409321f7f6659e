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
