"""Benchmarks: figures printed with the baseline measured in the same run.

``throughput`` pre-produces simulator events to an embedded broker, then
measures (a) raw aiokafka ``getmany`` + ``orjson.loads`` and (b) the full
pipeline in one ``shoppulse worker`` process (from its first to its last
consumed event, read off its /metrics), several runs each, and prints medians.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson
import psutil

from shoppulse.streams.broker import EmbeddedBroker, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.producer import produce_async
from shoppulse.streams.topics import ensure_topics

BENCH_START = 1_767_261_600.0


def _events(n: int, seed: int = 3) -> list[Any]:
    from shoppulse.streams.simulator import Simulator

    sim = Simulator(seed=seed, rate=300.0, start=BENCH_START)
    out: list[Any] = []
    for ev in sim.events(float("inf")):
        out.append(ev)
        if len(out) >= n:
            break
    return out


async def _raw(bootstrap: str, topics: list[str], n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        t0 = None
        while seen < n:
            data = await consumer.getmany(timeout_ms=1000, max_records=20000)
            if t0 is None and data:
                t0 = time.perf_counter()
            for msgs in data.values():
                for m in msgs:
                    orjson.loads(m.value)
                seen += len(msgs)
        return seen / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await consumer.stop()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _sum(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _pipeline(broker: EmbeddedBroker, n: int, app: str, config: Any = DEFAULT_PATH,
              env_extra: dict[str, str] | None = None) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "SHOPPULSE_APP": app, **(env_extra or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.commands.cli", "worker", "--broker", broker.url,
         "--config", str(config), "--web-port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    t_first = t_last = None
    consumed = 0.0
    points = 0.0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            peak = max(peak, ps.memory_info().rss)
            try:
                text = _scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            consumed = _sum(text, "shoppulse_events_total") + _sum(
                text, "shoppulse_events_invalid_total")
            now = time.perf_counter()
            if consumed > 0 and t_first is None:
                t_first = now
            if consumed >= n:
                t_last = t_last or now
                points = _sum(text, "shoppulse_metric_points_total")
                if points > 0 and now - t_last > 8:  # windows close once the input idles
                    break
            time.sleep(0.05)
    finally:
        stop_groups([proc], timeout=20)  # stuck in a stop: its figure is already taken
    if t_first is None or t_last is None:
        raise RuntimeError(f"pipeline consumed {consumed:.0f} of {n} events")
    # the first scrape that sees events is up to one poll late: count the events before it
    return {"eps": n / max(t_last - t_first, 1e-9), "rss_mb": peak / 2**20, "points": points}


def _produce_events(broker: EmbeddedBroker, cfg: Any, events: int, say: Any) -> None:
    say(f"generating {events} simulator events ...")
    evs = _events(events)
    partitions = {t: s.partitions for t, s in cfg.topics.items()}
    asyncio.run(produce_async(broker.bootstrap, evs, partitions))


def throughput(*, events: int = 300_000, runs: int = 3, as_json: bool = False,
               with_alerts: bool = False) -> dict[str, Any]:
    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if with_alerts:
        from shoppulse.commands.alerts_bench import alert_cost

        return alert_cost(events=events, runs=runs, as_json=as_json, say=say,
                          produce=_produce_events, pipeline=_pipeline)
    with EmbeddedBroker() as broker:
        cfg = ensure_topics(load_config(DEFAULT_PATH, env={}), broker.bootstrap)
        _produce_events(broker, cfg, events, say)
        raw, pipe = [], []
        for i in range(runs):
            raw.append(asyncio.run(_raw(broker.bootstrap, list(cfg.topics), events)))
            say(f"run {i + 1}: raw aiokafka getmany + orjson.loads: {raw[-1]:,.0f} events/s")
            pipe.append(_pipeline(broker, events, f"bench{i}{os.getpid()}"))
            say(f"run {i + 1}: full pipeline, one worker: {pipe[-1]['eps']:,.0f} events/s, "
                f"peak RSS {pipe[-1]['rss_mb']:.0f} MB, {pipe[-1]['points']:.0f} points")
    result = {
        "raw_eps": statistics.median(raw),
        "pipeline_eps": statistics.median(p["eps"] for p in pipe),
        "peak_rss_mb": max(p["rss_mb"] for p in pipe),
        "events": events,
        "points": statistics.median(p["points"] for p in pipe),
        "runs": runs,
    }
    result["ratio"] = result["pipeline_eps"] / result["raw_eps"]
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        print(f"events {events}, medians of {runs} runs:")
        print(f"  raw aiokafka getmany + orjson.loads  {result['raw_eps']:>12,.0f} events/s")
        print(f"  full pipeline (one worker)           {result['pipeline_eps']:>12,.0f} events/s")
        print(f"  ratio pipeline / raw                 {result['ratio']:>12.3f}")
        print(f"  peak RSS of the worker               {result['peak_rss_mb']:>12.0f} MB")
        print(f"  metric points emitted                {result['points']:>12,.0f}")
    return result


#: What each scenario is expected to move: metrics whose series matching the incident's
#: affected dimensions form its ground truth (a dimension a metric lacks matches, so the
#: ``*_overall`` totals match every incident of their scenario). An alarm on a series not
#: listed here counts as false, so every metric the simulated failure moves by mechanism is
#: listed, and nothing it leaves alone in expectation (ratios it does not touch, such as
#: the conversion of a channel whose traffic drops).
SCENARIO_METRICS = {
    # failed payments only: orders are still placed (conversion, orders and GMV count
    # placed orders and purchase clicks), so only payment success moves
    "payment_outage": ["payment_success", "payment_success_by_method",
                       "payment_success_overall"],
    # checkout -> purchase fails: fewer purchases, hence fewer orders and less GMV
    "checkout_conversion_drop": ["conversion", "orders", "gmv", "conversion_overall",
                                 "orders_overall", "gmv_overall"],
    # bounced sessions never reach add_to_cart, checkout or purchase: per-session funnel
    # rates of the affected traffic fall with the bounce rise, and with them orders and GMV
    "landing_bounce_spike": ["bounce", "bounce_overall", "add_to_cart", "conversion",
                             "conversion_overall", "orders", "orders_overall", "gmv",
                             "gmv_overall"],
    # fewer sessions of one channel: every count of that channel, and the site totals and
    # per-category GMV that include it; its ratios stay as they were
    "channel_traffic_drop": ["sessions_started", "landing_views", "impressions", "clicks",
                             "orders", "gmv", "sessions_started_overall", "orders_overall",
                             "gmv_overall"],
    # extra sessions that click, land, bounce and never buy
    "bot_traffic": ["bounce", "sessions_started", "landing_views", "clicks", "impressions", "ctr",
                    "conversion", "add_to_cart", "sessions_started_overall", "bounce_overall",
                    "conversion_overall"],
    "logistics_delay": ["delay", "on_time_delivery", "on_time_delivery_by_region"],
}
DETECT_START = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def incident_schedule(days: float, seed: int) -> list[Any]:
    """Every scenario several times, at varied hours and at magnitudes from the minimum up."""
    import random

    from shoppulse.streams.incidents import MIN_MAGNITUDE, SCENARIOS, Incident

    rng = random.Random(seed)
    names = list(SCENARIO_METRICS)
    slots = int(days * 24 / 3)  # one incident every ~3 hours, none overlapping
    out = []
    for i in range(slots):
        name = names[i % len(names)]
        lo, hi = MIN_MAGNITUDE[name], SCENARIOS[name].default_magnitude
        magnitude = [lo, (lo + hi) / 2, hi][(i // len(names)) % 3]
        start = DETECT_START + 3 * 3600 * i + rng.uniform(1800, 5400)  # skip the warm-up hours
        if start > DETECT_START + days * 86400 - 3600:
            break
        out.append(Incident(name=name, start=start, duration=rng.choice([900, 1800, 2700]),
                            magnitude=magnitude))
    return out


def affected_series(truth: dict[str, Any], series: dict[str, tuple[str, dict[str, str]]]
                    ) -> list[str]:
    """Keys of the series an incident is expected to move (see :data:`SCENARIO_METRICS`)."""
    metrics = set(SCENARIO_METRICS.get(truth["scenario"], []))
    affected = truth.get("affected") or {}
    return [key for key, (metric, labels) in series.items() if metric in metrics
            and all(labels.get(k, v) == v for k, v in affected.items())]


PointRows = dict[str, list[tuple[Any, ...]]]
SeriesMeta = dict[str, tuple[str, dict[str, str]]]


def simulate_points(*, days: float, seed: int, rate: float, say: Any = print
                    ) -> tuple[PointRows, SeriesMeta, list[dict[str, Any]], float]:
    """Simulated days with scheduled incidents -> offline pipeline -> points per series.

    Returns (points per series key, (metric, labels) per key, raw ground truth, window).
    """
    from shoppulse.agents.offline import run_offline
    from shoppulse.streams.simulator import Simulator

    cfg = load_config(DEFAULT_PATH, env={})
    sim = Simulator(seed=seed, rate=rate, start=DETECT_START,
                    incidents=incident_schedule(days, seed))
    say(f"simulating {days:g} days at {rate:g} sessions/s peak, "
        f"{len(sim.incidents)} incidents ...")
    t0 = time.perf_counter()
    series: PointRows = {}
    meta: SeriesMeta = {}
    for p in run_offline(cfg, sim.events(days * 86400)):
        key = p.series
        if key not in meta:
            meta[key] = (p.metric, p.labels)
        series.setdefault(key, []).append(
            (p.window_start, p.window_end, p.value, p.numerator, p.denominator))
    say(f"{sum(map(len, series.values())):,} points of {len(series)} series "
        f"in {time.perf_counter() - t0:.0f}s")
    return series, meta, sim.ground_truth(), float(cfg.windows.size)


def save_points(path: str, series: PointRows, meta: SeriesMeta, truth: list[dict[str, Any]],
                window: float, header: dict[str, Any]) -> None:
    """Write a points file: JSON lines, one ``{"type": ...}`` object per line.

    ``header`` (first line: window, days, seed, rate), then one ``truth`` line per incident
    (scenario, start, end, magnitude, affected: the simulator's ground truth, not yet
    mapped to series, so :data:`SCENARIO_METRICS` can change without re-simulating), then
    one ``series`` line per series (key, metric, labels, points as
    ``[window_start, window_end, value, numerator, denominator]``).
    """
    with open(path, "wb") as f:
        f.write(orjson.dumps({"type": "header", "window": window, **header}) + b"\n")
        for t in truth:
            f.write(orjson.dumps({"type": "truth", **t}) + b"\n")
        for key, pts in series.items():
            metric, labels = meta[key]
            f.write(orjson.dumps({"type": "series", "key": key, "metric": metric,
                                  "labels": labels, "points": pts}) + b"\n")


def load_points(path: str) -> tuple[PointRows, SeriesMeta, list[dict[str, Any]], float,
                                    dict[str, Any]]:
    """Read a file written by :func:`save_points`: (series, meta, truth, window, header)."""
    series: PointRows = {}
    meta: SeriesMeta = {}
    truth: list[dict[str, Any]] = []
    header: dict[str, Any] = {}
    with open(path, "rb") as f:
        for line in f:
            obj = orjson.loads(line)
            kind = obj.pop("type")
            if kind == "header":
                header = obj
            elif kind == "truth":
                truth.append(obj)
            elif kind == "series":
                series[obj["key"]] = [tuple(p) for p in obj["points"]]
                meta[obj["key"]] = (obj["metric"], obj["labels"])
    if "window" not in header:
        raise ValueError(f"{path}: not a points file (no header line)")
    return series, meta, truth, float(header["window"]), header


def detect(*, days: float = 3.0, as_json: bool = False, seed: int = 7, rate: float = 8.0,
           save: str | None = None, points: str | None = None) -> dict[str, Any]:
    """Simulated days with incidents -> offline pipeline -> detectors vs baselines.

    ``save``: also write the points and ground truth to this file (:func:`save_points`);
    ``points``: score the points of such a file instead of simulating (``days``, ``seed``
    and ``rate`` are then those of the file).
    """
    from shoppulse.commands.detect_bench import evaluate
    from shoppulse.streams.incidents import MIN_MAGNITUDE

    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if points:
        series, meta, raw_truth, window, header = load_points(points)
        say(f"{sum(map(len, series.values())):,} points of {len(series)} series from {points} "
            f"(seed {header.get('seed')}, rate {header.get('rate')})")
    else:
        series, meta, raw_truth, window = simulate_points(days=days, seed=seed, rate=rate,
                                                          say=say)
        header = {"days": days, "seed": seed, "rate": rate}
        if save:
            save_points(save, series, meta, raw_truth, window, header)
            say(f"points and ground truth written to {save}")
    say("scoring ...")
    truth = [{**t, "series": affected_series(t, meta)} for t in raw_truth]
    result = evaluate(series, truth, ["default", "gaussian", "hst"], window,
                      min_magnitude=MIN_MAGNITUDE)
    result["incidents"] = len(truth)
    result["seed"], result["rate"] = header.get("seed"), header.get("rate")
    if as_json:
        print(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return result
    print(f"{result['simulated_days']:.2f} simulated days (seed {result['seed']}, rate "
          f"{result['rate']:g} sessions/s peak), {result['series']} series, "
          f"{result['updates']:,} updates, {len(truth)} incidents")
    header_line = (f"{'detector':<10} {'scenario':<26} {'n':>3} {'recall':>6} {'ttd p50':>8} "
                   f"{'ttd p95':>8}")
    print(header_line)
    for res in [result, *result["baselines"].values()]:
        for name, sc in sorted(res["scenarios"].items()):
            med, p95 = (_fmt(sc.get(k)) for k in ("ttd_median_windows", "ttd_p95_windows"))
            recall = "-" if sc["recall"] is None else f"{sc['recall']:.2f}"
            print(f"{res['detector']:<10} {name:<26} {sc['incidents']:>3} {recall:>6} {med:>8} "
                  f"{p95:>8}")
        print(f"{res['detector']:<10} false alarms/day {res['false_alarms_per_day']:.2f}, "
              f"{res['us_per_update']:.1f} us/update")
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
