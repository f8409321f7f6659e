"""``shoppulse``: the command line (click, like Faust's own).

``worker`` runs the Faust app; ``simulate`` and ``replay`` produce events;
``demo`` runs broker, simulator and worker together with a live view;
``config check`` validates a config; ``bench`` measures.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from shoppulse.streams.config import ConfigError, load_config

BROKER_HELP = (
    "embedded (default: start Tansu on loopback) or kafka://host:port; env SHOPPULSE_BROKER"
)


def _config(path: str | None, broker: str | None = None):
    try:
        return load_config(path, overrides={"broker": broker})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="shoppulse")
def main() -> None:
    """shoppulse: streaming monitor for e-commerce operations."""


# -- config ------------------------------------------------------------------------
@main.group()
def config() -> None:
    """Inspect and validate the configuration."""


@config.command("check")
@click.argument("file", required=False, type=click.Path())
def config_check(file: str | None) -> None:
    """Validate FILE (default shoppulse.yaml / built-in) and summarise it."""
    cfg = _config(file)
    click.echo(f"ok: {file or 'shoppulse.yaml'}")
    click.echo(f"  app {cfg.app}, broker {cfg.broker}, windows {cfg.windows.size:g}s "
               f"+ grace {cfg.windows.grace:g}s")
    for name, topic in cfg.topics.items():
        click.echo(f"  topic {name}: {topic.partitions} partitions, key {topic.key}, "
                   f"{len(topic.fields)} fields")
    for m in cfg.metrics:
        dims = ",".join(m.dimensions) or "-"
        click.echo(f"  metric {m.prometheus_name} ({m.kind}) by {dims}")


# -- worker ------------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", type=click.Path(), help="config file (shoppulse.yaml)")
@click.option("--broker", help=BROKER_HELP)
@click.option("--web-port", type=int, default=None, help="port of /metrics (default 6066)")
@click.option("--loglevel", default="warning", show_default=True)
def worker(config_path: str | None, broker: str | None, web_port: int | None,
           loglevel: str) -> None:
    """Run a worker: ingest, windows, metrics on http://127.0.0.1:PORT/metrics."""
    from faust.worker import Worker

    from shoppulse.agents.app import create_app
    from shoppulse.streams.broker import resolve_broker
    from shoppulse.streams.topics import ensure_topics

    cfg = _config(config_path, broker)
    bootstrap, embedded = resolve_broker(cfg.broker)
    if embedded is not None:
        click.echo(f"embedded Kafka (Tansu) on {embedded.url}", err=True)
    cfg = ensure_topics(cfg, bootstrap)
    rt = create_app(cfg, bootstrap, web_port=web_port)
    port = rt.app.conf.web_port
    click.echo(f"shoppulse worker: metrics on http://127.0.0.1:{port}/metrics", err=True)
    w = Worker(rt.app, loglevel=loglevel, quiet=True)
    try:
        w.execute_from_commandline()
    finally:
        if embedded is not None:
            embedded.stop()


# -- producing -----------------------------------------------------------------------
@main.command()
@click.option("--broker", help=BROKER_HELP)
@click.option("--config", "config_path", type=click.Path())
@click.option("--seed", default=1, show_default=True)
@click.option("--rate", default=50.0, show_default=True, help="sessions/s at the daily peak")
@click.option("--speed", default=1.0, show_default=True, help="event time runs N x wall clock")
@click.option("--duration", default="10m", show_default=True, help="event-time span, e.g. 90s, 2h")
@click.option("--start", type=float, default=None, help="event time origin (epoch s; default now)")
@click.option("--incident", "incidents", multiple=True,
              help="NAME@START+DURATION[:MAGNITUDE], e.g. payment_outage@60s+5m:0.6")
@click.option("--out", type=click.Path(), help="write JSON lines here instead of producing")
@click.option("--truth", type=click.Path(), help="write the incidents' ground truth (JSON lines)")
def simulate(broker, config_path, seed, rate, speed, duration, start, incidents, out, truth):
    """Produce realistic shop traffic (clicks, orders, logistics) with incidents."""
    from shoppulse.streams.config import parse_duration
    from shoppulse.streams.simulator import write_ground_truth, write_jsonl

    sim = _simulator(seed, rate, start, incidents)
    span = parse_duration(duration)
    if truth:
        write_ground_truth(sim, truth)
    if out:
        n = write_jsonl(sim.events(span), out)
        click.echo(f"wrote {n} events to {out}", err=True)
        return
    _produce(_config(config_path, broker), sim.events(span), speed)


def _produce(cfg, events, speed: float) -> None:
    from shoppulse.streams.broker import BrokerError
    from shoppulse.streams.producer import produce_events

    try:
        produce_events(cfg, events, speed=speed, progress=True)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


def _simulator(seed: int, rate: float, start: float | None, incidents: tuple[str, ...]):
    import time

    from shoppulse.streams.incidents import parse_incident
    from shoppulse.streams.simulator import Simulator

    origin = time.time() if start is None else start
    try:
        parsed = [parse_incident(spec, origin=origin) for spec in incidents]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--incident") from None
    return Simulator(seed=seed, rate=rate, start=origin, incidents=parsed)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--broker", help=BROKER_HELP)
@click.option("--config", "config_path", type=click.Path())
@click.option("--speed", default=0.0, show_default=True,
              help="event time runs N x wall clock; 0 = as fast as possible")
def replay(file: str, broker: str | None, config_path: str | None, speed: float) -> None:
    """Feed recorded events (JSON lines from simulate --out) through the pipeline."""
    from shoppulse.streams.simulator import read_jsonl

    _produce(_config(config_path, broker), read_jsonl(file), speed)


# -- demo and bench ----------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", type=click.Path())
@click.option("--web-port", default=6066, show_default=True)
@click.option("--rate", default=40.0, show_default=True)
@click.option("--incident", "incidents", multiple=True,
              default=("payment_outage@60s+3m:0.6",), show_default=True)
@click.option("--duration", default=None, help="stop after this wall time (default: Ctrl-C)")
def demo(config_path, web_port, rate, incidents, duration) -> None:
    """Broker + simulator + worker + live view, in one command. Ctrl-C stops all."""
    from shoppulse.commands.demo import run_demo
    from shoppulse.streams.config import parse_duration

    cfg_path = config_path or str(Path("shoppulse.yaml") if Path("shoppulse.yaml").exists()
                                  else Path(__file__).resolve().parent.parent / "shoppulse.yaml")
    run_demo(cfg_path, web_port=web_port, rate=rate, incidents=list(incidents),
             duration=parse_duration(duration) if duration else None)


@main.group()
def bench() -> None:
    """Benchmarks: they print figures and the baseline measured in the same run."""


@bench.command("throughput")
@click.option("--events", default=300_000, show_default=True)
@click.option("--runs", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_throughput(events: int, runs: int, as_json: bool) -> None:
    """Raw aiokafka getmany+decode vs the full pipeline on one worker."""
    from shoppulse.commands.bench import throughput

    throughput(events=events, runs=runs, as_json=as_json)


@bench.command("detect")
@click.option("--days", default=3.0, show_default=True, help="simulated days")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--seed", default=7, show_default=True, help="simulator and schedule seed")
@click.option("--rate", default=8.0, show_default=True, help="sessions/s at the daily peak")
@click.option("--save-points", "save", type=click.Path(dir_okay=False),
              help="also write the metric points and ground truth to FILE (JSON lines)")
@click.option("--points", type=click.Path(exists=True, dir_okay=False),
              help="score the points of a --save-points FILE instead of simulating "
                   "(seconds instead of minutes; --days/--seed/--rate are the file's)")
def bench_detect(days: float, as_json: bool, seed: int, rate: float, save: str | None,
                 points: str | None) -> None:
    """Detectors on simulated days with injected incidents: recall, TTD, false alarms."""
    from shoppulse.commands.bench import detect

    if save and points:
        raise click.UsageError("--save-points and --points exclude each other")
    detect(days=days, as_json=as_json, seed=seed, rate=rate, save=save, points=points)


@bench.command("alerts")
@click.option("--rate", default=20.0, show_default=True, help="paced transitions/s")
@click.option("--seconds", default=10.0, show_default=True, help="length of the paced phase")
@click.option("--burst", default=500, show_default=True, help="transitions produced at once")
@click.option("--runs", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_alerts(rate: float, seconds: float, burst: int, runs: int, as_json: bool) -> None:
    """Alert transitions through the notify agent to a signed webhook: latency, rate."""
    from shoppulse.commands.alerts_bench import alerts

    alerts(rate=rate, seconds=seconds, burst=burst, runs=runs, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
