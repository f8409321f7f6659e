"""Producing events to Kafka fast: aiokafka batches, keys partitioned like any client.

Used by ``simulate``, ``replay``, the tests and the benchmarks. Keys go through
aiokafka's default (murmur2) partitioner, so a session's clicks land on one
partition exactly as a Java or librdkafka producer would put them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from shoppulse.streams.broker import BrokerError, parse_broker_url
from shoppulse.streams.config import Config


async def produce_async(
    bootstrap: str,
    events: Iterable[Any],
    partitions: dict[str, int],
    *,
    speed: float = 0.0,
    progress: bool = False,
    time_field: str = "ts",
    client_options: dict[str, Any] | None = None,
) -> int:
    """Send ``events`` (objects with topic, key, value) and wait for every ack.

    With ``speed > 0`` event time is paced at ``speed`` x the wall clock.
    ``value`` may be a dict (encoded with orjson) or raw bytes (sent as is).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, acks=1,
                                max_request_size=8 * 1024 * 1024, **(client_options or {}))
    await producer.start()
    partitioner = DefaultPartitioner()
    pending: dict[tuple[str, int], Any] = {}
    futures: list[asyncio.Future[Any]] = []
    sent = 0
    t0_wall = time.monotonic()
    t0_event: float | None = None
    last_flush = time.monotonic()
    try:
        for ev in events:
            value = ev.value if isinstance(ev.value, bytes | None) else orjson.dumps(ev.value)
            key = ev.key.encode() if isinstance(ev.key, str) else ev.key
            n = partitions[ev.topic]
            part = partitioner(key, list(range(n)), list(range(n))) if key else sent % n
            batch = pending.get((ev.topic, part))
            if batch is None:
                batch = pending[(ev.topic, part)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, ev.topic, partition=part))
                batch = pending[(ev.topic, part)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            sent += 1
            if speed > 0 and isinstance(ev.value, dict):
                ts = ev.value.get(time_field)
                if isinstance(ts, int | float):
                    t0_event = ts if t0_event is None else t0_event
                    ahead = (ts - t0_event) / speed - (time.monotonic() - t0_wall)
                    if ahead > 0.05:
                        futures.extend(await _flush(producer, pending))
                        await asyncio.sleep(ahead)
            if time.monotonic() - last_flush > 0.5:
                futures.extend(await _flush(producer, pending))
                last_flush = time.monotonic()
                if progress:
                    print(f"\rproduced {sent} events", end="", file=sys.stderr, flush=True)
                futures = [f for f in futures if not f.done()]
        futures.extend(await _flush(producer, pending))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    if progress:
        print(f"\rproduced {sent} events", file=sys.stderr, flush=True)
    return sent


async def _flush(producer: AIOKafkaProducer, pending: dict[tuple[str, int], Any]) -> list[Any]:
    out = []
    for (topic, part), batch in list(pending.items()):
        if batch.record_count():
            out.append(await producer.send_batch(batch, topic, partition=part))
    pending.clear()
    return out


def produce_events(config: Config, events: Iterable[Any], *, speed: float = 0.0,
                   progress: bool = False) -> int:
    """Produce to the configured broker, which must be running (not ``embedded``)."""
    if config.broker == "embedded":
        raise BrokerError("producing needs a running broker: pass --broker kafka://host:port "
                          "or set SHOPPULSE_BROKER (the worker prints its broker's address)")
    from shoppulse.streams.topics import ensure_topics

    bootstrap = parse_broker_url(config.broker)
    config = ensure_topics(config, bootstrap)
    partitions = {t: spec.partitions for t, spec in config.topics.items()}
    return asyncio.run(produce_async(bootstrap, events, partitions, speed=speed,
                                     progress=progress,
                                     client_options=config.kafka.client_options()))
