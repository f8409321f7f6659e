"""`shoppulse demo` on a short schedule: the incident's alert fires (terminal, /metrics,
signed webhook log), its playbook runs its four stages, recovers, and the alert resolves."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from shoppulse.streams.broker import die_with_parent, free_port


def _metrics(port: int) -> str:
    with contextlib.suppress(OSError), urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()
    return ""


def test_demo_alert_playbook_recovery_and_resolve(tmp_path: Path):
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.commands.cli", "demo", "--web-port", str(port),
         "--history", "6m", "--speed", "10",
         "--incident", "landing_bounce_spike@20s+6m:0.5/channel=search",
         "--duration", "170s"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=die_with_parent)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        ln.decode(errors="replace").rstrip() for ln in demo.stdout), daemon=True)
    reader.start()
    firing_on_metrics = False
    try:
        deadline = time.monotonic() + 190
        while time.monotonic() < deadline and demo.poll() is None:
            text = "\n".join(lines)
            if not firing_on_metrics and "ALERT FIRING LandingBounceHigh" in text:
                firing_on_metrics = ('shoppulse_alerts_firing{rule="LandingBounceHigh",'
                                     'severity="warning"} 1.0') in _metrics(port)
            if "ALERT RESOLVED LandingBounceHigh" in text:
                break
            time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the demo stops what it started
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        reader.join(10)
    out = "\n".join(lines)

    def at(needle: str) -> int:
        i = out.find(needle)
        assert i >= 0, f"{needle!r} not in the demo's output:\n{out[-4000:]}"
        return i

    fired = at("ALERT FIRING LandingBounceHigh (warning) bounce_overall value")
    stages = [at(s) for s in ("1/4 identify", "2/4 decide: approved by auto",
                              "3/4 act: notify_growth, check_landing_pages", "4/4 evaluate")]
    at("PLAYBOOK landing_bounce_spike run landing_bounce_spike-")
    recovered = at("recovered after 3 windows")
    resolved = at("ALERT RESOLVED LandingBounceHigh")
    assert fired < stages[0] < stages[1] < stages[2] < stages[3] < recovered, out[-4000:]
    assert fired < resolved
    assert firing_on_metrics, "shoppulse_alerts_firing did not show the alert on /metrics"
    hooks = [json.loads(ln) for ln in (tmp_path / "shoppulse-demo-webhooks.jsonl")
             .read_text().splitlines()]
    got = {(a["labels"]["alertname"], a["status"]) for h in hooks for a in h["alerts"]}
    assert {("LandingBounceHigh", "firing"), ("LandingBounceHigh", "resolved")} <= got
    assert "shoppulse-demo-webhooks.jsonl" in out  # the log's path is printed
