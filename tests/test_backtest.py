"""``replay --dry-run``: detectors, rules and playbooks over recorded events, no outbound call."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Any

from shoppulse.commands.backtest import backtest
from shoppulse.streams.config import DEFAULT_PATH, load_config
from shoppulse.streams.incidents import Incident
from shoppulse.streams.simulator import Simulator

T0 = 1_767_225_600.0


class Counting(http.server.ThreadingHTTPServer):
    """A real HTTP server on loopback that counts every request it gets."""

    def __init__(self) -> None:
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server.hits += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_dry_run_backtest_reports_what_would_have_been_done_and_calls_nothing(
        tmp_path: Path) -> None:
    target = Counting()
    books = tmp_path / "books"
    books.mkdir()
    url = f"http://127.0.0.1:{target.server_address[1]}/reroute?token=never-shown"
    (books / "pay.yaml").write_text(f"""
name: pay
title: Payments down (backtest)
scenario: payment_outage
risk: financial
trigger: ['alertname="PaySuccessLow"']
decide: {{mode: approval, timeout: 10m}}
act:
  - {{name: page, type: webhook, url: "{url}"}}
  - {{name: route, type: kafka, topic: commands, idempotent: true, retries: 1}}
""")
    rule = {"name": "PaySuccessLow", "kind": "threshold", "metric": "payment_success_overall",
            "op": "<", "value": 0.8, "min_denominator": 3, "for": "2m", "severity": "critical"}
    config = load_config(DEFAULT_PATH, env={}, overrides={"rules": [rule]})
    sim = Simulator(seed=3, rate=10.0, start=T0,
                    incidents=[Incident("payment_outage", T0 + 900, 600, magnitude=1.0)])
    try:
        result = backtest(config, sim.events(2400.0), folder=str(books))
    finally:
        target.shutdown()
    assert target.hits == 0 and result["outbound_calls"] == 0
    assert result["alerts_by_rule"].get("PaySuccessLow", 0) >= 1
    assert result["runs_per_playbook"] == {"pay": result["alerts_by_rule"]["PaySuccessLow"]}
    would = result["runs"][0]["would_have"]
    assert would[0].startswith("page: would have POST http://127.0.0.1:")
    assert "never-shown" not in " ".join(would)  # the URL's token stays out of the report
    assert would[1] == "route: would have produce a command to topic commands"
