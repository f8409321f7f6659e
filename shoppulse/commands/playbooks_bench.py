"""``shoppulse bench playbooks``: alert record -> the playbook's first side effect.

Measured on the embedded stack: a ``shoppulse worker`` whose playbook folder holds one
playbook (automatic decision, a signed webhook as its first action) and a verifying
webhook receiver in this process. Each run produces one FIRING ``Alert`` record on
``<app>.alerts`` and waits for the webhook: the latency is from the record's production
to the request's receipt, through the forwarder, the playbook agent, the engine, the claim
written to its table and the executor. The baseline, measured in the same run against the
same receiver: a raw aiokafka consumer that signs and POSTs each record itself
(:func:`shoppulse.commands.alerts_bench._raw_forwarder`: no Faust, no table, no claim).
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
from shoppulse.alerting.notifiers.receiver import WebhookReceiver
from shoppulse.commands.alerts_bench import Clock, bench_alert, raw_forwarder
from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.topics import ensure_topics

GOAL_P99_S = 0.5

PLAYBOOK = """name: bench_first_action
title: Benchmark of the first action
scenario: payment_outage
risk: operational
severity: info
trigger: ['alertname="bench_rule"']
decide: {{mode: auto}}
act:
  - {{name: call_webhook, type: webhook, url: "{url}", timeout: 5s}}
evaluate: {{windows: 1, timeout: 1h}}
"""


class PlaybookClock(Clock):
    """Receipts of the playbook's webhook (its body names the alert's labels) and of the
    baseline's (an Alertmanager-style body with the alert's fingerprint)."""

    def on_receive(self, payload: dict[str, Any], at: float) -> None:
        if "alerts" in payload:
            super().on_receive(payload, at)
        elif "labels" in payload:
            self.received.setdefault(fingerprint("bench_rule", payload["labels"]), at)


async def _one_by_one(bootstrap: str, topic: str, clock: Clock, tag: str, n: int,
                      timeout: float = 10.0) -> list[float]:
    """Produce one alert, wait for its webhook, next: latency without queueing."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    out = []
    try:
        for i in range(n):
            a = bench_alert(f"{tag}-{i}")
            clock.sent[a.fingerprint] = time.time()
            await (await producer.send(topic, a.dumps(), key=a.fingerprint.encode()))
            deadline = time.monotonic() + timeout
            while a.fingerprint not in clock.received and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            if a.fingerprint in clock.received:
                out.append(clock.received[a.fingerprint] - clock.sent[a.fingerprint])
    finally:
        await producer.stop()
    return out


def _stats(lat: list[float], n: int) -> dict[str, Any]:
    lat = sorted(lat)
    return {"p50": statistics.median(lat) if lat else None,
            "p99": statistics.quantiles(lat, n=100, method="inclusive")[98]
            if len(lat) >= 2 else None,
            "received": len(lat), "sent": n}


def _baseline(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock,
              n: int) -> dict[str, Any]:
    with raw_forwarder(broker, app, url, secret) as topic:
        return _stats(asyncio.run(_one_by_one(broker.bootstrap, topic, clock,
                                              f"base-{app}", n)), n)


def _worker(broker: EmbeddedBroker, app: str, url: str, secret: str, clock: Clock,
            n: int) -> dict[str, Any]:
    cfg = ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app}), broker.bootstrap)
    topic = cfg.topic_name("alerts")
    with tempfile.TemporaryDirectory() as tmp:
        books = Path(tmp) / "playbooks"
        books.mkdir()
        (books / "bench.yaml").write_text(PLAYBOOK.format(url=url))
        env = {**os.environ, "SHOPPULSE_APP": app, "SHOPPULSE_WEBHOOK_SECRETS": secret,
               "SHOPPULSE_PLAYBOOKS__FOLDER": str(books)}
        log = Path(tmp) / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker", broker.url,
             "--config", str(DEFAULT_PATH), "--web-port", str(free_port())],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tmp,
            start_new_session=True, preexec_fn=die_with_parent)
        try:
            warm = asyncio.run(_one_by_one(broker.bootstrap, topic, clock, f"{app}-warm", 1,
                                           timeout=120))
            if not warm:
                raise RuntimeError("the worker's playbook called nothing within 120 s: "
                                   + log.read_text(errors="replace")[-2000:])
            return _stats(asyncio.run(_one_by_one(broker.bootstrap, topic, clock, app, n)), n)
        finally:
            stop_groups([proc], timeout=20)


def playbooks(*, alerts: int = 200, runs: int = 3, as_json: bool = False) -> dict[str, Any]:
    """``runs`` rounds of (baseline, worker) over ``alerts`` alerts each; medians printed."""
    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    secret = secrets.token_hex(16)
    clock = PlaybookClock()
    base, pipe = [], []
    with EmbeddedBroker() as broker:
        rx = WebhookReceiver(free_port(), [secret], clock.on_receive).start()
        try:
            for i in range(runs):
                app = f"benchbooks{i}{os.getpid()}"
                base.append(_baseline(broker, app, rx.url, secret, clock, alerts))
                pipe.append(_worker(broker, app, rx.url, secret, clock, alerts))
                say(f"run {i + 1}: first action p50 {pipe[-1]['p50']:.3f}s p99 "
                    f"{pipe[-1]['p99']:.3f}s ({pipe[-1]['received']}/{alerts}); baseline "
                    f"p50 {base[-1]['p50']:.3f}s p99 {base[-1]['p99']:.3f}s")
        finally:
            rx.stop()

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    result = {
        "first_action_p50_s": med(pipe, "p50"), "first_action_p99_s": med(pipe, "p99"),
        "baseline_p50_s": med(base, "p50"), "baseline_p99_s": med(base, "p99"),
        "received": sum(p["received"] for p in pipe), "sent": sum(p["sent"] for p in pipe),
        "signature_rejects": rx.rejected, "alerts": alerts, "runs": runs,
        "per_run": [{"first_action": p, "baseline": b} for p, b in zip(pipe, base,
                                                                         strict=True)],
    }
    result["p99_ratio"] = result["first_action_p99_s"] / result["baseline_p99_s"]
    result["goal_met"] = result["first_action_p99_s"] <= GOAL_P99_S
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        print(f"alert record -> first playbook action (signed webhook), medians of {runs} "
              f"run(s) of {alerts} alerts")
        print(f"  worker   p50 {result['first_action_p50_s']:.3f}s  "
              f"p99 {result['first_action_p99_s']:.3f}s")
        print(f"  baseline p50 {result['baseline_p50_s']:.3f}s  "
              f"p99 {result['baseline_p99_s']:.3f}s  (raw consumer that signs and POSTs)")
        print(f"  ratio worker/baseline p99 {result['p99_ratio']:.2f}x; received "
              f"{result['received']}/{result['sent']}, signature rejects "
              f"{result['signature_rejects']}; goal p99 <= {GOAL_P99_S} s: "
              f"{'met' if result['goal_met'] else 'MISSED'}")
    return result
