"""``shoppulse bench alerts``: from a window's close to the webhook's receipt, live.

Measured on the embedded stack: a ``shoppulse worker`` (ingest, windows, detect, alert and
notify agents) runs the built-in config with short windows, the built-in rules plus one
bench rule (``BenchGmvHigh``: a category's GMV in a window above a level, ``for: 0``,
no flap damping) and one signed webhook receiver (``group_by: [...]``, ``group_wait:
0s``: every transition is its own notification, so the figure is the pipeline's, not a
timer's). This process produces live ``orders`` events (event time = the wall clock) for
``rate x window`` categories, half of them above the level in each window and the other
half below, alternating, so every window close turns ``rate`` transitions a second
(firing or resolved), and runs the verifying receiver.

*Latency from close*: a window can first close (and its point exist) once event time
passes its end plus grace; on a live run that is the wall clock ``at + grace`` of the
Alert (``at`` = the window's end). The latency of a transition is its webhook receipt
minus that moment. Hops, from the record timestamps the broker keeps (CreateTime, set by
each producer): close -> point on ``<app>.metrics`` (ingest, partials, combine) -> Alert
on ``<app>.alerts`` (the alert agent) -> webhook received (the notify agent, HTTP); and,
beside the alert path, point -> verdict on ``<app>.anomalies`` (the detect agent).

*Baseline* (same run, its own topic): a raw aiokafka consumer that signs and POSTs each
Alert record itself (no Faust, no table, no dedupe), paced at the same rate: what the
alert -> webhook hop costs with nothing but Kafka and HTTP. *Burst*: ``--burst`` Alert
records produced at once, to the worker's alerts topic and to the baseline's:
transitions/s from the first produced to the last received.

``verdicts_per_s`` comes from :func:`shoppulse.commands.rules_bench.rules_throughput`
(verdicts through rules and lifecycle, plain code, against decoding alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.notifiers.payload import Notification, webhook_body
from shoppulse.alerting.notifiers.receiver import WebhookReceiver
from shoppulse.alerting.notifiers.signing import HEADER, sign
from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.records import Alert, MetricPoint, Verdict
from shoppulse.streams.topics import ensure_topics

BENCH_T0 = 1_767_261_600.0
RULE = "BenchGmvHigh"
HIGH, LOW, LEVEL = 1000.0, 1.0, 100.0  # an order's amount above / below, the rule's level
Key = tuple[str, int, str]  # (fingerprint, episode, state): one transition


def bench_alert(name: str) -> Alert:
    labels = {"metric": "bench", "series": name}
    return Alert(fingerprint=fingerprint("bench_rule", labels), episode=1, state="firing",
                 rule="bench_rule", severity="warning", labels=labels, starts_at=BENCH_T0,
                 at=BENCH_T0, value=1.0, expected=0.5, lower=0.4, upper=0.6, score=0.99,
                 annotations={"summary": "bench"})


def pct(values: list[float], q: int) -> float | None:
    """The q-th percentile (statistics' exclusive method), None without two values."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(sorted(values), n=100)[q - 1]


class Clock:
    """When each transition was produced (bench records) and first received."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.transitions: dict[Key, float] = {}
        self.live = 0  # notified transitions of the bench rule
        self.lag: float | None = None  # the latest one's receipt after its window's close
        self.grace = 0.0
        self.newest = 0.0  # the latest window close among them


    def on_receive(self, payload: dict[str, Any], at: float) -> None:
        for a in payload.get("alerts", []):
            self.received.setdefault(a["fingerprint"], at)
            episode = (a.get("shoppulse") or {}).get("episode", 0)
            self.transitions.setdefault((a["fingerprint"], episode, a["status"]), at)
            if (a.get("labels") or {}).get("alertname") == RULE:
                self.live += 1
                self.lag = at - (a["shoppulse"]["at"] + self.grace)
                self.newest = max(self.newest, a["shoppulse"]["at"] + self.grace)

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
        if not got:
            return 0.0
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


# -- the live shop -------------------------------------------------------------------
def categories(n: int) -> list[str]:
    return [f"bench{i:04d}" for i in range(n)]


def is_high(category_index: int, window_start: float, window: float) -> bool:
    """Half of the categories are above the level in a window, the other half below;
    each flips at every window."""
    return (round(window_start / window) + category_index) % 2 == 0


async def live_orders(bootstrap: str, topic: str, partitions: int, cats: list[str],
                      window: float, events_per_s: float, stop: threading.Event) -> int:
    """Orders placed now, round robin over categories and partitions, until ``stop``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    await producer.start()
    sent = 0
    try:
        step = 1.0 / events_per_s
        nxt = time.monotonic()
        for i in itertools.count():
            if stop.is_set():
                break
            delay = nxt - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            nxt += step
            ts = time.time()
            c = i % len(cats)
            start = ts - ts % window
            value = {"event_id": f"b{i}", "ts": ts, "order_id": f"o{i}", "visitor_id": f"v{i}",
                     "event_type": "placed", "channel": "direct", "platform": "web",
                     "device": "desktop", "category": cats[c], "currency": "USD",
                     "amount": HIGH if is_high(c, start, window) else LOW}
            await producer.send(topic, orjson.dumps(value), key=f"o{i}".encode(),
                                partition=i % partitions)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def bench_config(url: str, *, window: float, grace: float, n_series: int) -> dict[str, Any]:
    """The built-in config with short windows, the bench rule and the bench receiver."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["windows"] = {"size": f"{window:g}s", "grace": f"{grace:g}s", "idle_timeout": "2s"}
    data["sessions"]["bounce_timeout"] = f"{grace:g}s"  # may not exceed grace
    data["cardinality_cap"] = max(int(data.get("cardinality_cap", 50)), n_series + 10)
    data["rules"] = [*data.get("rules", []), {
        "name": RULE, "kind": "threshold", "metric": "gmv", "op": ">", "value": LEVEL,
        "for": "0s", "keep_firing_for": "0s", "flap_window": "0s", "flap_for": "0s",
        "severity": "warning",
        "annotations": {"summary": "GMV {{ value | num }} in {{ labels.category }}"}}]
    data["notifiers"] = {"bench": {
        "type": "webhook", "url": url, "secrets_env": ["BENCH_WEBHOOK_SECRET"],
        "group_by": ["..."], "group_wait": "0s", "group_interval": "10ms"}}
    return data


# -- hops, from the record timestamps on the topics -------------------------------------
async def _partitions(consumer: Any, topic: str) -> list[Any]:
    """The topic's partitions, once the started consumer's metadata knows the topic."""
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic) or set()
    while not parts:
        await consumer.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def _records(bootstrap: str, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    from shoppulse.streams.offsets import log_end_offsets, read_range

    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    try:
        tps = await _partitions(reader, topic)
        ends = await log_end_offsets(reader, tps)
        out = []
        for tp in tps:
            async for rec in read_range(reader, tp, 0, ends[tp], stall=10.0):
                out.append(rec)
        return out
    finally:
        await reader.stop()


def _window_key(metric: str, labels: dict[str, str], end: float) -> tuple[str, str, float]:
    return metric, orjson.dumps(dict(sorted(labels.items()))).decode(), round(end, 3)


def hops(bootstrap: str, cfg: Any, received: dict[Key, float], grace: float,
         since: float, until: float) -> dict[str, Any]:
    """Per bench transition whose window closed in [since, until] (each point of a bench
    category is one: they flip at every window): the time of each hop, in seconds, from
    the window's close to the webhook's receipt; None where it never got that far."""
    async def read_all() -> tuple[list[Any], list[Any], list[Any]]:
        return (await _records(bootstrap, cfg.topic_name("metrics")),
                await _records(bootstrap, cfg.topic_name("anomalies")),
                await _records(bootstrap, cfg.topic_name("alerts")))

    metrics, anomalies, alerts = asyncio.run(read_all())
    points: dict[tuple[str, str, float], float] = {}
    for rec in metrics:
        p = MetricPoint.loads(rec.value)
        if p.metric == "gmv" and since <= p.window_end + grace <= until:
            points.setdefault(_window_key(p.metric, p.labels, p.window_end),
                              rec.timestamp / 1000)
    verdict_at: dict[tuple[str, str, float], float] = {}
    for rec in anomalies:
        v = Verdict.loads(rec.value)
        if v.metric == "gmv":
            verdict_at.setdefault(_window_key(v.metric, v.labels, v.window_end),
                                  rec.timestamp / 1000)
    alert_at: dict[tuple[str, str, float], tuple[Key, float]] = {}
    for rec in alerts:
        a = Alert.loads(rec.value)
        if a.rule == RULE and a.state in ("firing", "resolved"):
            labels = {k: v for k, v in a.labels.items() if k != "metric"}
            alert_at[_window_key("gmv", labels, a.at)] = ((a.fingerprint, a.episode, a.state),
                                                          rec.timestamp / 1000)
    # every bench category flips at every window: each of its points is a transition
    rows: list[dict[str, Any]] = []
    for wk, p_at in points.items():
        close = wk[2] + grace
        key, a_at = alert_at.get(wk, (None, None))
        got = received.get(key) if key is not None else None
        v_at = verdict_at.get(wk)
        rows.append({
            "state": None if key is None else key[2],
            "close_to_point": p_at - close,
            "point_to_alert": None if a_at is None else a_at - p_at,
            "alert_to_webhook": None if got is None or a_at is None else got - a_at,
            "close_to_webhook": None if got is None else got - close,
            "point_to_verdict": None if v_at is None else v_at - p_at})
    return {"rows": rows, "verdicts": len(verdict_at)}


def expected_transitions(n_series: int, window: float, grace: float, since: float,
                         until: float) -> int:
    """Bench transitions whose window closes in [since, until]: one per series and window
    (each category flips at every window), whether or not the worker emitted its point.

    >>> expected_transitions(10, 2.0, 1.0, 100.5, 110.5)  # closes at 101, 103, ... 109
    50
    """
    first = math.ceil((since - grace) / window)
    last = math.floor((until - grace) / window)
    return n_series * max(0, last - first + 1)


def _summary(rows: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """p50/p99 per hop over the transitions that got that far (``delivered`` says how many
    did, of the ``expected`` ones, whose points may never have come: the percentiles leave
    the others out, so a run that did not deliver them all cannot meet the goal);
    close -> webhook also per state (a RESOLVED joins a group that was notified before, a
    FIRING starts a new one: their timers differ)."""
    out: dict[str, Any] = {"transitions": max(expected, len(rows)),
                           "delivered": sum(r["close_to_webhook"] is not None for r in rows)}
    for hop in ("close_to_point", "point_to_alert", "alert_to_webhook", "close_to_webhook",
                "point_to_verdict"):
        vals = [r[hop] for r in rows if r[hop] is not None]
        out[f"{hop}_p50_s"] = statistics.median(vals) if vals else None
        out[f"{hop}_p99_s"] = pct(vals, 99)
    for state in ("firing", "resolved"):
        vals = [r["close_to_webhook"] for r in rows
                if r["state"] == state and r["close_to_webhook"] is not None]
        out[f"close_to_webhook_{state}_p50_s"] = statistics.median(vals) if vals else None
        out[f"close_to_webhook_{state}_p99_s"] = pct(vals, 99)
    return out


def _live(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock, *,
          rate: float, seconds: float, window: float, grace: float, burst: int,
          say: Any) -> dict[str, Any]:
    n_series = max(2, round(rate * window))
    cats = categories(n_series)
    events_per_s = max(200.0, 4.0 * n_series / window)  # every category in every window
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench-alerts.yaml"
        path.write_text(yaml.safe_dump(bench_config(url, window=window, grace=grace,
                                                    n_series=n_series), sort_keys=False))
        cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app}), broker.bootstrap)
        env = {**os.environ, "SHOPPULSE_APP": app, "BENCH_WEBHOOK_SECRET": secret}
        log = Path(tmp) / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker", broker.url,
             "--config", str(path), "--web-port", str(free_port())],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        stop = threading.Event()
        shop = threading.Thread(target=lambda: asyncio.run(live_orders(
            broker.bootstrap, "orders", cfg.topics["orders"].partitions,
            cats, window, events_per_s, stop)), daemon=True)
        try:
            shop.start()
            # the worker starts behind (group joins, recovery): wait until it delivers
            # transitions within a few windows of their close, or give up waiting
            t0 = time.monotonic()
            clock.grace = grace
            while time.monotonic() - t0 < 180 and proc.poll() is None and (
                    clock.lag is None or clock.lag > 3 * window + grace):
                time.sleep(0.1)
            if not clock.live:
                raise RuntimeError("the worker delivered nothing within 180 s: "
                                   + log.read_text(errors="replace")[-2000:])
            say(f"  worker caught up after {time.monotonic() - t0:.0f} s (last lag "
                f"{clock.lag:.2f} s); measuring {seconds:g} s")
            # steady state: windows that close from two windows after the first delivery
            since = time.time() + 2 * window
            until = since + seconds
            worker = psutil.Process(proc.pid)
            time.sleep(max(0.0, since - time.time()))
            worker.cpu_percent()  # starts the interval
            time.sleep(max(0.0, until - time.time()))
            cpu = worker.cpu_percent()  # of one core, over the measured seconds
            time.sleep(window)
            stop.set()
            shop.join(30)
            # what closed before ``until`` is delivered by now, or counted missing
            drain = time.monotonic() + max(10.0, 3 * seconds)
            while time.monotonic() < drain and clock.newest < until:
                time.sleep(0.2)
            time.sleep(3.0)
            live = hops(broker.bootstrap, cfg, dict(clock.transitions), grace, since, until)
            got = _summary(live["rows"], expected_transitions(n_series, window, grace,
                                                              since, until))
            got.update(series=n_series, events_per_s=events_per_s, verdicts=live["verdicts"],
                       worker_cpu_pct=cpu, load_avg_1m=os.getloadavg()[0])
            bursts = [bench_alert(f"{app}-b{i}") for i in range(burst)]
            if bursts:
                asyncio.run(_produce(broker.bootstrap, cfg.topic_name("alerts"), bursts, None,
                                     clock))
                bfps = [a.fingerprint for a in bursts]
                clock.wait(bfps, 120)
                got["burst_tps"] = clock.rate(bfps)
            return got
        finally:
            stop.set()
            stop_groups([proc], timeout=20)


# -- the baseline: a raw consumer that signs and POSTs -------------------------------------
async def _raw_forwarder(bootstrap: str, topic: str, url: str, secret: str,
                         stop: asyncio.Event, ready: asyncio.Event) -> None:
    """Consume, sign and POST each record, nothing else."""
    import aiohttp
    from aiokafka import AIOKafkaConsumer

    from shoppulse.agents.transport import FETCH_MAX_WAIT_MS  # the worker's, for fairness

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
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


@contextlib.contextmanager
def raw_forwarder(broker: EmbeddedBroker, app: str, url: str, secret: str) -> Iterator[str]:
    """The baseline's forwarder (raw consumer, sign, POST) on its own topic, in a thread;
    yields the topic to produce to."""
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
        yield topic
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def _baseline(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock, *,
              rate: float, seconds: float, burst: int) -> dict[str, Any]:
    with raw_forwarder(broker, app, url, secret) as topic:
        paced = [bench_alert(f"base-{app}-p{i}") for i in range(max(2, int(rate * seconds)))]
        asyncio.run(_produce(broker.bootstrap, topic, paced, rate, clock))
        fps = [a.fingerprint for a in paced]
        clock.wait(fps, 30)
        lat = clock.latencies(fps)
        out: dict[str, Any] = {"p50": statistics.median(lat) if lat else None,
                               "p99": pct(lat, 99), "delivered": len(lat),
                               "expected": len(paced)}
        bursts = [bench_alert(f"base-{app}-b{i}") for i in range(burst)]
        if bursts:
            asyncio.run(_produce(broker.bootstrap, topic, bursts, None, clock))
            bfps = [a.fingerprint for a in bursts]
            clock.wait(bfps, 120)
            out["burst_tps"] = clock.rate(bfps)
        return out


def _median(rows: Iterable[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def alerts(*, rate: float = 20.0, seconds: float = 20.0, burst: int = 300, runs: int = 1,
           window: float = 2.0, grace: float = 1.0, as_json: bool = False) -> dict[str, Any]:
    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    secret = secrets.token_hex(16)
    clocks = [Clock()]  # one per run: fingerprints and episodes repeat across runs
    base, pipe = [], []
    rx = WebhookReceiver(free_port(), [secret], lambda p, at: clocks[-1].on_receive(p, at))
    rx.start()
    try:
        for i in range(runs):
            app = f"benchalerts{i}{os.getpid()}"
            if i:
                clocks.append(Clock())
            clock = clocks[-1]
            with EmbeddedBroker() as broker:  # its own per run: input topics are shared
                base.append(_baseline(broker, app, rx.url, secret, clock, rate=rate,
                                      seconds=min(seconds, 10.0), burst=burst))
                say(f"run {i + 1}: baseline (raw consumer, sign, POST): alert -> webhook p50 "
                    f"{_fmt(base[-1]['p50'])} p99 {_fmt(base[-1]['p99'])}, burst "
                    f"{base[-1].get('burst_tps', 0):,.0f}/s")
                pipe.append(_live(broker, app, rx.url, secret, clock, rate=rate,
                                  seconds=seconds, window=window, grace=grace, burst=burst,
                                  say=say))
            p = pipe[-1]
            say(f"run {i + 1}: worker, window close -> webhook p50 "
                f"{_fmt(p['close_to_webhook_p50_s'])} p99 {_fmt(p['close_to_webhook_p99_s'])}"
                f" ({p['delivered']}/{p['transitions']} delivered); hops p50/p99: close->"
                f"point {_fmt(p['close_to_point_p50_s'])}/{_fmt(p['close_to_point_p99_s'])},"
                f" point->alert {_fmt(p['point_to_alert_p50_s'])}/"
                f"{_fmt(p['point_to_alert_p99_s'])}, alert->webhook "
                f"{_fmt(p['alert_to_webhook_p50_s'])}/{_fmt(p['alert_to_webhook_p99_s'])};"
                f" point->verdict {_fmt(p['point_to_verdict_p50_s'])}/"
                f"{_fmt(p['point_to_verdict_p99_s'])}; burst {p.get('burst_tps', 0):,.0f}/s;"
                f" worker CPU {p['worker_cpu_pct']:.0f} %, load {p['load_avg_1m']:.1f}")
    finally:
        rx.stop()

    from shoppulse.commands.rules_bench import rules_throughput

    rules = rules_throughput(runs=max(runs, 3))
    say(f"rules + lifecycle: {rules['verdicts_per_s']:,.0f} verdicts/s (decode alone "
        f"{rules['decode_only_per_s']:,.0f}/s)")
    result: dict[str, Any] = {
        "verdicts_per_s": rules["verdicts_per_s"],
        "verdicts_decode_only_per_s": rules["decode_only_per_s"],
        "close_to_webhook_p50_s": _median(pipe, "close_to_webhook_p50_s"),
        "close_to_webhook_p99_s": _median(pipe, "close_to_webhook_p99_s"),
        "latency_from": "window_close",
    }
    for hop in ("close_to_point", "point_to_alert", "alert_to_webhook", "point_to_verdict",
                "close_to_webhook_firing", "close_to_webhook_resolved"):
        for q in ("p50", "p99"):
            result[f"{hop}_{q}_s"] = _median(pipe, f"{hop}_{q}_s")
    result.update({
        "transitions": sum(p["transitions"] for p in pipe),
        "delivered": sum(p["delivered"] for p in pipe),
        "runs_all_delivered": sum(p["delivered"] == p["transitions"] for p in pipe),
        "transitions_per_s": rate, "series": pipe[0]["series"] if pipe else 0,
        "burst_tps": _median(pipe, "burst_tps"),
        "worker_cpu_pct": _median(pipe, "worker_cpu_pct"),
        "load_avg_1m": _median(pipe, "load_avg_1m"),
        "baseline_alert_to_webhook_p50_s": _median(base, "p50"),
        "baseline_alert_to_webhook_p99_s": _median(base, "p99"),
        "baseline_burst_tps": _median(base, "burst_tps"),
        "signature_rejects": rx.rejected,
        "rate": rate, "seconds": seconds, "window": window, "grace": grace, "burst": burst,
        "runs": runs,
    })
    if result["alert_to_webhook_p99_s"] and result["baseline_alert_to_webhook_p99_s"]:
        result["alert_to_webhook_p99_ratio"] = (result["alert_to_webhook_p99_s"]
                                                / result["baseline_alert_to_webhook_p99_s"])
    if result["burst_tps"] and result["baseline_burst_tps"]:
        result["burst_ratio"] = result["burst_tps"] / result["baseline_burst_tps"]
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        _print(result)
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}s"


def _print(r: dict[str, Any]) -> None:
    print(f"alerts on the live embedded stack, {r['rate']:g} transitions/s ({r['series']} "
          f"series, {r['window']:g}s windows, grace {r['grace']:g}s), medians of {r['runs']} "
          "run(s):")
    met = (r["close_to_webhook_p99_s"] or 99) <= 1.0 and r["delivered"] == r["transitions"]
    print(f"  window close -> webhook received   p50 {_fmt(r['close_to_webhook_p50_s'])}  "
          f"p99 {_fmt(r['close_to_webhook_p99_s'])}   (goal p99 <= 1 s: "
          f"{'met' if met else 'MISSED'})")
    for hop, name in (("close_to_point", "close -> point (ingest, combine)"),
                      ("point_to_alert", "point -> alert record"),
                      ("alert_to_webhook", "alert record -> webhook"),
                      ("point_to_verdict", "point -> verdict (detect, aside)")):
        print(f"    {name:<33} p50 {_fmt(r[f'{hop}_p50_s'])}  p99 {_fmt(r[f'{hop}_p99_s'])}")
    print(f"  baseline alert record -> webhook   p50 "
          f"{_fmt(r['baseline_alert_to_webhook_p50_s'])}  p99 "
          f"{_fmt(r['baseline_alert_to_webhook_p99_s'])}  (raw consumer, sign, POST)")
    if r.get("alert_to_webhook_p99_ratio"):
        print(f"  ratio alert -> webhook p99, worker / baseline: "
              f"{r['alert_to_webhook_p99_ratio']:.2f}x")
    if r.get("burst_ratio"):
        print(f"  burst of {r['burst']}: {r['burst_tps']:,.0f} transitions/s vs baseline "
              f"{r['baseline_burst_tps']:,.0f}/s (ratio {r['burst_ratio']:.2f})")
    print(f"  rules + lifecycle: {r['verdicts_per_s']:,.0f} verdicts/s (decode alone "
          f"{r['verdicts_decode_only_per_s']:,.0f}/s)")
    print(f"  worker CPU while measured {r['worker_cpu_pct']:.0f} % of one core; machine load "
          f"average {r['load_avg_1m']:.1f} (2 cores)")
    print(f"  delivered {r['delivered']}/{r['transitions']} transitions, signature rejects "
          f"{r['signature_rejects']}")


# -- what the alert stage costs the pipeline --------------------------------------------
def alert_cost(*, events: int, runs: int, as_json: bool, say: Any, produce: Any,
               pipeline: Any) -> dict[str, Any]:
    """``bench throughput --with-alerts``: the same events through the pipeline without the
    alert stage (no rules, no receivers) and with it (the built-in rules, the alert agents,
    the notify agent and a signed webhook receiver on loopback), alternating which goes
    first, several runs; medians and their ratio. Playbooks are off in both (their own
    stage). ``produce`` and ``pipeline`` are :mod:`shoppulse.commands.bench`'s."""
    secret = secrets.token_hex(16)
    clock = Clock()
    rx = WebhookReceiver(free_port(), [secret], clock.on_receive).start()
    base = yaml.safe_load(DEFAULT_PATH.read_text())
    base["playbooks"] = {**(base.get("playbooks") or {}), "enabled": False}
    without = {**base, "rules": [], "notifiers": {}}
    with_ = {**base, "notifiers": {"bench": {
        "type": "webhook", "url": rx.url, "secrets_env": ["BENCH_WEBHOOK_SECRET"]}}}
    env = {"BENCH_WEBHOOK_SECRET": secret}
    rows: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    try:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
            paths = {}
            for name, data in (("without", without), ("with", with_)):
                paths[name] = Path(tmp) / f"{name}.yaml"
                paths[name].write_text(yaml.safe_dump(data, sort_keys=False))
            cfg = ensure_topics(load_config(paths["with"], env={}), broker.bootstrap)
            produce(broker, cfg, events, say)
            for i in range(runs):
                order = ["without", "with"] if i % 2 == 0 else ["with", "without"]
                for name in order:
                    got = pipeline(broker, events, f"cost{name}{i}{os.getpid()}",
                                   paths[name], env)
                    rows[name].append(got)
                    say(f"run {i + 1}: pipeline {name} the alert stage: {got['eps']:,.0f} "
                        f"events/s, peak RSS {got['rss_mb']:.0f} MB, {got['points']:.0f} points")
    finally:
        rx.stop()
    result: dict[str, Any] = {
        "pipeline_eps_without_alerts": statistics.median(r["eps"] for r in rows["without"]),
        "pipeline_eps_with_alerts": statistics.median(r["eps"] for r in rows["with"]),
        "peak_rss_mb_without_alerts": max(r["rss_mb"] for r in rows["without"]),
        "peak_rss_mb_with_alerts": max(r["rss_mb"] for r in rows["with"]),
        "webhook_notifications": sum(1 for _ in clock.received),
        "events": events, "runs": runs,
    }
    result["ratio"] = result["pipeline_eps_with_alerts"] / result["pipeline_eps_without_alerts"]
    result["cost_pct"] = 100.0 * (1.0 - result["ratio"])
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        print(f"events {events}, medians of {runs} runs, alternating:")
        print(f"  pipeline without the alert stage  {result['pipeline_eps_without_alerts']:>10,.0f}"
              " events/s")
        print(f"  pipeline with rules, alert and notify agents "
              f"{result['pipeline_eps_with_alerts']:>10,.0f} events/s")
        print(f"  ratio with / without {result['ratio']:.3f}: the alert stage costs "
              f"{result['cost_pct']:.1f} % (goal <= 10 %: "
              f"{'met' if result['cost_pct'] <= 10.0 else 'MISSED'})")
    return result
