"""The read-only status page at ``/``: loaded in headless Chromium (Debian's) while a payment
outage fires on the embedded stack, and what it shows checked in the rendered DOM: the firing
alert's rule, value and band, a playbook run's stage, one SVG chart per headline series; a
label with ``<script>`` and ``<img onerror>`` from a producer stays text."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from shoppulse.agents.status import SeriesRing, headline_metrics, page_html
from shoppulse.streams.broker import die_with_parent
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import parse_incident
from shoppulse.streams.records import Alert, Verdict
from shoppulse.streams.simulator import Simulator
from shoppulse.streams.topics import ensure_topics
from tests.configs import builtin_with_metrics
from tests.kafka_io import produce, read_topic

START = 1_767_254_400.0  # 2026-01-01 08:00 UTC
RULE = "PaymentSuccessLow"
PWN = "document.body.setAttribute('data-pwned','1')"
EVIL = f"<script>{PWN}</script><img src=x onerror=\"{PWN}\">"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def verdict(metric: str, t: float, value: float, *, labels: dict | None = None,
            band: tuple[float, float] | None = (0.9, 1.0), anomalous: bool = False) -> Verdict:
    lo, hi = band or (math.nan, math.nan)
    return Verdict(score=0.5, expected=(lo + hi) / 2, lower=lo, upper=hi, anomalous=anomalous,
                   warming_up=band is None, metric=metric, labels=labels or {},
                   window_start=t, window_end=t + 60, value=value, detector="test")


def test_ring_keeps_the_recent_headline_points_of_each_series_in_order():
    ring = SeriesRing(["payment_success_overall", "orders_overall"], keep=3)
    for i, v in enumerate([0.97, 0.96, 0.5, 0.4]):
        ring.observe(verdict("payment_success_overall", START + 60 * i, v, anomalous=v < 0.9), 1)
    ring.observe(verdict("payment_success_overall", START + 60, 0.1), 1)  # re-emitted window
    ring.observe(verdict("payment_success_overall", START + 600, 0.2,
                         labels={"platform": "ios"}), 1)  # a split series: not headline
    ring.observe(verdict("ctr", START, 0.2), 1)  # not a headline metric
    ring.observe(verdict("orders_overall", START, math.nan, band=None), 4)  # warming up
    got = {s["metric"]: s["points"] for s in ring.as_json()["series"]}
    assert [(p[0], p[2], p[6]) for p in got["payment_success_overall"]] == [
        (START + 60, 0.96, False), (START + 120, 0.5, True), (START + 180, 0.4, True)]
    assert got["orders_overall"] == [[START, START + 60, None, None, None, None, False, True]]
    json.dumps(ring.as_json(), allow_nan=False)  # strict JSON: no NaN reaches the page
    ring.forget(4)  # orders_overall's partition went to another worker
    got = {s["metric"]: s["points"] for s in ring.as_json()["series"]}
    assert got["orders_overall"] == [] and len(got["payment_success_overall"]) == 3


def test_headline_series_are_the_overall_metrics_of_the_config():
    cfg = load_config(DEFAULT_PATH, env={})
    got = headline_metrics(cfg)
    assert {"payment_success_overall", "conversion_overall", "bounce_overall",
            "orders_overall", "gmv_overall"} <= set(got)
    assert all(m.endswith("_overall") for m in got)


def test_page_loads_nothing_from_elsewhere():
    html, csp = page_html()
    for needle in ("http://", "https://", "//cdn", "src=", "href=", "@import", "url("):
        assert needle not in html.replace('"http://www.w3.org/2000/svg"', ""), needle
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    assert "script-src 'sha256-" in csp and "connect-src 'self'" in csp


# --- the page in Chromium on the embedded stack --------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                        c.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                    out.append(c)
                out += c.all(tag, **attrs)
        return out

    def by_id(self, id_: str) -> Node:
        return next(n for n in self.all() if n.attrs.get("id") == id_)


class DomParser(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def chromium_dom(url: str, profile: Path, budget_ms: int = 6000) -> tuple[str, Node]:
    """The page's DOM after ``budget_ms`` of virtual time (its first fetches answered)."""
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(binary):  # never a skip: the machine set-up installs it
        pytest.fail("chromium missing: apt-get install chromium")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=die_with_parent)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    raw = out.decode()
    parser = DomParser()
    parser.feed(raw)
    return raw, parser.root


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def wait_until(what: str, probe, timeout: float, log) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; worker log: {log()}")


def shown(text: str) -> float | None:
    """A number as the page prints it ("-": none)."""
    return None if text == "-" else float(text.replace(",", ""))


def evil_alert(cfg) -> Alert:
    """A firing alert whose labels and annotations a hostile producer chose."""
    return Alert(fingerprint="evil0000", episode=1, state="firing", rule=f"Rule{EVIL}",
                 severity="warning", labels={"metric": "ctr", "channel": EVIL},
                 starts_at=START, at=START + 60, value=0.01, expected=0.05, lower=0.03,
                 upper=0.07, score=0.99,
                 contributors=[{"labels": {"channel": EVIL}, "share": 0.9}],
                 annotations={"summary": EVIL})


@pytest.mark.broker
def test_page_in_chromium_shows_the_firing_alert_runs_and_charts(kafka, app_name, workers,
                                                                  tmp_path):
    from kafka import KafkaProducer

    headline = ("payment_success_overall", "orders_overall")
    data = builtin_with_metrics(*headline)
    data["detectors"] = {"warmup": 300}  # bands after 5 windows
    rule = next(r for r in data["rules"] if r["name"] == RULE)
    data["rules"] = [{**rule, "min_denominator": 5}]  # a quiet morning: few payments/window
    path = tmp_path / "status.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = ensure_topics(load_config(path, env={"SHOPPULSE_APP": app_name}), kafka.bootstrap)
    outage = parse_incident("payment_outage@12m+20m:0.7", origin=START)
    sim = Simulator(seed=5, rate=8, start=START, incidents=[outage])
    produce(kafka.bootstrap, cfg, (e for e in sim.events(20 * 60)))  # 8 min into the outage
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    try:
        producer.send(cfg.topic_name("alerts"), key=b"evil0000", value=evil_alert(cfg).dumps(),
                      partition=0)
        producer.flush()
    finally:
        producer.close()
    w = workers(path)
    w.wait_web()
    base = f"http://127.0.0.1:{w.port}"

    def firing() -> list[Alert]:
        return [a for a in map(lambda r: Alert.loads(r.value),
                               read_topic(kafka.bootstrap, cfg.topic_name("alerts")))
                if a.rule == RULE and a.state == "firing"]

    alert = wait_until("the alert to fire", firing, 120, w.tail)[0]
    runs = wait_until("a playbook run",
                      lambda: get_json(f"{base}/playbooks/runs")["runs"], 60, w.tail)
    series = get_json(f"{base}/status/series")
    got = {s["metric"]: s["points"] for s in series["series"]}
    assert set(got) == set(headline)
    assert all(len(p) >= 10 for p in got.values()), {m: len(p) for m, p in got.items()}
    assert any(p[4] is not None for p in got["payment_success_overall"]), "no band at all"

    t0 = time.monotonic()
    raw, dom = chromium_dom(f"{base}/", tmp_path / "chromium-profile")
    took = time.monotonic() - t0
    assert dom.all("body"), raw[:2000]
    body = dom.all("body")[0]
    assert int(body.attrs.get("data-refreshes", "0")) >= 1, raw[:3000]

    # the firing alert: rule, value and band as the alert record says
    rows = dom.by_id("alerts").all("tr", data_rule=RULE)
    assert rows, dom.by_id("alerts").text()
    cells = [td.text() for td in rows[0].all("td")]
    assert cells[0] == "firing" and cells[1] == RULE, cells
    assert shown(cells[4]) == pytest.approx(alert.value, abs=5e-4), (cells, alert)
    assert shown(cells[5]) == pytest.approx(alert.expected, abs=5e-4), (cells, alert)
    lo, hi = (shown(x) for x in cells[6].split(" .. ")) if cells[6] != "-" else (None, None)
    assert (lo, hi) == (pytest.approx(alert.lower, abs=5e-4),
                        pytest.approx(alert.upper, abs=5e-4)), (cells, alert)
    # a playbook run and its stage
    run_rows = dom.by_id("runs").all("tr")[1:]
    assert run_rows, dom.by_id("runs").text()
    stages = {r.attrs["data-run"]: [td.text() for td in r.all("td")][2] for r in run_rows}
    assert any(stages.get(r["run_id"]) == r["stage"] for r in runs), (stages, runs)
    # one SVG chart per headline series, with the value line and the band drawn
    figures = {f.attrs["data-metric"]: f for f in dom.by_id("series").all("figure")}
    assert set(figures) == set(headline)
    for metric, fig in figures.items():
        assert len(fig.all("svg")) == 1, metric
        assert fig.all("polyline", **{"class": "value"}), metric
    assert figures["payment_success_overall"].all("polygon", **{"class": "band"})
    # an anomalous window is marked on the chart exactly when the data says so
    dots = figures["payment_success_overall"].all("circle", **{"class": "anomalous"})
    before = [p for p in got["payment_success_overall"] if p[6]]  # fetched before the page
    after = [p for s in get_json(f"{base}/status/series")["series"]
             if s["metric"] == "payment_success_overall" for p in s["points"] if p[6]]
    assert len(before) <= len(dots) <= len(after), (len(before), len(dots), len(after))

    # the hostile labels are text: no element injected, nothing ran, shown escaped
    evil = [r for r in dom.by_id("alerts").all("tr") if r.attrs.get("data-fingerprint")
            == "evil0000"]
    assert evil and EVIL in evil[0].text()
    assert not [n for n in dom.all() if "data-pwned" in n.attrs]  # the payload never ran
    assert not dom.all("img") and len(dom.all("script")) == 1
    assert "&lt;script&gt;" in raw

    # read-only: the page and its data refuse writes
    for path_ in ("/", "/status/series"):
        req = urllib.request.Request(f"{base}{path_}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 405
    with urllib.request.urlopen(f"{base}/", timeout=10) as r:
        assert "script-src 'sha256-" in r.headers["Content-Security-Policy"]
    print(f"chromium rendered the page in {took:.1f}s")
