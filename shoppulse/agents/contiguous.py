"""Every offset of an agent's input partitions, in order, even where Faust skips some.

Why: after a rebalance faust-streaming (0.15) can hand an agent a message past the
partition's committed offset and never deliver the ones in between: its recovery
resumes the partitions before it seeks them to the committed offsets, and its fetcher
discards anything below the highest offset it has read (faust-streaming issues #216,
#221). Measured here: the surviving worker of the two-worker test skipped 4 to 11
partials messages on two or four partitions in 8 of 10 runs (delivered 52, 53, 54, 61:
55-60 never came), and before this module the windows those messages fed came out
short in about one run of seven.

So an agent notes, in its own table, the last offset it started per partition (the
changelog of that table partition restores the note with the table). A message more
than one past the note means Faust skipped some; they are read directly from the
broker and handed over first. A skip shows at the partition's next message: the
ingest sends every partials partition a heartbeat every few seconds, and metric
points follow each closed window.

The note says "everything before this offset was fully processed" only if the agent
makes each record's effects durable before it takes the next (the combine agent
does); the range read starts at the noted offset itself, so the one record a crash
may have cut short is replayed too. Agents must therefore be idempotent, which the
global stage's offset guard and the detector stage's last-window check are. A range
that cannot be read yet (broker away) is waited for, never given up: the records
exist, since a later one was delivered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from mode import Service
from prometheus_client import Counter

from shoppulse.streams.offsets import read_range

log = logging.getLogger(__name__)


def note_key(partition: int) -> str:
    """The table key of a partition's note: never a series key (those start with a metric)."""
    return f"{partition}|next"


class Contiguous(Service):
    """Turns a Faust event into the records it follows that Faust skipped, then itself."""

    def __init__(
        self, bootstrap: str, notes: MutableMapping[str, bytes], refetched: Counter,
        client_options: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.client_options = client_options or {}  # SASL / TLS (streams.security)
        self.notes = notes
        self.refetched = refetched  # labelled with the topic
        self._reader: AIOKafkaConsumer | None = None

    async def records(self, event: Any) -> AsyncIterator[Any]:
        """Records up to and including ``event``'s message, the skipped ones first: each
        with ``partition``, ``offset``, ``key`` and ``value`` (raw bytes)."""
        msg = event.message
        key = note_key(msg.partition)
        raw = self.notes.get(key)
        noted = int(raw) if raw is not None else None
        if noted is not None and msg.offset > noted + 1:
            log.warning("%s[%d]: Faust skipped offsets %d-%d; reading them directly",
                        msg.topic, msg.partition, noted + 1, msg.offset - 1)
            tp = TopicPartition(msg.topic, msg.partition)
            reader = await self._reader_started()
            async for rec in read_range(reader, tp, noted, msg.offset, stall=None):
                if rec.offset > noted:
                    noted = rec.offset
                    self.notes[key] = str(noted).encode()
                self.refetched.labels(msg.topic).inc()
                yield rec
        if noted is None or msg.offset > noted:
            self.notes[key] = str(msg.offset).encode()
        yield msg

    async def _reader_started(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                            enable_auto_commit=False,
                                            max_partition_fetch_bytes=16 * 1024 * 1024,
                                            **self.client_options)
            await self._reader.start()
        return self._reader

    async def on_stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
