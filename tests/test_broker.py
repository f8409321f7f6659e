"""The embedded broker: found, started on loopback, reachable, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from shoppulse.streams.broker import (
    BrokerError,
    EmbeddedBroker,
    find_tansu,
    parse_broker_url,
    wait_until_ready,
)


def alive(pid: int) -> bool:
    """Running, not a zombie (also used by other process tests)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:  # reaped in between
        return False


def test_start_answers_metadata_and_stop_kills_the_process():
    with EmbeddedBroker() as b:
        pid = b.process.pid
        assert b.bootstrap.startswith("127.0.0.1:")
        wait_until_ready(b.bootstrap, timeout=5)
    assert not alive(pid)


def test_broker_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from shoppulse.streams.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.process.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "tansu outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_explicit_binary_must_be_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPPULSE_TANSU_BIN", str(tmp_path / "missing"))
    with pytest.raises(BrokerError, match="SHOPPULSE_TANSU_BIN"):
        find_tansu()


def test_wheel_binary_is_found(monkeypatch):
    monkeypatch.delenv("SHOPPULSE_TANSU_BIN", raising=False)
    assert find_tansu().endswith("tansu")


@pytest.mark.parametrize("url", ["localhost:9092", "kafka://", "kafka://host", "http://h:1"])
def test_bad_broker_urls(url):
    with pytest.raises(BrokerError, match="kafka://host:port"):
        parse_broker_url(url)


def test_broker_url_with_several_hosts():
    assert parse_broker_url("kafka://a:1,b:2") == "a:1,b:2"


def test_unreachable_broker_is_reported():
    with pytest.raises(BrokerError, match="did not answer"):
        wait_until_ready("127.0.0.1:1", timeout=1)


def test_session_fixture_round_trips_with_an_independent_client(broker):
    """The session broker (same code as the CLI) speaks Kafka to kafka-python too."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send("roundtrip", key=b"k", value=b'{"x": 1}', partition=0).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=5000)
    tp = TopicPartition("roundtrip", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b'{"x": 1}']


def test_log_end_offsets_count_every_record_of_the_last_batch(broker):
    """The broker may report the end of a multi-record batch short; ours is exact."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    from shoppulse.streams.offsets import log_end_offsets

    topic = f"ends-{os.getpid()}-{time.monotonic_ns()}"
    tp = TopicPartition(topic, 0)

    async def run() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await producer.start()
        await reader.start()
        try:
            ends = []
            for n in (1, 3, 5):  # n records sent together: one batch
                futures = [await producer.send(topic, b"v", partition=0) for _ in range(n)]
                last = (await asyncio.gather(*futures))[-1].offset
                ends.append((await log_end_offsets(reader, [tp]))[tp] - (last + 1))
            return ends
        finally:
            await producer.stop()
            await reader.stop()

    assert asyncio.run(run()) == [0, 0, 0]
