"""Panels show data: every query of every board, run through a real Prometheus that scrapes a
real worker with the shipped scrape config and rules, parses and returns numbers.

Embedded Kafka, simulated shop traffic with a payment outage, late and duplicate events and a
few invalid messages; Prometheus (Debian's /usr/bin/prometheus) on loopback scraping the worker
every second. Panels that use a name of the alerting contract which the worker does not serve
yet (alerts, notifiers, playbooks built in parallel) are listed in a warning as not checked;
every other panel must return a finite value.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shoppulse.streams.broker import die_with_parent, free_port, stop_groups
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.kafka_io import produce
from tests.metric_names import CONTRACT, names_in
from tests.test_dashboards import BOARDS, panels

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent
START = 1_767_294_000.0  # 2026-01-01 19:00 UTC: evening traffic
SPAN, BULK = 20 * 60, 14 * 60  # event-time seconds in all, and produced at once first
ALL = {"$channel": ".*", "$platform": ".*", "$carrier": ".*"}  # each variable at "All"


@dataclass
class Ev:
    topic: str
    key: str
    value: bytes


class Prometheus:
    """/usr/bin/prometheus on loopback with the shipped config; only the target replaced."""

    def __init__(self, tmp: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:  # never a skip: scripts/setup-system.sh installs it
            pytest.fail("prometheus missing: run scripts/setup-system.sh test (make test does)")
        conf = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
        assert [j["job_name"] for j in conf["scrape_configs"]] == ["shoppulse"]
        conf["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
        conf["rule_files"] = [str(ROOT / "prometheus" / f) for f in conf["rule_files"]]
        conf.pop("alerting")  # no Alertmanager here
        path = tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(conf))
        self.port = free_port()
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True, preexec_fn=die_with_parent)

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:  # 400: the query does not parse
            return json.load(exc)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                return
            time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-2000:])

    def stop(self) -> None:
        stop_groups([self.proc])


def substitute(expr: str) -> str:
    for var, value in ALL.items():
        expr = expr.replace(var, value)
    return expr


def problem(prom: Prometheus, expr: str) -> str | None:
    """None when the query parses and returns at least one finite number; else why not."""
    body = prom.get("/api/v1/query", query=substitute(expr))
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    result = body["data"]["result"]
    values = [float(s["value"][1]) for s in result] if body["data"]["resultType"] == "vector" \
        else [float(result[1])]
    if not values:
        return "no data"
    if not any(math.isfinite(v) for v in values):
        return f"only {values[:3]}"
    return None


def variable_problem(prom: Prometheus, query: str) -> str | None:
    """``label_values(metric, label)``: the label must have values on that metric."""
    metric, label = query.removeprefix("label_values(").removesuffix(")").split(", ")
    body = prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
    return None if body.get("status") == "success" and body["data"] else f"no values: {body}"


def declared(metrics_url: str) -> set[str]:
    """Sample names the worker's /metrics declares (# TYPE), with or without samples yet."""
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out |= {f"{name}_{s}" for s in ("bucket", "sum", "count")} \
                if kind == "histogram" else {name}
    return out


def absence(name: str, served: set[str]) -> str:
    return f"{name} {'served, no sample yet' if name in served else 'not served'}"


def bad_messages() -> list[Ev]:
    """What a broken producer sends: dead-lettered, counted, the worker goes on."""
    return [Ev("clicks", "s-bad-1", b"{not json"),
            Ev("orders", "o-bad-1", json.dumps({"event_id": "x", "ts": START}).encode()),
            Ev("clicks", "s-bad-2", b"[1, 2, 3]")]


def test_every_panel_query_returns_data(kafka, app_name, workers, tmp_path):
    config_path = tmp_path / "shoppulse.yaml"
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["detectors"] = {"warmup": 300}  # judge after 5 windows, so the outage alarms here
    config_path.write_text(yaml.safe_dump(data))
    cfg = ensure_topics(load_config(config_path, env={"SHOPPULSE_APP": app_name}),
                        kafka.bootstrap)
    worker = workers(config_path)
    prom = Prometheus(tmp_path, f"127.0.0.1:{worker.port}")
    try:
        prom.wait_ready()
        worker.wait_web()
        outage = parse_incident("payment_outage@8m+12m:0.6", origin=START)
        sim = Simulator(seed=23, rate=12, start=START, incidents=[outage], late_fraction=0.02,
                        duplicate_fraction=0.01)
        events = sim.events(SPAN)
        bulk, live = [], []
        for ev in events:
            (bulk if ev.value["ts"] < START + BULK else live).append(ev)
        produce(kafka.bootstrap, cfg, bulk)
        produce(kafka.bootstrap, cfg, bad_messages())
        # the rest paced (20x event time), so windows keep closing while Prometheus scrapes
        produce(kafka.bootstrap, cfg, live, speed=20.0)

        boards = {p.name: json.loads(p.read_text()) for p in sorted(BOARDS.glob("*.json"))}
        targets = [(name, p["title"], t["expr"]) for name, b in boards.items()
                   for p in panels(b) for t in p["targets"]]
        variables = [(name, v["query"]) for name, b in boards.items()
                     for v in b["templating"].get("list", [])]
        produced = time.monotonic()
        deadline = produced + 150  # the detect stage may lag on a busy machine
        while True:
            names = set(prom.get("/api/v1/label/__name__/values")["data"])
            later = {(n, title): sorted(names_in([e]) & CONTRACT - names)
                     for n, title, e in targets if names_in([e]) & CONTRACT - names}
            failing = {(n, title, e): why for n, title, e in targets
                       if (n, title) not in later and (why := problem(prom, e))}
            failing |= {(n, "variable", q): why for n, q in variables
                        if (why := variable_problem(prom, q))}
            if not failing or time.monotonic() > deadline:
                break
            time.sleep(2)
        checked = len(targets) - sum(1 for n, t, _ in targets if (n, t) in later)
        print(f"all panels returned data {time.monotonic() - produced:.0f}s after the last event")
        served = declared(worker.metrics_url)
        assert not failing, "\n".join(f"{k}: {v}" for k, v in failing.items()) + \
            f"\nworker log: {worker.tail(1500)}"
        assert checked >= 80, f"only {checked} queries checked"
        if later:
            warnings.warn(
                f"{checked} of {len(targets)} panel queries and {len(variables)} variables "
                f"return data; not checked, names of the alerting contract without samples: "
                + "; ".join(f"{n} '{t}' ({', '.join(absence(x, served) for x in m)})"
                            for (n, t), m in sorted(later.items())),
                stacklevel=1)
    finally:
        prom.stop()
