"""Poison messages: every shape is one dead letter with its reason, never a stopped partition.

The decoder is checked on the shapes that crashed the ingest service (RecursionError on
deep nesting) and on arbitrary bytes (hypothesis); the local stage dead-letters a record
that raises; and a live worker on the embedded broker, fed by an independent client
(kafka-python), dead-letters every poison shape with its reason in the headers, stays up,
and counts the valid events around them exactly as the oracle does.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from shoppulse.agents.local_stage import PartitionAggregator, Record
from shoppulse.agents.plan import compile_plan
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.schemas import REASONS, Invalid, compile_topic, too_deep
from shoppulse.streams.simulator import Simulator
from tests.kafka_io import input_records, read_topic
from tests.oracle import compute_points
from tests.test_pipeline import START, _scrape, assert_equal_to_oracle, collect

CONFIG = load_config(DEFAULT_PATH, env={})
DECODERS = {t: compile_topic(t, s, max_bytes=CONFIG.max_event_bytes,
                             max_depth=CONFIG.max_event_depth)
            for t, s in CONFIG.topics.items()}


@functools.cache
def valid_bases() -> dict[str, dict[str, Any]]:
    """One valid event per topic, from the simulator (the first of each topic)."""
    out: dict[str, dict[str, Any]] = {}
    for ev in Simulator(seed=5, rate=20, start=START).events(600):
        out.setdefault(ev.topic, ev.value)
        if len(out) == len(CONFIG.topics):
            break
    assert set(out) == set(CONFIG.topics)
    return out


def with_extra(base: dict[str, Any], extra: bytes) -> bytes:
    """``base`` as JSON with ``extra`` (``"name": value`` bytes) added as the last member."""
    return orjson.dumps(base)[:-1] + b"," + extra + b"}"


def poison_cases() -> list[tuple[str, str, bytes, str, str | None]]:
    """(topic, name, payload, reason, field named in the dead letter or None)."""
    b = valid_bases()
    click, order, ship = b["clicks"], b["orders"], b["logistics"]
    return [
        ("orders", "deep_array", b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep", None),
        ("clicks", "deep_unknown_field",
         with_extra(click, b'"x":' + b"[" * 980 + b"]" * 980), "too_deep", None),
        ("logistics", "deep_object", b'{"a":' * 10000 + b"1" + b"}" * 10000, "too_deep", None),
        ("orders", "unclosed_brackets", b"[" * 20000, "too_deep", None),
        ("clicks", "bad_utf8_unknown_field", with_extra(click, b'"x": "ab\xff\xfecd"'),
         "bad_utf8", "x"),
        ("orders", "bad_utf8_known_field",
         orjson.dumps(order).replace(b'"' + order["category"].encode() + b'"', b'"bo\xc3ks"'),
         "bad_utf8", "category"),
        ("clicks", "huge_number_in_string_field",
         orjson.dumps({**click, "page": 1}).replace(b'"page":1', b'"page":1e999'),
         "wrong_type", "page"),
        ("logistics", "huge_integer_in_string_field",
         orjson.dumps({**ship, "carrier": 1}).replace(b'"carrier":1', b'"carrier":' + b"9" * 400),
         "wrong_type", "carrier"),
        ("orders", "infinite_amount",
         orjson.dumps({**order, "amount": 1}).replace(b'"amount":1', b'"amount":1e999'),
         "not_finite", "amount"),
        ("clicks", "escaped_control_char_in_dimension",
         orjson.dumps(click).replace(b'"' + click["category"].encode() + b'"', b'"to\\u0000ys"'),
         "bad_chars", "category"),
        ("orders", "bidi_override_in_dimension",
         orjson.dumps(order).replace(b'"' + order["category"].encode() + b'"',
                                     "\u202eskoob".join('""').encode()),
         "bad_chars", "category"),
        ("logistics", "raw_delete_char_in_id",  # valid JSON: only U+0000-U+001F must be escaped
         orjson.dumps(ship).replace(b'"' + ship["order_id"].encode() + b'"', b'"o\x7f1"'),
         "bad_chars", "order_id"),
        ("clicks", "raw_control_char", orjson.dumps(click).replace(b'"', b'"\x01', 1),
         "bad_json", None),
    ]


@pytest.mark.parametrize("case", poison_cases(), ids=lambda c: c[1])
def test_decoder_dead_letters_every_poison_shape(case):
    topic, _, raw, reason, field = case
    got = DECODERS[topic](raw)
    assert isinstance(got, Invalid), got
    assert (got.reason, got.field) == (reason, field), got
    if field:
        assert field in got.message


def test_depth_limit_is_exact_and_ignores_strings():
    click = valid_bases()["clicks"]
    ok = with_extra(click, b'"x":' + b"[" * 63 + b"]" * 63)  # 64 levels with the event itself
    assert not isinstance(DECODERS["clicks"](ok), Invalid)
    deep = with_extra(click, b'"x":' + b"[" * 64 + b"]" * 64)
    assert DECODERS["clicks"](deep).reason == "too_deep"
    brackets_in_text = with_extra(click, b'"x": "' + b"[{" * 500 + b'\\"]"')
    assert not isinstance(DECODERS["clicks"](brackets_in_text), Invalid)
    for text in (b"[[[[", b"]]]]", b"[[[[\\\\", b'\\"]]]]'):  # escapes end no string early
        raw = b'{"a": "' + text + b'", "b": [1, [2]]}'  # three levels
        assert not too_deep(raw, 3) and too_deep(raw, 2), raw


def test_dead_letter_texts_stay_bounded():
    order = valid_bases()["orders"]
    got = DECODERS["orders"](orjson.dumps({**order, "channel": "x" * 60000}))
    assert got.reason == "bad_enum" and got.field == "channel"
    assert len(got.message) < 600


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2000), topic=st.sampled_from(sorted(CONFIG.topics)))
def test_decoder_never_raises_on_arbitrary_bytes(raw, topic):
    got = DECODERS[topic](raw)
    assert not isinstance(got, Invalid) or got.reason in REASONS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(sorted(CONFIG.topics)), data=st.data())
def test_decoder_never_raises_on_mutated_events(topic, data):
    """Valid events with fields replaced by any JSON value, cut, or with bytes spliced in."""
    event = dict(valid_bases()[topic])
    for name in data.draw(st.lists(st.sampled_from(sorted(event)), max_size=3)):
        event[name] = data.draw(json_values)
    raw = json.dumps(event).encode()  # NaN, Infinity, big integers, lone surrogates
    cut = data.draw(st.integers(0, len(raw)))
    splice = data.draw(st.binary(max_size=8))
    raw = data.draw(st.sampled_from([raw, raw[:cut], raw[:cut] + splice + raw[cut:]]))
    got = DECODERS[topic](raw)
    assert not isinstance(got, Invalid) or got.reason in REASONS


PAYMENTS = """
app: paymentsapp
topics:
  payments:
    partitions: 1
    key: payment_id
    fields:
      event_id: {type: string}
      ts: {type: timestamp}
      payment_id: {type: string}
      amount: {type: number}
metrics:
  - {name: paid, kind: count, topic: payments}
  - {name: paid_amount, kind: sum, topic: payments, field: amount}
"""


def test_record_that_raises_in_the_local_stage_is_dead_lettered_not_fatal(tmp_path):
    """An unbounded number overflows the integer-millionth sum (OverflowError): that record
    becomes an ``internal_error`` dead letter and the records after it are aggregated."""
    (tmp_path / "payments.yaml").write_text(PAYMENTS)
    config = load_config(tmp_path / "payments.yaml", env={})
    plan = compile_plan(config)
    decode = compile_topic("payments", config.topics["payments"])
    agg = PartitionAggregator(config, plan, "payments", decode)
    values = [1.5, 1.7e308, 2.25, 4.0]
    records = [Record(i, b"p", orjson.dumps({"event_id": f"e{i}", "ts": START + i,
                                              "payment_id": "p", "amount": v}))
               for i, v in enumerate(values)]
    batch = agg.process(records)
    assert [(o, inv.reason) for o, _, _, inv in batch.invalid] == [(1, "internal_error")]
    assert "OverflowError" in batch.invalid[0][3].message
    assert batch.events == 3
    sums = [acc for (mi, _, _), acc in batch.parts.items()
            if plan.metrics[mi].name == "paid_amount"]
    assert sums and sums[0][0] == round((1.5 + 2.25 + 4.0) * 1_000_000)


# -- a live worker ------------------------------------------------------------------
@pytest.fixture
def config(kafka, app_name):
    from shoppulse.streams.topics import ensure_topics

    return ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app_name}),
                         kafka.bootstrap)


def send_all(bootstrap: str, messages: list[tuple[str, str, bytes]]) -> None:
    """Produce with kafka-python (murmur2 keys, like every client), in order, and flush."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                             max_in_flight_requests_per_connection=1)
    try:
        for topic, key, value in messages:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush(60)
    finally:
        producer.close(10)


@pytest.mark.broker
def test_live_worker_dead_letters_poison_and_counts_the_rest_exactly(kafka, config, workers):
    valid = [(e.topic, e.key, orjson.dumps(e.value))
             for e in Simulator(seed=23, rate=3, start=START, late_fraction=0.03,
                                duplicate_fraction=0.02, disorder_seconds=4).events(240)]
    cases = poison_cases()
    poison = {raw: (reason, field) for _, _, raw, reason, field in cases}
    # poison between the two halves, on keys of valid events: the same partitions carry
    # valid events after every poison message, so a stopped partition would show
    half = len(valid) // 2
    keyed = [(topic, valid[half + i][1] if valid[half + i][0] == topic else f"k{i}", raw)
             for i, (topic, _, raw, _, _) in enumerate(cases)]
    w = workers(DEFAULT_PATH)
    w.wait_web()
    send_all(kafka.bootstrap, valid[:half] + keyed + valid[half:])

    deadline = time.monotonic() + 90
    dead: list[Any] = []
    while time.monotonic() < deadline and len(dead) < len(cases):
        time.sleep(1)
        dead = read_topic(kafka.bootstrap, config.topic_name("deadletter"))
        assert w.proc.poll() is None, f"worker died: {w.tail()}"
    assert len(dead) == len(cases), f"{len(dead)} of {len(cases)} dead-lettered: {w.tail()}"
    for rec in dead:
        headers = {k: v.decode() for k, v in rec.headers}
        reason, field = poison[rec.value]
        assert headers["shoppulse.reason"] == reason, headers
        assert headers["shoppulse.field"] == (field or ""), headers
        assert headers["shoppulse.error"]

    records = [r for r in input_records(kafka.bootstrap, config) if r[3] not in poison]
    assert len(records) == len(valid)
    expected = compute_points(config, records)
    got = collect(kafka.bootstrap, config.topic_name("metrics"), set(expected), timeout=120)
    assert_equal_to_oracle(got, expected)
    metrics = _scrape(w.metrics_url)
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("shoppulse_events_total{"))
    assert counted == len(valid)
    for reason in {r for r, _ in poison.values()}:
        n = sum(1 for r, _ in poison.values() if r == reason)
        lines = [line for line in metrics.splitlines()
                 if line.startswith("shoppulse_events_invalid_total{")
                 and f'reason="{reason}"' in line]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == n, (reason, lines)
    assert w.proc.poll() is None, "the worker must still be running"


@pytest.mark.broker
def test_short_hostile_bench_dead_letters_everything_and_counts_valid_exactly():
    """``bench hostile`` in small: every shape (a 1 MB and a 10 MB payload included)."""
    from shoppulse.commands.hostile import SHAPES, run_hostile

    r = run_hostile(hostile=1000, valid=1000, seed=4, say=lambda _: None)
    assert r["crashes"] == 0, r["crash_tails"]
    assert r["refused_by_broker"] == 0, r["refused_examples"]
    assert set(r["shapes_sent"]) == {*SHAPES, "size_1mb", "size_10mb"}
    assert not r["shapes_not_dead_lettered"], r
    assert r["dead_lettered"] == r["dead_lettered_with_reason"] == r["hostile_sent"] == 1000
    assert r["counted_invalid"] == 1000
    assert r["valid_counted"] == r["valid_sent"] == 1000
    assert "internal_error" not in r["reasons"], r["reasons"]
