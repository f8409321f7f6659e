"""Gap filling for agents: records Faust skipped are read from the real broker, in order."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter

from shoppulse.agents.contiguous import Contiguous, note_key


def _event(topic: str, offset: int, value: bytes) -> SimpleNamespace:
    """What the agent reads of a Faust event: its message's coordinates and bytes."""
    return SimpleNamespace(message=SimpleNamespace(
        topic=topic, partition=1, offset=offset, key=b"k%d" % offset, value=value))


def test_skipped_offsets_are_read_directly_and_handed_over_first(broker):
    topic = f"gaps-{os.getpid()}-{time.monotonic_ns()}"
    values = [b"v%d" % i for i in range(12)]
    registry = CollectorRegistry()
    refetched = Counter("refetched", "", ["topic"], registry=registry)

    async def run() -> list[list[tuple[int, bytes | None, bytes | None]]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for i, v in enumerate(values):
                meta = await (await producer.send(topic, v, key=b"k%d" % i, partition=1))
                assert meta.offset == i
        finally:
            await producer.stop()
        notes: dict[str, bytes] = {}
        contiguous = Contiguous(broker.bootstrap, notes, refetched)
        seen = []
        try:
            # 0, then Faust jumps to 6, goes on with 7, replays 3 (a rebalance), jumps to 11
            for offset in (0, 6, 7, 3, 11):
                got = [(r.offset, r.key, r.value)
                       async for r in contiguous.records(_event(topic, offset, values[offset]))]
                seen.append(got)
        finally:
            await contiguous.on_stop()
        assert notes == {note_key(1): b"11"}
        return seen

    seen = asyncio.run(run())
    offsets = [[o for o, _, _ in batch] for batch in seen]
    # the noted offset itself is read again: a crash may have cut its processing short
    assert offsets == [[0], [0, 1, 2, 3, 4, 5, 6], [7], [3], [7, 8, 9, 10, 11]]
    for batch in seen:
        for offset, key, value in batch:
            assert (key, value) == (b"k%d" % offset, values[offset])
    assert registry.get_sample_value("refetched_total", {"topic": topic}) == 6 + 4
