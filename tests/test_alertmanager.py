"""The Alertmanager receiver against a real ``prometheus-alertmanager`` on loopback: it
receives and lists the alert, and the resolve ends it, which its own routing turns into a
resolved notification to a webhook (so silences, routes and on-call tooling keep working)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from shoppulse.alerting.notifiers.dispatcher import Dispatcher, MemoryRows
from shoppulse.streams.broker import die_with_parent, free_port
from tests.hooks import HookServer
from tests.notify_helpers import alert, spec, until

AM = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
pytestmark = pytest.mark.skipif(not os.path.exists(AM), reason="prometheus-alertmanager missing")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, HookServer]]:
    """Alertmanager routing everything to a loopback webhook, stopped by its pid."""
    hook = HookServer().start()
    port = free_port()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n"
        "  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n- name: hook\n  webhook_configs:\n  - url: {hook.url}\n"
        "    send_resolved: true\n")
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [AM, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "alertmanager.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url, hook
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
        hook.stop()


def listed(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as r:
        return json.loads(r.read())


def test_alertmanager_receives_lists_and_resolves(alertmanager):
    url, hook = alertmanager
    fired = alert(1)

    async def main():
        reg = CollectorRegistry()
        d = Dispatcher.from_config({"am": spec("alertmanager", url=url)}, MemoryRows(), reg)
        d.start()
        d.handle(fired)
        await until(lambda: listed(url), timeout=15, what="the alert in Alertmanager")
        shown = listed(url)
        await until(lambda: any(b["status"] == "firing" for b in hook.bodies()), timeout=15,
                    what="Alertmanager's own firing notification")
        d.handle(alert(1, "resolved"))
        await until(lambda: not listed(url), timeout=15, what="the resolve in Alertmanager")
        await until(lambda: any(b["status"] == "resolved" for b in hook.bodies()), timeout=15,
                    what="Alertmanager's resolved notification")
        sent = reg.get_sample_value("shoppulse_notifications_total",
                                    {"receiver": "am", "result": "sent"})
        await d.stop()
        return shown, sent

    shown, sent = asyncio.run(main())
    (a,) = shown
    assert a["labels"] == {"alertname": "payment_drop", "severity": "critical",
                           "metric": "payment_success", "series": "s1"}
    assert a["status"]["state"] == "active"
    assert a["annotations"]["summary"] == "payment success dropped"
    assert a["startsAt"].startswith("2026-01-01T08:01:00")
    assert sent == 2
    firing = [b for b in hook.bodies() if b["status"] == "firing"]
    resolved = [b for b in hook.bodies() if b["status"] == "resolved"]
    assert firing[0]["alerts"][0]["labels"]["alertname"] == "payment_drop"
    assert resolved[-1]["alerts"][0]["labels"]["series"] == "s1"
    assert resolved[-1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
