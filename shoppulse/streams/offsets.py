"""Reading a partition directly: its true end, and the records of a range of offsets.

Used where a consumer group's own position cannot be trusted: the ingest restore and
the agents' gap filling (:mod:`shoppulse.agents.contiguous`).

End offsets must be right on the embedded broker too. Tansu answers ListOffsets
(latest) with the base offset of the partition's last record batch plus one, so after
a batch of n records the end it reports is n - 1 short (measured: records 1-3 written
in one batch -> end 2). A reader that stops at that end misses the newest records; for
the ingest restore those are exactly the newest checkpoints and partials. Fetching from
``reported end - 1`` returns that last batch whole, and its last offset + 1 is the true
end, on Kafka as on Tansu.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)


async def log_end_offsets(
    reader: AIOKafkaConsumer, tps: Iterable[Any], timeout: float = 5.0
) -> dict[Any, int]:
    """Next offset to be written per partition (keys as given: any ``(topic, partition)``
    tuple, such as Faust's ``TP``). ``reader`` is reassigned: use a spare one."""
    given = {TopicPartition(tp[0], tp[1]): tp for tp in tps}
    ends = await reader.end_offsets(list(given))
    out = {}
    for tp, orig in given.items():
        end = out[orig] = ends[tp]
        if end <= 0:
            continue
        reader.assign([tp])
        reader.seek(tp, end - 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = (await reader.getmany(tp, timeout_ms=500)).get(tp, [])
            if got:
                out[orig] = max(end, got[-1].offset + 1)
                break
    return out


async def read_range(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
    stall: float | None = 10.0,
) -> AsyncIterator[ConsumerRecord]:
    """Records of ``tp`` with offsets in [start, end). If the broker answers nothing for
    ``stall`` seconds, give up (logged); with ``stall=None`` keep waiting (logged)."""
    if start >= end:
        return
    reader.assign([tp])
    reader.seek(tp, start)
    patience = 10.0 if stall is None else stall
    last_progress = time.monotonic()
    pos = start
    while pos < end:
        got = (await reader.getmany(tp, timeout_ms=500, max_records=20000)).get(tp, [])
        if not got:
            if time.monotonic() - last_progress > patience:
                log.warning("reading %s[%d] stalled at %d of [%d, %d)%s", tp.topic,
                            tp.partition, pos, start, end,
                            "" if stall is None else ": giving up")
                if stall is not None:
                    return
                last_progress = time.monotonic()
            continue
        last_progress = time.monotonic()
        for m in got:
            if m.offset >= end:
                return
            pos = m.offset + 1
            yield m
