"""``shoppulse``: the command line (click, like Faust's own).

``worker`` runs the Faust app; ``simulate`` and ``replay`` produce events;
``demo`` runs broker, simulator and worker together with a live view;
``config check`` validates a config; ``bench`` measures.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

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


# -- alerts ------------------------------------------------------------------------
@main.command("alerts")
@click.option("--url", default="http://127.0.0.1:6066", show_default=True,
              help="a worker's web server")
@click.option("--all", "show_all", is_flag=True, help="resolved alerts too")
@click.option("--json", "as_json", is_flag=True, help="print the JSON of GET /alerts")
@click.argument("fingerprint", required=False)
def alerts_cmd(url: str, show_all: bool, as_json: bool, fingerprint: str | None) -> None:
    """Alerts now (or one alert's timeline): what fires, why, since when."""
    from shoppulse.commands.alerts_view import show_alerts

    show_alerts(url, show_all=show_all, as_json=as_json, fingerprint=fingerprint)


@main.group()
def rules() -> None:
    """Check alert rules offline."""


@rules.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def rules_test(file: str) -> None:
    """Run FILE's fixture points and verdicts through the rules; exit 1 on a difference."""
    from shoppulse.alerting.ruletest import run_file

    try:
        results = run_file(file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    failed = [r for r in results if not r.ok]
    for r in results:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name} ({r.produced} transitions)")
        for p in r.problems:
            click.echo(f"       {p}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or not results:
        sys.exit(1)


# -- worker ------------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", type=click.Path(), help="config file (shoppulse.yaml)")
@click.option("--broker", help=BROKER_HELP)
@click.option("--web-port", type=int, default=None, help="port of /metrics (default 6066)")
@click.option("--loglevel", default="warning", show_default=True)
@click.option("--broker-wait", type=float, default=None, metavar="SECONDS",
              help="give up (exit 1) if the broker is still unreachable after this; "
                   "default: wait forever, retrying with backoff")
def worker(config_path: str | None, broker: str | None, web_port: int | None,
           loglevel: str, broker_wait: float | None) -> None:
    """Run a worker: ingest, windows, metrics on http://127.0.0.1:PORT/metrics."""
    from faust.worker import Worker

    from shoppulse.agents.app import create_app
    from shoppulse.streams.broker import BrokerError, resolve_broker
    from shoppulse.streams.topics import FOREVER, ensure_topics

    cfg = _config(config_path, broker)
    try:
        bootstrap, embedded = resolve_broker(cfg.broker)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    if embedded is not None:
        click.echo(f"embedded Kafka (Tansu) on {embedded.url}", err=True)
    try:
        cfg = ensure_topics(cfg, bootstrap, wait=FOREVER if broker_wait is None else broker_wait,
                            notify=lambda line: click.echo(line, err=True))
    except BrokerError as exc:
        if embedded is not None:
            embedded.stop()
        raise click.ClickException(str(exc)) from None
    rt = create_app(cfg, bootstrap, web_port=web_port)
    port = rt.app.conf.web_port
    click.echo(f"shoppulse worker: metrics on http://127.0.0.1:{port}/metrics", err=True)
    w = _stopping_fast(Worker)(rt.app, loglevel=loglevel, quiet=True)
    try:
        w.execute_from_commandline()
    finally:
        if embedded is not None:
            embedded.stop()


def _stopping_fast(worker_class: type) -> type:
    """A Faust Worker that does not wait for the events in hand when told to stop.

    Why: Faust's stop waits for every event an agent has taken to be acked, and an agent
    can be waiting on a table write or a send that the stopping app no longer completes:
    seen as "wait_empty: Waiting for tasks" until the supervisor's SIGKILL. Nothing needs
    that wait at shutdown: an unacked event is not committed, so the next owner reads it
    again, exactly as after a SIGKILL, which the agents are built for. (A rebalance still
    waits: there the table writes must land before the changelog is read back.)
    """

    class FastStopWorker(worker_class):  # type: ignore[misc, valid-type]
        def _schedule_shutdown(self, signal: Any) -> None:
            self.app.conf.stream_wait_empty = False
            super()._schedule_shutdown(signal)

    return FastStopWorker


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
@click.option("--dry-run", is_flag=True,
              help="backtest in this process: detectors, rules and playbooks, no outbound call")
@click.option("--json", "as_json", is_flag=True, help="with --dry-run: one JSON object")
def replay(file: str, broker: str | None, config_path: str | None, speed: float,
           dry_run: bool, as_json: bool) -> None:
    """Feed recorded events (JSON lines from simulate --out) through the pipeline."""
    from shoppulse.streams.simulator import read_jsonl

    if not dry_run:
        _produce(_config(config_path, broker), read_jsonl(file), speed)
        return
    import json

    from shoppulse.commands.backtest import backtest, report_lines

    result = backtest(_config(config_path), read_jsonl(file))
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(report_lines(result)))


# -- demo and bench ----------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", type=click.Path())
@click.option("--web-port", default=6066, show_default=True)
@click.option("--rate", default=None, type=float,
              help="sessions/s at the evening peak (default: 12/s at the current hour)")
@click.option("--incident", "incidents", multiple=True,
              default=("bot_traffic@60s+6m:3/channel=ads",), show_default=True)
@click.option("--duration", default=None, help="stop after this wall time (default: Ctrl-C)")
@click.option("--history", default="35m", show_default=True,
              help="simulated history produced at full speed first, past the detectors' "
                   "30-minute warm-up (0: none)")
@click.option("--speed", default=1.0, show_default=True,
              help="live event time per wall second (a short demo: 10)")
def demo(config_path, web_port, rate, incidents, duration, history, speed) -> None:
    """Broker + simulator + worker + live view, in one command. Ctrl-C stops all."""
    from shoppulse.commands.demo import run_demo
    from shoppulse.streams.config import parse_duration

    cfg_path = config_path or str(Path("shoppulse.yaml") if Path("shoppulse.yaml").exists()
                                  else Path(__file__).resolve().parent.parent / "shoppulse.yaml")
    run_demo(cfg_path, web_port=web_port, rate=rate, incidents=list(incidents),
             duration=parse_duration(duration) if duration else None,
             history=parse_duration(history), speed=speed)


@main.command()
@click.option("--config", "config_path", type=click.Path(), help="config file (shoppulse.yaml)")
@click.option("--out", default="grafana/dashboards", show_default=True,
              type=click.Path(file_okay=False), help="directory of the board JSON files")
@click.option("--check", is_flag=True, help="only compare: exit 1 if a file differs")
def dashboards(config_path: str | None, out: str, check: bool) -> None:
    """Generate the Grafana boards (grafana/dashboards/*.json) from the config's metrics."""
    from shoppulse.commands.dashboards import render

    boards = render(_config(config_path))
    directory = Path(out)
    stale = [name for name, text in boards.items()
             if not (directory / name).is_file() or (directory / name).read_text() != text]
    if check:
        if stale:
            raise click.ClickException(f"out of date in {out}: {', '.join(stale)}; "
                                       "run `shoppulse dashboards`")
        click.echo(f"{len(boards)} boards in {out} up to date")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in boards.items():
        (directory / name).write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(boards)} boards to {out} ({len(stale)} changed)")


@main.group()
def bench() -> None:
    """Benchmarks: they print figures and the baseline measured in the same run."""


@bench.command("throughput")
@click.option("--events", default=300_000, show_default=True)
@click.option("--runs", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--with-alerts", is_flag=True,
              help="the pipeline without and with rules, alert and notify agents, alternating")
def bench_throughput(events: int, runs: int, as_json: bool, with_alerts: bool) -> None:
    """Raw aiokafka getmany+decode vs the full pipeline on one worker."""
    from shoppulse.commands.bench import throughput

    throughput(events=events, runs=runs, as_json=as_json, with_alerts=with_alerts)


@bench.command("hostile")
@click.option("--hostile", "n_hostile", default=100_000, show_default=True,
              help="hostile messages (1 MB and 10 MB payloads included)")
@click.option("--valid", "n_valid", default=100_000, show_default=True,
              help="simulator events interleaved with them")
@click.option("--seed", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_hostile(n_hostile: int, n_valid: int, seed: int, as_json: bool) -> None:
    """Fuzz a live worker: dead-lettered, counted, crashes, valid exact, peak RSS."""
    from shoppulse.commands.hostile import hostile_bench

    hostile_bench(hostile=n_hostile, valid=n_valid, seed=seed, as_json=as_json)


@bench.command("detect")
@click.option("--days", type=float, default=None,
              help="simulated days (default 3; 7 with --synthetic)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--seed", default=7, show_default=True, help="simulator and schedule seed")
@click.option("--synthetic", is_flag=True,
              help="point-level benchmark on series of known law, against the oracle CUSUM")
@click.option("--series", "n_series", default=200, show_default=True,
              help="--synthetic: number of series")
@click.option("--runs", default=1, show_default=True,
              help="--synthetic: seeds SEED.. SEED+RUNS-1, figures are their medians")
@click.option("--rate", default=8.0, show_default=True, help="sessions/s at the daily peak")
@click.option("--save-points", "save", type=click.Path(dir_okay=False),
              help="also write the metric points and ground truth to FILE (JSON lines)")
@click.option("--points", type=click.Path(exists=True, dir_okay=False),
              help="score the points of a --save-points FILE instead of simulating "
                   "(seconds instead of minutes; --days/--seed/--rate are the file's)")
def bench_detect(days: float | None, as_json: bool, seed: int, synthetic: bool, n_series: int,
                 runs: int, rate: float, save: str | None, points: str | None) -> None:
    """Detectors on simulated days with injected incidents: recall, TTD, false alarms.

    With --synthetic: on generated series of known distribution, against the oracle."""
    from shoppulse.commands.bench import detect

    if save and points:
        raise click.UsageError("--save-points and --points exclude each other")
    if synthetic:
        if save or points:
            raise click.UsageError("--synthetic takes neither --save-points nor --points")
        from shoppulse.commands.detect_synthetic import main_synthetic

        main_synthetic(n_series=n_series, days=7.0 if days is None else days, seed=seed,
                       as_json=as_json, runs=runs)
        return
    detect(days=3.0 if days is None else days, as_json=as_json, seed=seed, rate=rate,
           save=save, points=points)


@bench.command("alerts")
@click.option("--rate", default=20.0, show_default=True,
              help="transitions/s (rate x window categories flip at every window close)")
@click.option("--seconds", default=20.0, show_default=True, help="length of the live phase")
@click.option("--window", default=2.0, show_default=True, help="window size, seconds")
@click.option("--grace", default=1.0, show_default=True, help="grace, seconds")
@click.option("--burst", default=300, show_default=True, help="transitions produced at once")
@click.option("--runs", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_alerts(rate: float, seconds: float, window: float, grace: float, burst: int,
                 runs: int, as_json: bool) -> None:
    """Window close -> webhook on the live embedded stack: latency per hop, rates."""
    from shoppulse.commands.alerts_bench import alerts

    alerts(rate=rate, seconds=seconds, window=window, grace=grace, burst=burst, runs=runs,
           as_json=as_json)


@bench.command("playbooks")
@click.option("--alerts", default=200, show_default=True, help="alerts per run, one at a time")
@click.option("--runs", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def bench_playbooks(alerts: int, runs: int, as_json: bool) -> None:
    """Alert record -> the playbook's first side effect (p50/p99) against a raw consumer."""
    from shoppulse.commands.playbooks_bench import playbooks

    playbooks(alerts=alerts, runs=runs, as_json=as_json)


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--all", "all_", is_flag=True,
              help="every scenario (in waves of scenarios that move different series)")
@click.option("--rate", default=16.0, show_default=True, help="sessions/s at the daily peak")
@click.option("--warm", default="35m", show_default=True, help="simulated history first")
@click.option("--live-actions", is_flag=True, help="really perform the playbooks' actions")
@click.option("--timeout", default="15m", show_default=True, help="wall time for the whole drill")
@click.option("--grace", default="60s", show_default=True,
              help="wall time for the last stages once every event is consumed")
@click.option("--sequential", is_flag=True, help="one scenario at a time (no waves)")
@click.option("--config", "config_path", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def drill(scenarios: tuple[str, ...], all_: bool, rate: float, warm: str, live_actions: bool,
          timeout: str, grace: str, sequential: bool, config_path: str | None,
          as_json: bool) -> None:
    """Inject SCENARIO(s) into an embedded stack and report detection, playbook and timings."""
    import json

    from shoppulse.commands.drill import run_drills
    from shoppulse.streams.config import parse_duration
    from shoppulse.streams.incidents import SCENARIOS

    names = list(SCENARIOS) if all_ else list(scenarios)
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown:
        raise click.UsageError(f"name scenarios or --all; known: {', '.join(SCENARIOS)}"
                               + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    from shoppulse.commands.drill import report_lines

    result = run_drills(names, rate=rate, warm=parse_duration(warm),
                        timeout=parse_duration(timeout), grace=parse_duration(grace),
                        live_actions=live_actions, config_path=config_path,
                        sequential=sequential, say=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(report_lines(result)))
    if not all(r["passed"] for r in result["drills"].values()):
        raise SystemExit(1)


def _register() -> None:
    from shoppulse.commands.playbook_cli import playbook

    main.add_command(playbook)


_register()


if __name__ == "__main__":  # pragma: no cover  (after every command is registered)
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
