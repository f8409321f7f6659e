"""Log end offsets that are right on the embedded broker too.

Why: Tansu answers ListOffsets (latest) with the base offset of the partition's last
record batch plus one, so after a batch of n records the end it reports is n - 1
short (measured: records 1-3 written in one batch -> end 2). A reader that stops at
that end misses the newest records; for the ingest restore those are exactly the
newest checkpoints and partials. Fetching from ``reported end - 1`` returns that last
batch whole, and its last offset + 1 is the true end, on Kafka as on Tansu.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


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
