"""``shoppulse demo``: embedded broker, simulator and worker, with a live terminal view.

The worker runs as a child process (the command an operator would run by hand), the
simulator in a thread of the demo (:class:`~shoppulse.streams.feed.Feed`); the view reads
nothing but the worker's /metrics and /alerts, so what it shows is exactly what Prometheus
would scrape and a responder would be told.

Before going live the demo pre-warms the detectors: its simulator produces ``history`` of
event time before now as fast as it can, so the detectors are past their warm-up when the
live part (the same simulator going on at 1x speed, event time from now: no session is cut
at the seam) reaches its scheduled incident. The view leads with the site-wide series and
the alerts.

The incident's alert reaches a signed webhook receiver the demo runs (every payload a
line of ``shoppulse-demo-webhooks.jsonl``), starts its playbook, whose four stages the
demo tells as they happen (:mod:`shoppulse.commands.demo_story`; an approval is given as
the on-call would, through the bearer-token endpoint), until "recovered after N windows"
and the alert's resolve.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from shoppulse.alerting.notifiers.receiver import WebhookReceiver
from shoppulse.commands.alerts_view import alerts_table, fetch
from shoppulse.commands.demo_story import Story, clock
from shoppulse.streams.broker import EmbeddedBroker, die_with_parent, free_port, stop_groups
from shoppulse.streams.config import load_config
from shoppulse.streams.feed import Feed
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.simulator import Simulator, diurnal_factor
from shoppulse.streams.topics import ensure_topics

#: Sessions a second the demo aims at when it starts (``--rate`` is the evening peak): enough
#: for the site-wide rules' minimum denominators in 10 s windows at any hour of the day.
DEMO_SESSIONS_PER_S = 12.0
HOOKS_LOG = "shoppulse-demo-webhooks.jsonl"

#: The site-wide series an operator reads first: (label, metric name, Prometheus name).
SITE_WIDE = [
    ("sessions", "sessions_started_overall", "shoppulse_sessions_started_overall_total"),
    ("bounce", "bounce_overall", "shoppulse_bounce_overall_ratio"),
    ("conversion", "conversion_overall", "shoppulse_conversion_overall_ratio"),
    ("orders", "orders_overall", "shoppulse_orders_overall_total"),
    ("GMV", "gmv_overall", "shoppulse_gmv_overall"),
    ("payment success", "payment_success_overall", "shoppulse_payment_success_overall_ratio"),
]

#: What the view shows per board: (title, metric name) of the shoppulse gauges.
BOARD = [
    ("Funnel", ["shoppulse_ctr_ratio", "shoppulse_bounce_ratio", "shoppulse_add_to_cart_ratio",
                "shoppulse_checkout_ratio", "shoppulse_conversion_ratio"]),
    ("Orders", ["shoppulse_orders_total", "shoppulse_gmv", "shoppulse_average_order_value",
                "shoppulse_payment_success_ratio", "shoppulse_cancel_ratio"]),
    ("Logistics", ["shoppulse_on_time_delivery_ratio", "shoppulse_delay_ratio",
                   "shoppulse_dispatch_latency_p50_seconds"]),
]


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name].append((s.labels, s.value))
    return out


def _total(samples: dict, name: str, by: str | None = None) -> dict[str, float]:
    agg: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, []):
        agg[labels.get(by, "") if by else ""] += value
    return agg


def _detector(samples: dict, name: str, metric: str) -> float | None:
    """A detector gauge of the site-wide series (every dimension label empty)."""
    for labels, value in samples.get(name, []):
        if labels.get("metric") == metric and not any(
                v for k, v in labels.items() if k != "metric"):
            return value
    return None


def site_wide(samples: dict, prev: dict, dt: float, alerts: list[dict]) -> Table:
    t = Table(title="Site-wide (last closed window)", expand=True)
    for col in ("series", "value", "expected", "band", "anomaly score", "alert"):
        t.add_column(col, justify="left" if col in ("series", "alert") else "right")
    active = {}
    for a in alerts:
        if a["state"] != "resolved":
            active.setdefault(a["labels"].get("metric"), f"{a['state']} {a['rule']}")
    for label, metric, prom in SITE_WIDE:
        if prom.endswith("_total"):  # a counter grows by each window: show its rate
            now = sum(v for _, v in samples.get(prom, []))
            before = sum(v for _, v in prev.get(prom, []))
            value = f"{_rate((now - before) / dt)}/s" if dt > 0 and prev else "-"
        else:
            got = samples.get(prom)
            value = f"{got[0][1]:,.3f}" if got else "-"
        exp = _detector(samples, "shoppulse_expected_value", metric)
        lo = _detector(samples, "shoppulse_expected_lower", metric)
        hi = _detector(samples, "shoppulse_expected_upper", metric)
        score = _detector(samples, "shoppulse_anomaly_score", metric)
        alert = active.get(metric, "")
        t.add_row(label, value, _fmt(exp), f"{_fmt(lo)}..{_fmt(hi)}", _fmt(score),
                  f"[bold red]{alert}[/]" if alert.startswith("firing") else alert)
    return t


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:,.3f}"


def runs_table(runs: list[dict]) -> Table:
    t = Table(title="Playbook runs", expand=True)
    for col in ("playbook", "run", "stage", "decided by", "actions done", "windows inside",
                "outcome"):
        t.add_column(col)
    for r in sorted(runs, key=lambda r: -(r.get("started_at") or 0))[:5]:
        t.add_row(r["playbook"], r["run_id"], r["stage"], r.get("acknowledged_by") or
                  ("awaiting approval" if r.get("awaiting_approval") else "-"),
                  ", ".join(r.get("completed") or []) or "-",
                  f"{r.get('windows_inside', 0)}/{r.get('windows_needed') or '-'}",
                  r.get("outcome") or "open")
    return t


def render(samples: dict, prev: dict, dt: float, url: str, started: float,
           alerts: list[dict] | None = None, note: str = "",
           runs: list[dict] | None = None) -> Group:
    events = _total(samples, "shoppulse_events_total", "topic")
    before = _total(prev, "shoppulse_events_total", "topic")
    invalid = _total(samples, "shoppulse_events_invalid_total", "topic")
    late = _total(samples, "shoppulse_late_events_total", "topic")
    head = Table(title=f"shoppulse demo - metrics on {url} - up {time.time() - started:.0f}s"
                       f"{note}", expand=True)
    for col in ("topic", "events/s", "events", "invalid", "late"):
        head.add_column(col, justify="right" if col != "topic" else "left")
    for topic in sorted(events):
        rate = (events[topic] - before.get(topic, 0.0)) / dt if dt > 0 else 0.0
        head.add_row(topic, _rate(rate), f"{events[topic]:,.0f}",
                     f"{invalid.get(topic, 0):,.0f}", f"{late.get(topic, 0):,.0f}")
    boards = []
    for title, names in BOARD:
        t = Table(title=title, expand=True)
        t.add_column("metric")
        t.add_column("series")
        t.add_column("last window", justify="right")
        for name in names:
            rows = sorted(samples.get(name, []), key=lambda lv: sorted(lv[0].items()))[:3]
            for labels, value in rows:
                series = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                t.add_row(name.removeprefix("shoppulse_"), series, f"{value:,.3f}")
        boards.append(t)
    alerts = alerts or []
    return Group(site_wide(samples, prev, dt, alerts),
                 alerts_table(alerts, title="Alerts (event time)", limit=8),
                 runs_table(runs or []), head, *boards)


def summary(samples: dict, prev: dict, dt: float, alerts: list[dict] | None = None) -> str:
    events = _total(samples, "shoppulse_events_total", "topic")
    before = _total(prev, "shoppulse_events_total", "topic")
    rates = ", ".join(f"{t} {_rate((events[t] - before.get(t, 0.0)) / dt)}/s"
                      for t in sorted(events)) if dt > 0 else ""
    points = sum(_total(samples, "shoppulse_metric_points_total").values())
    anomalous = sum(_total(samples, "shoppulse_anomalous_points_total").values())
    firing = [f"{a['rule']}({a['labels'].get('metric', '')}"
              f"={_fmt(a.get('value'))} band {_fmt(a.get('lower'))}..{_fmt(a.get('upper'))})"
              for a in alerts or [] if a["state"] == "firing"]
    return f"{time.strftime('%H:%M:%S')} events {rates or '-'}; points {points:,.0f}; " \
           f"anomalous {anomalous:,.0f}; firing: {', '.join(firing) or '-'}"


def _rate(per_second: float) -> str:
    """Low rates keep a decimal: a quiet topic should not read as a dead one."""
    return f"{per_second:,.1f}" if per_second < 10 else f"{per_second:,.0f}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def demo_rate(now: float) -> float:
    """The evening-peak rate that gives :data:`DEMO_SESSIONS_PER_S` at ``now``."""
    return round(DEMO_SESSIONS_PER_S / diurnal_factor(now), 1)


def _hooks_log(path: str) -> tuple[WebhookReceiver, str]:
    """A signed webhook receiver that appends every payload it accepts to ``path``."""
    import orjson

    secret = secrets.token_hex(16)

    def write(payload: dict, at: float) -> None:
        with open(path, "ab") as f:
            f.write(orjson.dumps({"received_at": at, **payload}) + b"\n")

    return WebhookReceiver(free_port(), [secret], write).start(), secret


def run_demo(config_path: str, *, web_port: int, rate: float | None, incidents: list[str],
             duration: float | None, history: float = 2100.0, speed: float = 1.0) -> None:
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the demo like Ctrl-C does
    # Ctrl-C stops it even if a parent shell started it with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rate = rate or demo_rate(time.time())
    token = secrets.token_urlsafe(24)
    hooks, secret = _hooks_log(HOOKS_LOG)
    env = {**os.environ, "SHOPPULSE_WINDOWS__SIZE": os.environ.get(
        "SHOPPULSE_WINDOWS__SIZE", "10s"), "SHOPPULSE_API_TOKEN": token,
        "SHOPPULSE_DEMO_WEBHOOK_SECRET": secret,
        "SHOPPULSE_NOTIFIERS__DEMO_WEBHOOK": (
            f"{{type: webhook, url: '{hooks.url}', secrets_env: [SHOPPULSE_DEMO_WEBHOOK_SECRET],"
            " group_by: ['...'], group_wait: 0s, group_interval: 10s}")}
    procs: list[subprocess.Popen[bytes]] = []
    feed: Feed | None = None
    with EmbeddedBroker() as broker:
        console.print(f"embedded Kafka (Tansu) on {broker.url}")
        cmd = [sys.executable, "-m", "shoppulse.commands.cli"]
        logs = open("shoppulse-demo.log", "ab")  # noqa: SIM115
        try:
            live_from = time.time()  # event time of the live part; history before it
            # one simulator for the history and the live part, so the sessions in progress
            # at the seam go on (two simulators cut them: landings read as bounces)
            try:
                parsed = [parse_incident(spec, origin=live_from) for spec in incidents]
            except ValueError as exc:
                raise SystemExit(f"--incident: {exc}") from None
            sim = Simulator(seed=11, rate=rate, start=live_from - history, incidents=parsed)
            cfg = ensure_topics(load_config(config_path, overrides={"broker": broker.url}),
                                broker.bootstrap)
            feed = Feed(cfg, broker.bootstrap, sim, [live_from, math.inf], [0.0, speed])
            feed.start()
            if history > 0:
                # the history goes onto the topics before the worker starts: the worker then
                # reads it in rounds of thousands of events, a few hundred partials in all.
                # Read while it is produced, a round every 0.1 s made ~12 000 partials, which
                # the combine stage worked through at ~17 a second at load 5: the live
                # worker stayed minutes behind its traffic (README, Known issues).
                console.print(f"pre-warming the detectors: producing {history / 60:g} min of "
                              "simulated history at full speed, then starting the worker ...")
                while feed.segment < 1 and feed.error is None:
                    time.sleep(0.2)
                if feed.error is not None:
                    raise SystemExit(f"producing the history failed: {feed.error!r}")
            feed.release(1)  # live from here, at `speed`
            procs.append(subprocess.Popen(
                [*cmd, "worker", "--broker", broker.url, "--config", config_path,
                 "--web-port", str(web_port)], env=env, stdout=logs, stderr=logs,
                start_new_session=True, preexec_fn=die_with_parent))
            url = f"http://127.0.0.1:{web_port}/metrics"
            base = f"http://127.0.0.1:{web_port}"
            console.print(f"worker metrics on {url}; alerts on {base}/alerts; incidents "
                          f"(from the live start): {', '.join(incidents) or '-'}")
            console.print(f"status page (read-only, live): {base}/", soft_wrap=True)
            console.print(f"Grafana: a Prometheus scraping 127.0.0.1:{web_port} (a copy of "
                          "prometheus/prometheus.yml), Grafana provisioned from "
                          "grafana/provisioning/ on it: README, For operators")
            console.print(f"{rate:g} sessions/s at the evening peak ({DEMO_SESSIONS_PER_S:g}/s "
                          f"now); live event time at {speed:g}x")
            console.print(f"webhook receiver (signed, verified) on {hooks.url}; what it "
                          f"receives: {os.path.abspath(HOOKS_LOG)}", soft_wrap=True)
            console.print("logs in shoppulse-demo.log; Ctrl-C stops everything")
            windows = [(i.start, i.end) for i in parsed]
            for spec, (start, end) in zip(incidents, windows, strict=True):
                console.print(f"incident {spec}: event time {clock(start)} to {clock(end)} "
                              "UTC; its alerts fire after their `for` and resolve after "
                              "`keep_firing_for` once it ends (README, Alerts: Demo)")
            story = Story(base, token, incidents=windows)
            started = time.time()
            prev: dict = {}
            t_prev = time.monotonic()
            tty = console.is_terminal
            with Live(console=console, refresh_per_second=1, screen=False,
                      auto_refresh=tty) as view:
                while duration is None or time.time() - started < duration:
                    for p in procs:
                        if p.poll() is not None:
                            raise SystemExit(f"{p.args[3]} exited with {p.returncode}; "
                                             "see shoppulse-demo.log")
                    if feed.error is not None or not feed.is_alive():
                        raise SystemExit(f"the simulator stopped: {feed.error!r}")
                    if broker.process is None or broker.process.poll() is not None:
                        raise SystemExit("the embedded broker exited; stopping")
                    with contextlib.suppress(OSError):
                        samples = scrape(url)
                        alerts: list[dict] = []
                        runs: list[dict] = []
                        with contextlib.suppress(OSError, ValueError):
                            alerts = fetch(base, "/alerts")["alerts"]
                            runs = fetch(base, "/playbooks/runs")["runs"]
                        for line in story.update(alerts, runs):
                            console.print(line, highlight=False, soft_wrap=True)
                        now = time.monotonic()
                        note = "" if samples.get("shoppulse_metric_points_total") else \
                            " - the worker is reading the history"
                        if tty:
                            view.update(render(samples, prev, now - t_prev, url, started,
                                               alerts, note, runs))
                            prev, t_prev = samples, now
                        elif now - t_prev >= 5:  # a log, not a screen: a summary line
                            console.print(summary(samples, prev, now - t_prev, alerts) + note,
                                          highlight=False)
                            prev, t_prev = samples, now
                    time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping ...")
        finally:
            if feed is not None:
                feed.stop()
            stop_groups(procs)
            hooks.stop()
            logs.close()
