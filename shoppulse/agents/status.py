"""The read-only status page at ``/``: for a laptop or ``make demo``, where no Grafana runs.

The page (``status_page.html``, one self-contained file: no CDN, works offline) polls JSON
endpoints every few seconds: ``/alerts?resolved=0`` and ``/playbooks/runs`` (served by the
alert and playbook stages) and ``GET /status/series`` from here, the recent points of the
headline series (the ``*_overall`` metrics) with their expected band. Those points are kept
in a bounded ring buffer per series, fed by the detect agent, so they are the series whose
partitions *this* worker owns; Prometheus/Grafana see every worker's.

Every value reaches the page as JSON and is put into the DOM as text (never as markup), and
the page's Content-Security-Policy allows only its own inline script (by hash) and requests
to this origin: a label like ``<script>`` from a producer stays text. Nothing here mutates.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from collections import deque
from importlib.resources import files
from typing import Any

import faust

from shoppulse.streams.config import Config
from shoppulse.streams.records import Verdict

HEADLINE_SUFFIX = "_overall"
KEEP = 180  # points per series: three hours of 60 s windows, 30 min of the demo's 10 s


def headline_metrics(config: Config) -> list[str]:
    """The site-wide series an operator reads first: ``*_overall`` metrics without dimensions."""
    return [m.name for m in config.metrics
            if m.name.endswith(HEADLINE_SUFFIX) and not m.dimensions]


def _num(v: float | None) -> float | None:
    """JSON has no NaN: a missing value (no denominator, warm-up band) is null."""
    return None if v is None or not math.isfinite(v) else float(v)


class SeriesRing:
    """The last ``keep`` verdicts of each headline series seen by this worker."""

    def __init__(self, metrics: list[str], keep: int = KEEP) -> None:
        self.metrics = list(metrics)
        self.keep = keep
        self.points: dict[str, deque[list[Any]]] = {m: deque(maxlen=keep) for m in metrics}
        self.updated: float | None = None
        self.partition: dict[str, int] = {}  # metric -> the metrics partition it came from

    def observe(self, v: Verdict, partition: int) -> None:
        ring = self.points.get(v.metric)
        if ring is None or v.labels:
            return  # not a headline series
        self.partition[v.metric] = partition
        if ring and v.window_start <= ring[-1][0]:
            return  # out of order or again (a re-emitted window): the ring stays sorted
        ring.append([v.window_start, v.window_end, _num(v.value), _num(v.expected),
                     _num(v.lower), _num(v.upper), bool(v.anomalous), bool(v.warming_up)])
        self.updated = time.time()

    def forget(self, partition: int) -> None:
        """A revoked partition's series are another worker's now: stop showing stale ones."""
        for metric, p in list(self.partition.items()):
            if p == partition:
                self.points[metric].clear()
                del self.partition[metric]

    def as_json(self) -> dict[str, Any]:
        cols = ["window_start", "window_end", "value", "expected", "lower", "upper",
                "anomalous", "warming_up"]
        return {"columns": cols, "keep": self.keep, "updated": self.updated,
                "series": [{"metric": m, "points": list(self.points[m])} for m in self.metrics]}


def page_html() -> tuple[str, str]:
    """The page and its Content-Security-Policy (the inline script allowed by its hash)."""
    html = files("shoppulse.agents").joinpath("status_page.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest())
                      .decode() + "'" for s in scripts)
    csp = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
           "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html, csp


def attach_status(app: faust.App, config: Config) -> SeriesRing:
    """The ring of headline series and the read-only views ``/`` and ``/status/series``."""
    ring = SeriesRing(headline_metrics(config))
    html, csp = page_html()
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

    @app.page("/")
    class StatusPage(faust.web.View):
        """The status page itself (GET only: every other method is 405)."""

        async def get(self, request: Any) -> Any:
            return self.html(html, headers=dict(headers))

    @app.page("/status/series")
    class SeriesView(faust.web.View):
        """Recent points and band of each headline series owned by this worker."""

        async def get(self, request: Any) -> Any:
            return self.json({**ring.as_json(), "app": config.app},
                             headers={"Cache-Control": "no-store"})

    return ring
