"""The pipeline without Kafka: local and global stage driven in one process.

Same code as the worker (partitioning, local stage, partials wire format,
global stage) with dicts for tables, for ``bench detect``, fast tests and
notebook use. Input partitions are assigned by the same murmur2 partitioner a
Kafka producer uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from shoppulse.agents.cardinality import cardinality_of
from shoppulse.agents.global_stage import GlobalStage, encode_partials
from shoppulse.agents.ingest import split_by_dest, tally_dest, window_spans, wm_json
from shoppulse.agents.local_stage import PartitionAggregator, Record
from shoppulse.agents.plan import compile_plan
from shoppulse.streams.config import Config
from shoppulse.streams.records import MetricPoint
from shoppulse.streams.schemas import compile_topic


def run_offline(
    config: Config, events: Iterable[Any], *, batch: int = 5000, n_dest: int = 4
) -> Iterator[MetricPoint]:
    """MetricPoints of ``events`` (objects with topic, key, value), as windows close."""
    plan = compile_plan(config)
    partitioner = DefaultPartitioner()
    aggs: dict[tuple[str, int], PartitionAggregator] = {}
    pending: dict[tuple[str, int], list[Record]] = {}
    offsets: dict[tuple[str, int], int] = {}
    windows: dict[str, bytes] = {}
    progress: dict[str, bytes] = {}
    sources = [f"{t}:{p}" for t, spec in config.topics.items() for p in range(spec.partitions)]
    stage = GlobalStage(plan, windows, progress, sources, cardinality_of(config, plan))
    decoders = {t: compile_topic(t, s, max_bytes=config.max_event_bytes,
                                max_depth=config.max_event_depth)
                for t, s in config.topics.items()}
    for topic, spec in config.topics.items():
        for p in range(spec.partitions):
            aggs[(topic, p)] = PartitionAggregator(config, plan, topic, decoders[topic])
            pending[(topic, p)] = []
            offsets[(topic, p)] = 0

    def flush(final: bool = False) -> Iterator[MetricPoint]:
        sections: list[list[dict[str, Any]]] = [[] for _ in range(n_dest)]
        for tp, recs in pending.items():
            agg = aggs[tp]
            out = agg.process(recs) if recs else None
            per_dest = split_by_dest(out.parts if out else {}, plan, n_dest)
            fed = window_spans(out, agg.windows) if out else []
            for d in range(n_dest):
                sections[d].append({
                    "topic": tp[0], "partition": tp[1],
                    "first": out.first if out else -1, "last": out.last if out else -1,
                    "wm": wm_json(agg.wm), "idle": final,
                    "parts": per_dest[d], "w": fed, "tally": d == tally_dest(tp[1], n_dest)})
            recs.clear()
        for d in range(n_dest):
            stage.apply(d, orjson.loads(encode_partials(sections[d])))
            for wkey, points in stage.close_ready(d):
                yield from points
                stage.mark_emitted(wkey)

    for n, ev in enumerate(events, 1):
        spec = config.topics[ev.topic]
        key = ev.key.encode() if isinstance(ev.key, str) else ev.key
        part = partitioner(key, list(range(spec.partitions)), list(range(spec.partitions)))
        tp = (ev.topic, part)
        value = ev.value if isinstance(ev.value, bytes) else orjson.dumps(ev.value)
        pending[tp].append(Record(offsets[tp], key, value))
        offsets[tp] += 1
        if n % batch == 0:
            yield from flush()
    yield from flush(final=True)
