"""Test-side Kafka I/O with kafka-python: an independent client proves the wire format."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from shoppulse.streams.config import Config
from shoppulse.streams.producer import produce_async
from shoppulse.streams.topics import ensure_topics


def read_topic(bootstrap: str, topic: str, *, timeout: float = 20.0) -> list[Any]:
    """Every record currently in ``topic`` (all partitions), as kafka-python records."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=500, max_records=50000).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def input_records(bootstrap: str, config: Config) -> list[tuple[str, int, int, bytes]]:
    out = []
    for topic in config.topics:
        out.extend((topic, r.partition, r.offset, r.value) for r in read_topic(bootstrap, topic))
    return out


def produce(bootstrap: str, config: Config, events: Iterable[Any], speed: float = 0.0) -> int:
    config = ensure_topics(config, bootstrap)
    partitions = {t: s.partitions for t, s in config.topics.items()}
    return asyncio.run(produce_async(bootstrap, events, partitions, speed=speed))


class TopicReader:
    """Records of a topic read once each: for polls that would otherwise re-read the whole topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=1000)
        self.assigned: set[int] = set()

    def new(self) -> list[Any]:
        """Every record added since the last call (all partitions, in no cross-partition order)."""
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        if parts - self.assigned:
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            fresh = [tp for tp in tps if tp.partition not in self.assigned]
            self.consumer.assign(tps)
            self.consumer.seek_to_beginning(*fresh)
            self.assigned = set(parts)
        out: list[Any] = []
        while batch := self.consumer.poll(timeout_ms=200, max_records=50000):
            for recs in batch.values():
                out.extend(recs)
        return out

    def close(self) -> None:
        self.consumer.close()
