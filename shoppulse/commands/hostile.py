"""``bench hostile``: a fuzz run through a live worker.

Hostile messages of many shapes (random bytes, truncations, deep nesting, huge
numbers, wrong types for every field of every topic, bad enums, NaN/Infinity
literals, invalid UTF-8 anywhere, control characters, 1 MB and 10 MB payloads)
are interleaved with simulator traffic and produced to an embedded broker while
one ``shoppulse worker`` subprocess consumes them. It reports what was sent,
what the dead-letter topic holds (read back, by reason and by shape), what
``/metrics`` counted, how often the worker exited (it is restarted), whether
every valid event was counted, the worker's peak RSS and the wall time.
A hostile message's key is ``h:<shape>:<n>`` so its dead letter names its shape.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil

from shoppulse.commands.bench import _events, _scrape, _sum
from shoppulse.streams.broker import EmbeddedBroker, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH, Config, load_config
from shoppulse.streams.schemas import REASONS
from shoppulse.streams.topics import ensure_topics

Shape = Callable[[random.Random, str, dict[str, Any], Config], bytes | None]
MB = 1 << 20


def _dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def _set_raw(event: dict[str, Any], field: str, literal: bytes) -> bytes:
    """``event`` as JSON with ``field``'s value replaced by the raw JSON ``literal``."""
    return _dumps({**event, field: 0}).replace(f'"{field}":0'.encode(), f'"{field}":'.encode()
                                               + literal, 1)


def _fields(config: Config, topic: str, *types: str, enum: bool | None = None) -> list[str]:
    return [n for n, f in config.topics[topic].fields.items()
            if (not types or f.type in types) and (enum is None or (f.enum is not None) == enum)]


_OTHER_TYPES = {
    "string": [b"12", b"-3.5", b"true", b"null", b"[]", b'{"a":1}', b"1e999"],
    "number": [b'"12.5"', b"true", b"null", b"[1]", b'{"v":1}', b'""'],
    "integer": [b'"7"', b"true", b"null", b"[7]", b"{}", b"7.5"],
    "timestamp": [b'"2026-01-01T00:00:00Z"', b"true", b"null", b"[]", b"{}"],
    "boolean": [b'"true"', b"1", b"0", b"null", b"[]", b"{}"],
}
_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xed\xa0\x80",
             b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
_CONTROLS = ["\u0000", "\u0007", "\u001b", "\u007f", "\u0085", "\u200b", "\u202e", "\u2066", "\n"]


def random_bytes(rng, topic, ev, cfg):
    return rng.randbytes(rng.randint(0, 600))


def truncated(rng, topic, ev, cfg):
    raw = _dumps(ev)
    return raw[: rng.randrange(len(raw))]


def deep_nesting(rng, topic, ev, cfg):
    depth = rng.choice([cfg.max_event_depth + 1, 100, 980, 1000, 5000, 20000])
    kind = rng.randrange(4)
    if kind == 0:
        return b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 1:  # a valid event with a deep unknown field
        return _dumps(ev)[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 2:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth


def huge_number(rng, topic, ev, cfg):
    field = rng.choice(list(cfg.topics[topic].fields))
    literal = rng.choice([b"1e999", b"-1e999", b"9" * rng.randint(20, 5000), b"1e308" * 1,
                          b"-" + b"9" * 400, b"123456789012345678901234567890.5"])
    return _set_raw(ev, field, literal)


def wrong_type(rng, topic, ev, cfg):
    field = rng.choice(list(cfg.topics[topic].fields))
    return _set_raw(ev, field, rng.choice(_OTHER_TYPES[cfg.topics[topic].fields[field].type]))


def bad_enum(rng, topic, ev, cfg):
    field = rng.choice(_fields(cfg, topic, enum=True))
    value = rng.choice(["teleported", "", "WEB", " web", "web ", "x" * 300, "null", "ñ"])
    return _dumps({**ev, field: value})


def nan_infinity(rng, topic, ev, cfg):
    field = rng.choice(_fields(cfg, topic, "number", "timestamp", "integer")
                       or list(cfg.topics[topic].fields))
    return _set_raw(ev, field, rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"]))


def bad_utf8(rng, topic, ev, cfg):
    raw = _dumps(ev) if rng.random() < 0.5 else _dumps({**ev, "note": "abc"})
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + rng.choice(_BAD_UTF8) + raw[at:]


def control_chars(rng, topic, ev, cfg):
    field = rng.choice(_fields(cfg, topic, "string", enum=False))
    char = rng.choice(_CONTROLS)
    if rng.random() < 0.5:  # raw in the JSON text: not JSON
        raw = _dumps({**ev, field: "ab"})
        return raw.replace(b'"ab"', b'"a' + char.encode() + b'b"', 1)
    return _dumps({**ev, field: f"a{char}b"})  # escaped or UTF-8: valid JSON, bad value


def bad_surrogate(rng, topic, ev, cfg):
    field = rng.choice(_fields(cfg, topic, "string", enum=False))
    return _dumps({**ev, field: "ab"}).replace(b'"ab"', rng.choice(
        [b'"\\ud800"', b'"\\udc00x"', b'"\\ud800\\u0041"']), 1)


def missing_or_empty(rng, topic, ev, cfg):
    spec = cfg.topics[topic]
    if rng.random() < 0.3:
        return _dumps({**ev, spec.key: ""})
    required = [n for n, f in spec.fields.items() if f.required]
    field = rng.choice(required)
    return _dumps({k: v for k, v in ev.items() if k != field})


def out_of_range(rng, topic, ev, cfg):
    spec = cfg.topics[topic]
    bounded = [n for n, f in spec.fields.items()
               if f.type == "timestamp" or f.min is not None or f.max is not None
               or f.max_length is not None]
    field = rng.choice(bounded)
    f = spec.fields[field]
    if f.type == "string":
        return _dumps({**ev, field: "y" * (f.max_length + rng.randint(1, 5000))})
    if f.type == "timestamp":
        return _dumps({**ev, field: rng.choice([0, 12, -1, 5e9, 1e15])})
    value = (f.min - rng.uniform(0.001, 1e6)) if f.min is not None else (f.max + 1)
    return _dumps({**ev, field: value})


def not_object(rng, topic, ev, cfg):
    return rng.choice([b"[]", b"1", b'"event"', b"null", b"true", b"", b" ", _dumps([ev]),
                       b"\xef\xbb\xbf" + _dumps(ev), None])


def size_1mb(rng, topic, ev, cfg):
    return _dumps({**ev, "pad": "p" * MB})


def size_10mb(rng, topic, ev, cfg):
    return _dumps({**ev, "pad": "p" * (10 * MB)})


SHAPES: dict[str, Shape] = {f.__name__: f for f in (
    random_bytes, truncated, deep_nesting, huge_number, wrong_type, bad_enum, nan_infinity,
    bad_utf8, control_chars, bad_surrogate, missing_or_empty, out_of_range, not_object)}
#: big shapes and one message of each per that many hostile ones
BIG: dict[str, tuple[Shape, int]] = {"size_1mb": (size_1mb, 5_000),
                                     "size_10mb": (size_10mb, 25_000)}


def hostile_messages(n: int, config: Config, seed: int) -> Iterator[tuple[str, str, str,
                                                                          bytes | None]]:
    """``n`` hostile (shape, topic, key, value): small shapes in turn, big ones rarely."""
    rng = random.Random(seed)
    bases: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for ev in _events(2000, seed=seed + 1):
        bases[ev.topic].append(ev.value)
    topics = sorted(bases)
    big = [(name, shape) for name, (shape, every) in BIG.items() for _ in range(max(1, n // every))]
    small = list(SHAPES.items())
    for i in range(n):
        name, shape = big[i] if i < len(big) else small[i % len(small)]
        topic = topics[rng.randrange(len(topics))]
        yield name, topic, f"h:{name}:{i}", shape(rng, topic, rng.choice(bases[topic]), config)


async def _produce(bootstrap: str, stream: list[tuple[str, bytes, bytes | None]],
                   partitions: dict[str, int]) -> tuple[int, list[tuple[bytes, str]]]:
    """Send in order; return (accepted, [(key, error)] for messages the broker refused)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1,
                                max_request_size=64 * MB, max_batch_size=1 * MB)
    await producer.start()
    part = DefaultPartitioner()
    refused: list[tuple[bytes, str]] = []
    futures: list[tuple[bytes, Any]] = []
    try:
        for topic, key, value in stream:
            n = partitions[topic]
            try:
                fut = await producer.send(topic, value, key=key,
                                          partition=part(key, list(range(n)), list(range(n))))
            except Exception as exc:  # refused before sending (size): report it
                refused.append((key, f"{type(exc).__name__}: {exc}"))
                continue
            futures.append((key, fut))
            if len(futures) >= 5000:
                refused.extend(await _settle(futures))
                futures = []
        refused.extend(await _settle(futures))
    finally:
        await producer.stop()
    return len(stream) - len(refused), refused


async def _settle(futures: list[tuple[bytes, Any]]) -> list[tuple[bytes, str]]:
    results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
    return [(k, f"{type(r).__name__}: {r}") for (k, _), r in zip(futures, results, strict=True)
            if isinstance(r, BaseException)]


async def _read_deadletters(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    """Every dead letter: key and headers (up to the true end: Tansu reports it short)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shoppulse.streams.offsets import log_end_offsets, read_range

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * MB)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await log_end_offsets(consumer, [tp]))[tp]
        return [(m.key, {k: v.decode(errors="replace") for k, v in m.headers})
                async for m in read_range(consumer, tp, 0, end)]
    finally:
        await consumer.stop()


def _settled_deadletters(bootstrap: str, topic: str, expected: float
                         ) -> list[tuple[bytes | None, dict]]:
    """Read back until all ``expected`` are there or the count stops growing (10 s)."""
    dead: list[tuple[bytes | None, dict]] = []
    last_growth = time.monotonic()
    while True:
        got = asyncio.run(_read_deadletters(bootstrap, topic))
        if len(got) > len(dead):
            last_growth = time.monotonic()
        dead = got
        if len(dead) >= expected or time.monotonic() - last_growth > 10:
            return dead
        time.sleep(1)


class _Worker:
    """The worker subprocess; restarted if it exits, each exit counted as a crash."""

    def __init__(self, broker: EmbeddedBroker, app: str, log: Path) -> None:
        self.broker, self.app, self.log = broker, app, log
        self.crashes: list[str] = []
        self.peak = 0
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "SHOPPULSE_APP": self.app, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker",
                 self.broker.url, "--config", str(DEFAULT_PATH), "--web-port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def poll(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            self.crashes.append(f"exit {self.proc.returncode}: {tail}")
            self._start()
            return
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.ps.memory_info().rss)

    def scrape(self) -> str | None:
        try:
            return _scrape(self.port)
        except OSError:
            return None

    def stop(self) -> None:
        stop_groups([self.proc], timeout=20)


def run_hostile(*, hostile: int = 100_000, valid: int = 100_000, seed: int = 1,
                timeout: float = 1800.0, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the fuzz benchmark; return its figures (see the module docstring)."""
    t0 = time.perf_counter()
    app = f"hostile{os.getpid()}"
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        cfg = ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app}),
                            broker.bootstrap)
        say(f"generating {hostile} hostile messages and {valid} simulator events ...")
        rng = random.Random(seed)
        bad = list(hostile_messages(hostile, cfg, seed))
        good = _events(valid, seed=seed + 7)
        shapes_sent = collections.Counter(name for name, *_ in bad)
        stream: list[tuple[str, bytes, bytes | None]] = [
            (e.topic, e.key.encode(), orjson.dumps(e.value)) for e in good]
        for _, topic, key, value in bad:  # hostile at random places, valid order kept
            stream.append((topic, key.encode(), value))
        hostile_pos = sorted(rng.sample(range(len(stream)), hostile))
        order = _interleave(len(good), hostile_pos)
        stream = [stream[i] for i in order]
        del good, bad
        worker = _Worker(broker, app, Path(tmp) / "worker.log")
        try:
            partitions = {t: s.partitions for t, s in cfg.topics.items()}
            say(f"producing {len(stream)} messages while the worker consumes ...")
            accepted, refused = asyncio.run(_produce(broker.bootstrap, stream, partitions))
            refused_hostile = sum(1 for k, _ in refused if k.startswith(b"h:"))
            refused_valid = len(refused) - refused_hostile
            hostile_in, valid_in = hostile - refused_hostile, valid - refused_valid
            say(f"produced {accepted} ({len(refused)} refused by the broker)")
            del stream
            counted = invalid = 0.0
            last_change, last = time.monotonic(), (-1.0, -1.0)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                worker.poll()
                text = worker.scrape()
                if text is not None:
                    counted = _sum(text, "shoppulse_events_total")
                    invalid = _sum(text, "shoppulse_events_invalid_total")
                    if (counted, invalid) != last:
                        last, last_change = (counted, invalid), time.monotonic()
                if counted >= valid_in and invalid >= hostile_in:
                    break
                if time.monotonic() - last_change > 120:  # stuck: report what we have
                    break
                time.sleep(0.5)
            dead = _settled_deadletters(broker.bootstrap, cfg.topic_name("deadletter"), invalid)
        finally:
            worker.stop()
    reasons = collections.Counter(h.get("shoppulse.reason", "") for _, h in dead)
    dead_shapes = collections.Counter((k or b"").decode(errors="replace").split(":")[1]
                                      if (k or b"").startswith(b"h:") else "valid?"
                                      for k, _ in dead)
    missing = {s: n - dead_shapes.get(s, 0) for s, n in shapes_sent.items()
               if n - dead_shapes.get(s, 0) > 0}
    return {
        "hostile_sent": hostile_in,
        "valid_sent": valid_in,
        "refused_by_broker": len(refused),
        "refused_examples": [f"{k.decode(errors='replace')}: {e[:160]}" for k, e in refused[:3]],
        "dead_lettered": len(dead),
        "dead_lettered_with_reason": sum(n for r, n in reasons.items() if r in REASONS),
        "counted_invalid": invalid,
        "valid_counted": counted,
        "crashes": len(worker.crashes),
        "crash_tails": worker.crashes[:2],
        "peak_rss_mb": worker.peak / MB,
        "seconds": time.perf_counter() - t0,
        "reasons": dict(reasons.most_common()),
        "shapes_sent": dict(shapes_sent),
        "shapes_not_dead_lettered": missing,
    }


def _interleave(n_good: int, hostile_pos: list[int]) -> list[int]:
    """Indices into [good..., hostile...] with hostile ones at ``hostile_pos``."""
    out, g, h = [], 0, 0
    for i in range(n_good + len(hostile_pos)):
        if h < len(hostile_pos) and hostile_pos[h] == i:
            out.append(n_good + h)
            h += 1
        else:
            out.append(g)
            g += 1
    return out


def hostile_bench(*, hostile: int, valid: int, seed: int, as_json: bool) -> dict[str, Any]:
    say = (lambda *a: None) if as_json else (lambda m: print(m, file=sys.stderr, flush=True))
    r = run_hostile(hostile=hostile, valid=valid, seed=seed, say=say)
    if as_json:
        print(orjson.dumps(r).decode())
        return r
    print(f"hostile messages sent                 {r['hostile_sent']:>10,}")
    print(f"  refused by the broker               {r['refused_by_broker']:>10,}")
    print(f"dead-lettered (read back)             {r['dead_lettered']:>10,}"
          f"   with a known reason {r['dead_lettered_with_reason']:,}")
    print(f"counted invalid (/metrics)            {r['counted_invalid']:>10,.0f}")
    print(f"worker crashes                        {r['crashes']:>10}")
    print(f"valid events counted / sent           {r['valid_counted']:>10,.0f} / "
          f"{r['valid_sent']:,}")
    print(f"peak RSS of the worker                {r['peak_rss_mb']:>10.0f} MB")
    print(f"seconds                               {r['seconds']:>10.1f}")
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in r["reasons"].items()))
    if r["shapes_not_dead_lettered"]:
        print(f"NOT dead-lettered, by shape: {r['shapes_not_dead_lettered']}")
    for tail in r["crash_tails"]:
        print(f"crash: {tail}")
    for ex in r["refused_examples"]:
        print(f"refused: {ex}")
    return r
