"""``shoppulse bench alerts``: alert transitions through the notify agent to a webhook.

Measured on the embedded stack: a ``shoppulse worker`` with one signed webhook receiver
(``group_by: [...]``, ``group_wait: 0s``: every alert is its own group, so each transition
is one notification and the figure is the pipeline's, not a timer's) and a verifying
receiver in this process. Two phases per run: *paced* (``--rate`` new FIRING transitions a
second for ``--seconds``; latency of each from the moment its Alert record is produced to
the webhook's receipt) and *burst* (``--burst`` transitions produced at once; transitions/s
from the first produced to the last received). The baseline, measured in the same run on
its own topic: a raw aiokafka consumer that signs and POSTs each record itself (no Faust,
no table, no dedupe).

``verdicts_per_s`` comes from :func:`shoppulse.commands.rules_bench.rules_throughput`
(verdicts through rules and lifecycle, plain code, against decoding alone). The latency
starts at the Alert record's production, not at the window's close: the rules add their
own share, which ``verdicts_per_s`` bounds.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.notifiers.payload import Notification, webhook_body
from shoppulse.alerting.notifiers.receiver import WebhookReceiver
from shoppulse.alerting.notifiers.signing import HEADER, sign
from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.records import Alert
from shoppulse.streams.topics import ensure_topics

BENCH_T0 = 1_767_261_600.0


def bench_alert(name: str) -> Alert:
    labels = {"metric": "bench", "series": name}
    return Alert(fingerprint=fingerprint("bench_rule", labels), episode=1, state="firing",
                 rule="bench_rule", severity="warning", labels=labels, starts_at=BENCH_T0,
                 at=BENCH_T0, value=1.0, expected=0.5, lower=0.4, upper=0.6, score=0.99,
                 annotations={"summary": "bench"})


class Clock:
    """When each alert was produced and first received."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.received: dict[str, float] = {}

    def on_receive(self, payload: dict[str, Any], at: float) -> None:
        for a in payload.get("alerts", []):
            self.received.setdefault(a["fingerprint"], at)

    def wait(self, fps: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(fp in self.received for fp in fps):
                return True
            time.sleep(0.05)
        return False

    def latencies(self, fps: list[str]) -> list[float]:
        return [self.received[fp] - self.sent[fp] for fp in fps if fp in self.received]

    def rate(self, fps: list[str]) -> float:
        got = [self.received[fp] for fp in fps if fp in self.received]
        span = max(got) - min(self.sent[fp] for fp in fps)
        return len(got) / max(span, 1e-9)


async def _produce(bootstrap: str, topic: str, alerts: list[Alert], rate: float | None,
                   clock: Clock) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        t0 = time.perf_counter()
        futures = []
        for i, a in enumerate(alerts):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            clock.sent[a.fingerprint] = time.time()
            futures.append(await producer.send(topic, a.dumps(), key=a.fingerprint.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _raw_forwarder(bootstrap: str, topic: str, url: str, secret: str,
                         stop: asyncio.Event, ready: asyncio.Event) -> None:
    """The baseline: consume, sign and POST each record, nothing else."""
    import aiohttp
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shoppulse.agents.transport import FETCH_MAX_WAIT_MS  # the worker's, for fairness

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        while not parts:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                for msgs in batch.values():
                    for m in msgs:
                        a = Alert.loads(m.value)
                        body = webhook_body(Notification("baseline", a.fingerprint, {}, [a]))
                        async with session.post(url, data=body, headers={
                                HEADER: sign(body, [secret]),
                                "Content-Type": "application/json"}) as resp:
                            await resp.read()
    finally:
        await consumer.stop()


def _phases(bootstrap: str, topic: str, clock: Clock, tag: str, rate: float, seconds: float,
            burst: int) -> dict[str, Any]:
    paced = [bench_alert(f"{tag}-p{i}") for i in range(int(rate * seconds))]
    asyncio.run(_produce(bootstrap, topic, paced, rate, clock))
    fps = [a.fingerprint for a in paced]
    clock.wait(fps, 30)
    lat = sorted(clock.latencies(fps))
    bursts = [bench_alert(f"{tag}-b{i}") for i in range(burst)]
    asyncio.run(_produce(bootstrap, topic, bursts, None, clock))
    bfps = [a.fingerprint for a in bursts]
    clock.wait(bfps, 120)
    return {"p50": statistics.median(lat) if lat else None,
            "p99": statistics.quantiles(lat, n=100)[98] if len(lat) >= 2 else None,
            "delivered": len(lat) + len(clock.latencies(bfps)),
            "expected": len(paced) + len(bursts), "tps": clock.rate(bfps)}


def _baseline(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock,
              **kw: Any) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"{app}.bench-baseline"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 4, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    import threading

    loop = asyncio.new_event_loop()
    stop, ready = asyncio.Event(), asyncio.Event()

    def run() -> None:
        loop.run_until_complete(_raw_forwarder(broker.bootstrap, topic, url, secret, stop,
                                               ready))

    # events are bound to the loop on first use (Python >= 3.10): use them there only
    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        return _phases(broker.bootstrap, topic, clock, f"base-{app}", **kw)
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def _worker(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock,
            **kw: Any) -> dict[str, Any]:
    cfg = ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app}), broker.bootstrap)
    topic = cfg.topic_name("alerts")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-alerts.yaml"
        path.write_text(DEFAULT_PATH.read_text() + (
            "\nnotifiers:\n  bench:\n    type: webhook\n"
            f"    url: {url}\n    secrets_env: [BENCH_WEBHOOK_SECRET]\n"
            "    group_by: ['...']\n    group_wait: 0s\n    group_interval: 1s\n"))
        env = {**os.environ, "SHOPPULSE_APP": app, "BENCH_WEBHOOK_SECRET": secret}
        log = Path(tmp) / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker", broker.url,
             "--config", str(path), "--web-port", str(free_port())],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        try:
            warm = bench_alert(f"{app}-warmup")
            asyncio.run(_produce(broker.bootstrap, topic, [warm], None, clock))
            if not clock.wait([warm.fingerprint], 120):
                raise RuntimeError("the worker delivered nothing within 120 s: "
                                   + log.read_text(errors="replace")[-2000:])
            return _phases(broker.bootstrap, topic, clock, app, **kw)
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)


def alerts(*, rate: float = 20.0, seconds: float = 10.0, burst: int = 500, runs: int = 1,
           as_json: bool = False) -> dict[str, Any]:
    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    secret = secrets.token_hex(16)
    clock = Clock()
    kw = {"rate": rate, "seconds": seconds, "burst": burst}
    base, pipe = [], []
    with EmbeddedBroker() as broker:
        rx = WebhookReceiver(free_port(), [secret], clock.on_receive).start()
        try:
            for i in range(runs):
                app = f"benchalerts{i}{os.getpid()}"
                base.append(_baseline(broker, app, rx.url, secret, clock, **kw))
                say(f"run {i + 1}: baseline (raw consumer, sign, POST): "
                    f"p50 {base[-1]['p50']:.3f}s p99 {base[-1]['p99']:.3f}s, "
                    f"{base[-1]['tps']:,.0f} transitions/s")
                pipe.append(_worker(broker, app, rx.url, secret, clock, **kw))
                say(f"run {i + 1}: worker notify agent -> webhook: p50 {pipe[-1]['p50']:.3f}s "
                    f"p99 {pipe[-1]['p99']:.3f}s, {pipe[-1]['tps']:,.0f} transitions/s, "
                    f"{pipe[-1]['delivered']}/{pipe[-1]['expected']} delivered")
        finally:
            rx.stop()

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    from shoppulse.commands.rules_bench import rules_throughput

    rules = rules_throughput(runs=runs)
    say(f"rules + lifecycle: {rules['verdicts_per_s']:,.0f} verdicts/s (decode alone "
        f"{rules['decode_only_per_s']:,.0f}/s)")
    result = {
        "verdicts_per_s": rules["verdicts_per_s"],
        "verdicts_decode_only_per_s": rules["decode_only_per_s"],
        "close_to_webhook_p50_s": med(pipe, "p50"),
        "close_to_webhook_p99_s": med(pipe, "p99"),
        "latency_from": "alert_record_produced",
        "transitions_per_s": med(pipe, "tps"),
        "baseline_p50_s": med(base, "p50"),
        "baseline_p99_s": med(base, "p99"),
        "baseline_transitions_per_s": med(base, "tps"),
        "delivered": sum(p["delivered"] for p in pipe),
        "expected": sum(p["expected"] for p in pipe),
        "signature_rejects": rx.rejected,
        "rate": rate, "seconds": seconds, "burst": burst, "runs": runs,
    }
    result["p99_ratio"] = result["close_to_webhook_p99_s"] / result["baseline_p99_s"]
    result["throughput_ratio"] = result["transitions_per_s"] / result["baseline_transitions_per_s"]
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        print(f"alert transitions through notify agent and webhook, medians of {runs} run(s)")
        print("  (latency from the Alert record's production: the rules engine is not merged)")
        print(f"  worker   p50 {result['close_to_webhook_p50_s']:.3f}s  p99 "
              f"{result['close_to_webhook_p99_s']:.3f}s  {result['transitions_per_s']:,.0f}/s")
        print(f"  baseline p50 {result['baseline_p50_s']:.3f}s  p99 "
              f"{result['baseline_p99_s']:.3f}s  {result['baseline_transitions_per_s']:,.0f}/s")
        print(f"  ratio worker/baseline: p99 {result['p99_ratio']:.2f}x, "
              f"throughput {result['throughput_ratio']:.2f}")
        print(f"  delivered {result['delivered']}/{result['expected']}, signature rejects "
              f"{result['signature_rejects']}; goal p99 <= 1 s: "
              f"{'met' if result['close_to_webhook_p99_s'] <= 1.0 else 'MISSED'}")
    return result
