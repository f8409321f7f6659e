"""Playbooks in a worker: SIGKILL mid-act repeats no completed action; approvals need a token."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from shoppulse.alerting.notifiers.signing import HEADER, verify
from shoppulse.streams.broker import EmbeddedBroker
from shoppulse.streams.config import DEFAULT_PATH
from shoppulse.streams.records import Alert, PlaybookStep, Verdict
from tests.conftest import WorkerProcess
from tests.kafka_io import read_topic

SECRET = "worker-test-secret"
TOKEN = "approve-token-0123456789"
T0 = 1_767_225_600.0


class Target(http.server.ThreadingHTTPServer):
    """A real webhook receiver on loopback that counts calls per path (signed ones only)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.keys: list[str] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verify(body, self.headers.get(HEADER), [SECRET])
                target.hits[self.path] += 1
                target.keys.append(self.headers["Idempotency-Key"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def post(url: str, token: str | None) -> int:
    req = urllib.request.Request(url, method="POST", data=b"")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_sigkill_mid_act_resumes_without_repeating_a_completed_action(
        tmp_path: Path, kafka: EmbeddedBroker, app_name: str) -> None:
    target = Target()
    books = tmp_path / "books"
    books.mkdir()
    (books / "pay.yaml").write_text(f"""
name: pay
title: Payment outage (test)
scenario: payment_outage
risk: financial
trigger: ['metric="payment_success_overall"']
decide: {{mode: approval, timeout: 1h}}
act:
  - {{name: first, type: webhook, url: "{target.url}/first"}}
  - {{name: pause, type: wait, duration: 6s}}
  - {{name: second, type: webhook, url: "{target.url}/second", idempotent: true, retries: 2}}
evaluate: {{windows: 2, timeout: 1h}}
""")
    env = {**os.environ, "SHOPPULSE_APP": app_name, "PYTHONUNBUFFERED": "1",
           "SHOPPULSE_PLAYBOOKS__FOLDER": str(books), "SHOPPULSE_WEBHOOK_SECRETS": SECRET,
           "SHOPPULSE_API_TOKEN": TOKEN}
    workers = [WorkerProcess(kafka.url, DEFAULT_PATH, env, tmp_path / "w0.log")]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    try:
        w = workers[0]
        w.wait_web()
        alert = Alert(fingerprint="fp-pay", episode=1, state="firing", rule="PaymentAnomaly",
                      severity="critical", labels={"metric": "payment_success_overall"},
                      starts_at=T0, at=T0 + 120, value=0.4, expected=0.97, lower=0.9, upper=1.0)
        runs_url = f"http://127.0.0.1:{w.port}/playbooks/runs"

        def runs() -> list[dict[str, Any]]:
            with urllib.request.urlopen(runs_url, timeout=5) as resp:
                return json.loads(resp.read())["runs"]

        deadline = time.monotonic() + 90
        while not runs():  # the first alert may land before the agent joined its group
            producer.send(f"{app_name}.alerts", key=b"fp-pay", value=alert.dumps()).get(10)
            time.sleep(3)
            assert time.monotonic() < deadline, w.tail()
        (run,) = runs()
        assert run["awaiting_approval"] and target.hits == {}  # nothing acts unapproved
        answer = f"{runs_url}/{run['run_id']}/approve"
        assert post(answer, None) == 401
        assert post(answer, "wrong-token-0123456789") == 401
        assert target.hits == {}
        assert post(answer, TOKEN) == 202
        wait_for(lambda: target.hits["/first"] == 1, 30, "the first action")
        time.sleep(1.5)
        w.kill()  # mid-act: inside the wait, after `first` completed
        assert target.hits["/second"] == 0
        w2 = WorkerProcess(kafka.url, DEFAULT_PATH, env, tmp_path / "w1.log")
        workers.append(w2)
        w2.wait_web()
        wait_for(lambda: target.hits["/second"] >= 1, 90, f"the second action: {w2.tail()}")
        for i in range(2):  # the series back inside its band for two windows
            v = Verdict(score=0.1, expected=0.97, lower=0.9, upper=1.0, anomalous=False,
                        warming_up=False, metric="payment_success_overall", labels={},
                        window_start=T0 + 600 + 60 * i, window_end=T0 + 660 + 60 * i,
                        value=0.96)
            producer.send(f"{app_name}.anomalies", key=b"payment_success_overall{}",
                          value=v.dumps()).get(10)

        def steps() -> list[PlaybookStep]:
            return [PlaybookStep.loads(r.value)
                    for r in read_topic(kafka.bootstrap, f"{app_name}.playbook-runs")]

        wait_for(lambda: any(s.status == "recovered" for s in steps()), 60, "recovery")
        assert target.hits == {"/first": 1, "/second": 1}
        assert target.keys == [f"{run['run_id']}:act:first", f"{run['run_id']}:act:second"]
        done = [(s.step, s.status) for s in steps() if s.stage == "act"]
        assert done.count(("first", "succeeded")) == 1 and ("second", "succeeded") in done
        assert [s.who for s in steps() if s.status == "approved"] == ["api"]
        again = f"http://127.0.0.1:{w2.port}/playbooks/runs/{run['run_id']}/approve"
        assert post(again, TOKEN) == 409  # answered already, also for the restarted worker
    finally:
        producer.close()
        for w in workers:
            w.stop()
        target.shutdown()
