"""The ingest service: input topics read in batches, off Faust's per-event path.

A Faust service that owns one consumer-group consumer for the input topics.
Per fetch it decodes, validates and pre-aggregates each partition's records in
plain Python (:mod:`shoppulse.agents.local_stage`), sends one partials message
per destination partition (all sources of the fetch in it), sends invalid
records to the dead-letter topic, and only after every send is acknowledged
writes a checkpoint per partition to ``<app>.checkpoints`` and commits the
input offsets. A checkpoint holds the next offset, the partition's watermark, a
*rebuild point* (an offset whose replay restores sessions, dedupe and distinct
state exactly) and where the partials topic ended. (It is a record rather than
offset-commit metadata because the embedded broker drops that metadata.) A
partition without a checkpoint gets one before anything is sent for it, so every
partial ever sent for a partition lies past its latest checkpoint. On assignment
the partition resumes from that checkpoint, and events already sent past it are
not sent again to the destinations that have them (the checkpoints of a restored
partition carry those offsets until it is past them), so no batch can straddle
the combiner's offset guard.

A partition is *idle* only when the broker has answered fetches of it for
``idle_timeout`` without anything new (each answer at the high watermark, with
no gap longer than :data:`ANSWER_GAP` between answers): a stalled or lost
broker answers nothing, so it never makes a partition idle. The same answers
drive ``shoppulse_broker_up`` and ``shoppulse_broker_last_fetch_age_seconds``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from mode import Service

from shoppulse.agents.exporter import Exporter
from shoppulse.agents.global_stage import encode_partials
from shoppulse.agents.local_stage import Batch, PartitionAggregator
from shoppulse.agents.plan import Plan
from shoppulse.agents.transport import FETCH_MAX_WAIT_MS
from shoppulse.streams.config import Config
from shoppulse.streams.deadletter import deadletter_headers
from shoppulse.streams.offsets import log_end_offsets, read_range
from shoppulse.streams.schemas import compile_topic

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0  # unchanged watermarks are repeated this often
#: The longest pause between fetch answers that still counts as one quiet run of a
#: partition (a healthy broker answers an empty fetch within ``fetch_max_wait_ms``,
#: 0.5 s): a longer one, an outage or a stalled worker, starts the run again.
ANSWER_GAP = 3.0
#: No fetch answer and no fetched records taken for this long: the broker is lost.
#: Longer than ANSWER_GAP, so a worker that is only busy does not report an outage.
BROKER_TIMEOUT = 10.0
#: How long a partials message may wait for the broker (aiokafka's default, 40 s,
#: would drop the sends pending when a longer stall began). Past it the worker
#: stops rather than go on without them: a restart resumes from the checkpoint.
SEND_TIMEOUT_MS = 300_000
#: A live (caught-up) ingest starts a round at most this often. Every round sends one
#: partials message per destination, and the global stage waits for its table writes
#: after each message (one broker round trip): measured at 200 live events/s, rounds as
#: fast as fetches return made ~50 messages/s, more than the combine agent kept up with on
#: this machine, so windows closed later and later. A round of at least
#: ``BUSY_ROUND_RECORDS`` (a backlog, or a firehose) never makes the next one wait.
MIN_ROUND_SECONDS = 0.1
BUSY_ROUND_RECORDS = 1000
DEADLETTER_MAX_BYTES = 1_000_000  # longer payloads are dead-lettered truncated


@dataclass
class PartitionState:
    agg: PartitionAggregator
    last_data: float = field(default_factory=time.monotonic)
    next_offset: int = 0
    checkpoints: collections.deque[tuple[int, float]] = field(default_factory=collections.deque)
    skip: dict[int, int] = field(default_factory=dict)  # dest -> last offset it already has
    idle: bool = False
    answered: float = 0.0  # wall time of the last fetch answer seen for the partition
    quiet_since: float | None = None  # first answer of the current run with nothing new
    reported_wm: float | None = None
    reported_idle: bool | None = None
    last_report: float = 0.0
    dirty: bool = False  # needs a commit


def dest_of(name: str, n_dest: int) -> int:
    """Destination partition of a metric: stable across processes (not ``hash()``). All
    series of a metric meet there, so its window can fold values into ``other``."""
    return zlib.crc32(name.encode()) % n_dest


def split_by_dest(parts: dict[Any, list[Any]], plan: Plan, n_dest: int) -> list[list[Any]]:
    """Partials ``[metric, labels, window start, acc]`` grouped by destination partition."""
    per_dest: list[list[Any]] = [[] for _ in range(n_dest)]
    for (mi, labels, start), acc in parts.items():
        name = plan.metrics[mi].name
        dest = dest_of(plan.route.get(name, name), n_dest)  # a hierarchy closes together
        per_dest[dest].append([name, labels, start, acc])
    return per_dest


class Ingest(Service):
    """Batched consume -> local stage -> partials + dead letters -> commit."""

    def __init__(
        self,
        config: Config,
        plan: Plan,
        bootstrap: str,
        exporter: Exporter,
        *,
        n_dest: int,
        max_records: int = 20000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.plan = plan
        self.bootstrap = bootstrap
        self.exporter = exporter
        self.n_dest = n_dest
        self.max_records = max_records
        self.partials_topic = config.topic_name("partials")
        self.checkpoint_topic = config.topic_name("checkpoints")
        self.deadletter_topic = config.topic_name("deadletter")
        self.decoders = {
            t: compile_topic(t, spec, max_bytes=config.max_event_bytes,
                             max_depth=config.max_event_depth)
            for t, spec in config.topics.items()
        }
        self.parts: dict[TopicPartition, PartitionState] = {}
        self.lock = asyncio.Lock()
        self.acks: asyncio.Queue[tuple[list[Any], dict[TopicPartition, Any]]] = asyncio.Queue(2)
        self.dest_end = [0] * n_dest  # partials offsets known to follow our sends
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.last_answer = time.time()  # last fetch answer, or fetched records taken
        self.broker_lost_at: float | None = None
        exporter.broker_up.set_function(lambda: float(self.fetch_age() <= BROKER_TIMEOUT))
        exporter.broker_fetch_age.set_function(self.fetch_age)
        exporter.lag_source = self.lag

    # -- lifecycle ----------------------------------------------------------------
    async def on_start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, max_request_size=16 * 1024 * 1024,
            acks=1, request_timeout_ms=SEND_TIMEOUT_MS, **self.config.kafka.client_options(),
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.config.app}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # the embedded broker answers at its end
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=10000,
            max_poll_interval_ms=300000,
            **self.config.kafka.client_options(),
        )
        await self.consumer.start()
        # may be short on the embedded broker (streams.offsets): a lower bound is enough
        ends = await self.consumer.end_offsets(
            [TopicPartition(self.partials_topic, d) for d in range(self.n_dest)]
        )
        for tp, end in ends.items():
            self.dest_end[tp.partition] = end
        self.consumer.subscribe(list(self.config.topics), listener=_Listener(self))

    async def on_stop(self) -> None:
        with contextlib.suppress(Exception):  # a clean stop leaves checkpoints current
            await asyncio.wait_for(self.acks.join(), 10)
        for client in (self.consumer, self.producer):
            if client is not None:  # with the broker gone a flush would wait SEND_TIMEOUT_MS:
                with contextlib.suppress(asyncio.TimeoutError):  # unsent rounds are replayed
                    await asyncio.wait_for(client.stop(), 10)

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        started = 0.0
        while not self.should_stop:
            try:
                wait = started + MIN_ROUND_SECONDS - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                started = time.monotonic()
                data = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if sum(map(len, data.values())) >= BUSY_ROUND_RECORDS:
                    started = 0.0  # a backlog: the next round at once
                if data:  # fetched records: the broker is not what holds us up
                    self.last_answer = time.time()
            except Exception as exc:  # broker hiccup: keep going, never crash the worker
                log.warning("ingest fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            async with self.lock:
                await self.flush(data)

    # -- one round ----------------------------------------------------------------
    async def flush(self, data: dict[TopicPartition, list[Any]]) -> None:
        sections: list[list[dict[str, Any]]] = [[] for _ in range(self.n_dest)]
        dead: list[tuple[TopicPartition, int, bytes | None, bytes | None, Any]] = []
        now = time.monotonic()
        for tp, msgs in data.items():
            st = self.parts.get(tp)
            if st is None or not msgs:
                continue
            records = msgs
            if records[0].offset > st.next_offset:
                # fetched before a rebalance moved the position: never skip events
                log.info("ingest: %s[%d] got %d, expected %d: seeking back", tp.topic,
                         tp.partition, records[0].offset, st.next_offset)
                self.consumer.seek(tp, st.next_offset)
                continue
            if records[0].offset < st.next_offset:  # refetched after a seek: drop the overlap
                records = [m for m in msgs if m.offset >= st.next_offset]
                if not records:
                    continue
            st.checkpoints.append((records[0].offset, st.agg.wm))
            st.last_data = now
            st.quiet_since = None
            for seg, allowed in self._segments(st, records):
                batch = st.agg.process(seg)
                self._count(tp.topic, batch)
                dead.extend((tp, *inv) for inv in batch.invalid)
                self._route(tp, st, batch, allowed, sections)
            st.next_offset = records[-1].offset + 1
            st.dirty = True
        self._heartbeats(now, sections)
        futures = await self._send(sections, dead)
        # acks, checkpoints and the offset commit of this round complete in the
        # background while the next round is processed (at most two in flight)
        await self.acks.put((futures, self._checkpoint_state()))

    def _segments(self, st: PartitionState, records: Sequence[Any]):
        """Cut a resumed batch where destinations already have events, so none straddles."""
        if not st.skip:
            yield records, None
            return
        first, last = records[0].offset, records[-1].offset
        cuts = sorted({o for o in st.skip.values() if first <= o < last})
        start = 0
        for cut in [*cuts, last]:
            end = start
            while end < len(records) and records[end].offset <= cut:
                end += 1
            seg = records[start:end]
            if seg:
                allowed = {d for d in range(self.n_dest) if st.skip.get(d, -1) < seg[0].offset}
                yield seg, allowed
            start = end
        if last >= max(st.skip.values()):
            st.skip.clear()

    def _route(
        self,
        tp: TopicPartition,
        st: PartitionState,
        batch: Batch,
        allowed: set[int] | None,
        sections: list[list[dict[str, Any]]],
    ) -> None:
        per_dest = split_by_dest(batch.parts, self.plan, self.n_dest)
        wm = st.agg.wm
        fed = window_spans(batch, st.agg.windows)
        for d in range(self.n_dest):
            if allowed is not None and d not in allowed:
                continue
            sections[d].append({
                "topic": tp.topic, "partition": tp.partition, "first": batch.first,
                "last": batch.last, "wm": wm_json(wm), "idle": False, "parts": per_dest[d],
                "w": fed, "tally": d == tally_dest(tp.partition, self.n_dest),
            })
        st.idle = False
        st.reported_wm, st.reported_idle, st.last_report = wm, False, st.last_data

    def _heartbeats(self, now: float, sections: list[list[dict[str, Any]]]) -> None:
        """Watermark and idleness of partitions without new records this round."""
        assert self.consumer is not None
        idle_after = self.config.windows.idle_timeout
        for tp, st in self.parts.items():
            self._note_answer(tp, st)
            if st.last_report == now:  # it had records this round: _route reported it
                continue
            st.idle = st.quiet_since is not None and st.answered - st.quiet_since >= idle_after
            changed = st.idle != st.reported_idle or st.agg.wm != st.reported_wm
            if not changed and now - st.last_report < HEARTBEAT_SECONDS:
                continue
            for d in range(self.n_dest):
                sections[d].append({"topic": tp.topic, "partition": tp.partition, "first": -1,
                                    "last": -1, "wm": wm_json(st.agg.wm), "idle": st.idle,
                                    "parts": []})
            st.reported_wm, st.reported_idle, st.last_report = st.agg.wm, st.idle, now

    def _note_answer(self, tp: TopicPartition, st: PartitionState) -> None:
        """Follow the broker's fetch answers for ``tp``: is it caught up, since when?"""
        assert self.consumer is not None
        ms = self.consumer.last_poll_timestamp(tp)  # None until a fetch answered for tp
        if ms is None or ms / 1000 == st.answered:
            return
        at = ms / 1000
        if at - st.answered > ANSWER_GAP:
            st.quiet_since = None  # answers were interrupted: what came meanwhile is unknown
        st.answered = at
        high = self.consumer.highwater(tp)  # as of that answer
        if high is not None and st.next_offset >= high:
            if st.quiet_since is None:
                st.quiet_since = at
        else:
            st.quiet_since = None

    async def _send(self, sections: list[list[dict[str, Any]]], dead: list[Any]) -> list[Any]:
        """Enqueue partials and dead letters; return their delivery futures."""
        assert self.producer is not None
        futures = []
        for d, secs in enumerate(sections):
            if secs:
                futures.append(await self.producer.send(
                    self.partials_topic, encode_partials(secs), partition=d))
        for tp, offset, key, raw, inv in dead:
            headers = deadletter_headers(tp.topic, tp.partition, offset, inv.reason,
                                         inv.message, inv.field or "")
            raw = raw if raw is not None else b""
            if len(raw) > DEADLETTER_MAX_BYTES:  # any broker takes 1 MB; the header keeps the size
                headers.append(("shoppulse.size", str(len(raw)).encode()))
                raw = raw[:DEADLETTER_MAX_BYTES]
            futures.append(await self.producer.send(
                self.deadletter_topic, raw, key=key, headers=headers))
            log.warning("invalid event %s[%d]@%d -> %s: %s", tp.topic, tp.partition, offset,
                        self.deadletter_topic, inv.message)
        return futures

    def _checkpoint_state(self) -> dict[TopicPartition, dict[str, Any]]:
        out = {}
        for tp, st in self.parts.items():
            if not st.dirty:
                continue
            st.dirty = False
            r, rwm = self._rebuild_point(st)
            out[tp] = {"offset": st.next_offset, "wm": wm_json(st.agg.wm), "r": r,
                       "rwm": wm_json(rwm)}
            if st.skip:  # still inside what a killed owner sent: the next restore needs it
                out[tp]["skip"] = {str(d): last for d, last in st.skip.items()}
        return out

    @Service.task
    async def _committer(self) -> None:
        """Per round, in order: wait for the acks, write checkpoints, commit offsets."""
        while not self.should_stop:
            futures, checkpoints = await self.acks.get()
            try:
                await self._commit(futures, checkpoints)
            except LostSendError:
                log.error("ingest: partials not acknowledged within %d s: stopping, a restart "
                          "resumes from the last checkpoint", SEND_TIMEOUT_MS // 1000)
                raise
            except Exception as exc:  # not committing only means more replay after a crash
                log.warning("ingest commit failed: %s", exc)
            finally:
                self.acks.task_done()

    async def _commit(self, futures: list[Any], checkpoints: dict[TopicPartition, Any]) -> None:
        assert self.consumer is not None and self.producer is not None
        try:
            metas = await asyncio.gather(*futures)
        except Exception as exc:  # the round's events are consumed but not delivered
            raise LostSendError(str(exc)) from exc
        for meta in metas:
            if meta.topic == self.partials_topic:
                self.dest_end[meta.partition] = max(self.dest_end[meta.partition], meta.offset + 1)
        if not checkpoints:
            return
        sent = []
        for tp, cp in checkpoints.items():
            value = orjson.dumps({**cp, "pe": self.dest_end})
            sent.append(await self.producer.send(
                self.checkpoint_topic, value, key=f"{tp.topic}:{tp.partition}".encode(),
                partition=0))
        await asyncio.gather(*sent)
        offsets = {tp: OffsetAndMetadata(cp["offset"], "") for tp, cp in checkpoints.items()
                   if tp in self.parts}
        if offsets:
            await self.consumer.commit(offsets)

    def _rebuild_point(self, st: PartitionState) -> tuple[int, float]:
        """Oldest offset whose replay restores all live state: older state has all expired."""
        limit = st.agg.wm - self.plan.horizon
        cps = st.checkpoints
        while len(cps) > 1 and cps[1][1] <= limit:
            cps.popleft()
        return cps[0] if cps else (st.next_offset, st.agg.wm)

    def _count(self, topic: str, batch: Batch) -> None:
        ex = self.exporter
        ex.events.labels(topic).inc(batch.events)
        if batch.late:
            ex.late.labels(topic).inc(batch.late)
        if batch.duplicates:
            ex.duplicates.labels(topic).inc(batch.duplicates)
        for *_, inv in batch.invalid:
            ex.invalid.labels(topic, inv.reason).inc()

    def lag(self) -> list[tuple[str, int, float]]:
        """Lag per partition from its last high watermark; none while the broker is lost."""
        consumer = self.consumer
        if consumer is None or self.fetch_age() > BROKER_TIMEOUT:
            return []  # a stale high watermark would read as a lag of 0
        out = []
        for tp, st in list(self.parts.items()):
            try:
                high = consumer.highwater(tp)
            except Exception:  # unassigned while a rebalance runs
                continue
            if high is not None:
                out.append((tp.topic, tp.partition, float(max(0, high - st.next_offset))))
        return out

    # -- broker health ------------------------------------------------------------
    def fetch_age(self) -> float:
        """Seconds since the broker last answered a fetch of any assigned partition.

        Taking fetched records counts too: while a busy worker works through its
        buffer, the consumer sends no fetches, and the broker is not to blame.
        """
        now = time.time()
        consumer = self.consumer
        if consumer is None:
            return 0.0
        latest = self.last_answer
        for tp in list(self.parts):
            try:
                ms = consumer.last_poll_timestamp(tp)
            except Exception:  # unassigned while a rebalance runs
                continue
            if ms is not None:
                latest = max(latest, ms / 1000)
        coordinator = consumer._coordinator
        if not self.parts and coordinator is not None and coordinator.coordinator_id is not None:
            latest = now  # nothing to fetch, and the group coordinator is known: no outage
        self.last_answer = latest
        return max(0.0, now - latest)

    @Service.timer(0.5)
    async def _watch_broker(self) -> None:
        """One log line when the broker is lost and one when it is back."""
        age = self.fetch_age()
        if age > BROKER_TIMEOUT and self.broker_lost_at is None:
            self.broker_lost_at = self.last_answer
            log.warning("ingest: broker lost: no fetch answered for %.1f s; partitions keep "
                        "holding their windows open until it is back", age)
        elif age <= BROKER_TIMEOUT and self.broker_lost_at is not None:
            log.warning("ingest: broker back after %.1f s without fetch answers",
                        self.last_answer - self.broker_lost_at)
            self.broker_lost_at = None

    # -- rebalancing --------------------------------------------------------------
    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Restore newly assigned partitions from their checkpoints, then seek."""
        assert self.consumer is not None
        fresh = sorted(tp for tp in assigned if tp not in self.parts)
        if not fresh:
            return
        committed = await self.consumer._coordinator.fetch_committed_offsets(fresh)
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  auto_offset_reset="earliest",
                                  max_partition_fetch_bytes=4 * 1024 * 1024,
                                  **self.config.kafka.client_options())
        await reader.start()
        try:
            checkpoints = await self._checkpoints(reader, fresh)
            missing = [tp for tp in fresh if tp not in checkpoints]
            if missing:
                checkpoints.update(await self._first_checkpoints(reader, missing, committed))
            partials = await self._recent_partials(reader, checkpoints)
            for tp in fresh:
                agg = PartitionAggregator(self.config, self.plan, tp.topic,
                                          self.decoders[tp.topic])
                st = PartitionState(agg=agg)
                meta = checkpoints[tp]
                offset = meta["offset"]
                await self._restore(reader, tp, st, offset, meta, partials)
                st.next_offset = offset
                st.checkpoints.append((offset, agg.wm))
                self.parts[tp] = st
                self.consumer.seek(tp, offset)
                log.info("ingest: %s[%d] from offset %d (watermark %s, already sent %s)",
                         tp.topic, tp.partition, offset, agg.wm, st.skip)
        finally:
            await reader.stop()

    async def _checkpoints(
        self, reader: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, Any]:
        """The latest checkpoint of each partition, reading the checkpoint topic backwards."""
        wanted = {f"{tp.topic}:{tp.partition}".encode(): tp for tp in tps}
        found: dict[TopicPartition, Any] = {}
        ctp = TopicPartition(self.checkpoint_topic, 0)
        end = (await log_end_offsets(reader, [ctp]))[ctp]
        chunk = 5000
        while end > 0 and len(found) < len(wanted):
            start = max(0, end - chunk)
            latest: dict[bytes, bytes] = {}
            async for m in read_range(reader, ctp, start, end):
                if m.key in wanted:
                    latest[m.key] = m.value
            for key, value in latest.items():
                found.setdefault(wanted[key], orjson.loads(value))
            end = start
        return found

    async def _first_checkpoints(
        self, reader: AIOKafkaConsumer, tps: list[TopicPartition], committed: dict[Any, Any]
    ) -> dict[TopicPartition, Any]:
        """Checkpoints of partitions that have none, written before anything is sent for them.

        Without one, a worker killed before its first checkpoint leaves partials that the
        next owner cannot find: it would restart from the committed offset (0), cut its
        batches elsewhere and straddle the global stage's guard (double counts), or re-create
        windows already emitted and forgotten (a second, partial point). With this one, every
        partial of a partition lies past the ``pe`` of its latest checkpoint.
        """
        assert self.producer is not None
        dests = [TopicPartition(self.partials_topic, d) for d in range(self.n_dest)]
        ends = await log_end_offsets(reader, dests)
        pe = [ends[d] for d in dests]
        out, sent = {}, []
        for tp in tps:
            om = committed.get(tp)
            offset = om.offset if om is not None and om.offset >= 0 else 0
            out[tp] = {"offset": offset, "wm": None, "r": offset, "rwm": None, "pe": pe}
            sent.append(await self.producer.send(
                self.checkpoint_topic, orjson.dumps(out[tp]),
                key=f"{tp.topic}:{tp.partition}".encode(), partition=0))
        await asyncio.gather(*sent)
        return out

    async def _recent_partials(
        self, reader: AIOKafkaConsumer, checkpoints: dict[TopicPartition, Any]
    ) -> list[tuple[int, list[dict[str, Any]]]]:
        """Partials sections sent since the oldest of these checkpoints, per destination."""
        if not checkpoints:
            return []
        out = []
        dests = [TopicPartition(self.partials_topic, d) for d in range(self.n_dest)]
        ends = await log_end_offsets(reader, dests)
        for dtp in dests:
            starts = [cp["pe"][dtp.partition] for cp in checkpoints.values()
                      if dtp.partition < len(cp.get("pe", []))]
            start = min(starts) if len(starts) == len(checkpoints) else 0
            async for m in read_range(reader, dtp, start, ends[dtp]):
                out.append((dtp.partition, orjson.loads(m.value)["sources"]))
        return out

    async def _restore(
        self,
        reader: AIOKafkaConsumer,
        tp: TopicPartition,
        st: PartitionState,
        offset: int,
        meta: dict[str, Any],
        partials: list[tuple[int, list[dict[str, Any]]]],
    ) -> None:
        """Replay [rebuild point, checkpoint) silently; note what was sent past it."""
        st.agg.wm = _infinite(meta["rwm"])
        st.checkpoints.append((meta["r"], st.agg.wm))
        batch: list[Any] = []
        async for m in read_range(reader, tp, meta["r"], offset):
            batch.append(m)
            if len(batch) >= 20000:
                st.agg.process(batch)
                batch = []
        if batch:
            st.agg.process(batch)
        st.agg.wm = max(st.agg.wm, _infinite(meta["wm"]))
        for dest, last in meta.get("skip", {}).items():
            if last >= offset:
                st.skip[int(dest)] = max(st.skip.get(int(dest), -1), last)
        for dest, sections in partials:
            for sec in sections:
                if (sec["topic"] == tp.topic and sec["partition"] == tp.partition
                        and sec["last"] >= offset):
                    st.skip[dest] = max(st.skip.get(dest, -1), sec["last"])

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self.acks.join()  # checkpoints are current before another worker restores
            for tp in revoked:
                self.parts.pop(tp, None)


class LostSendError(Exception):
    """A partials or dead-letter send failed: going on would lose its events."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.ingest.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.ingest.lock:
            await self.ingest.assign(set(assigned))


def tally_dest(partition: int, n_dest: int) -> int:
    """The destination that counts a source partition's late events (one of them, once)."""
    return partition % n_dest


def window_spans(batch: Batch, sizes: Sequence[float]) -> list[list[Any]]:
    """``[[[size, start], ...], events]`` per window tuple the batch's events fed.

    ``events`` is 0 where some window of the tuple was late already: those
    events were counted late by the local stage.
    """
    out = []
    for span, n in batch.spans.items():
        windows = [[size, start] for size, start in zip(sizes, span, strict=True)
                   if start is not None]
        if windows:
            out.append([windows, n if len(windows) == len(span) else 0])
    return out


def wm_json(x: float) -> float | None:
    """JSON has no infinities: -inf (nothing seen yet) travels as null."""
    return x if math.isfinite(x) else None


def _infinite(x: float | None) -> float:
    return -math.inf if x is None else x
