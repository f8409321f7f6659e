"""`shoppulse demo`: live numbers on /metrics, and Ctrl-C stops every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shoppulse.streams.broker import die_with_parent, free_port
from tests.test_broker import alive


def _children(pid: int) -> set[int]:
    """Direct children of ``pid``, from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                out.add(int(stat.parent.name))
    return out


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def _ignore_sigint() -> None:
    """What a non-interactive shell does to a job started with `&`."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_demo_shows_metrics_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.commands.cli", "demo", "--web-port", str(port),
         "--rate", "5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_ignore_sigint)
    started: set[int] = set()
    try:
        clicks = 'shoppulse_events_total{topic="clicks"}'
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and clicks not in _scrape(port):
            assert demo.poll() is None, demo.stdout.read().decode()
            started |= _children(demo.pid)
            time.sleep(1)
        assert clicks in _scrape(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"shoppulse status" in r.read()  # the status page
        started |= _children(demo.pid)
        # the simulator is a thread of the demo (one stream from history into live traffic)
        assert len(started) >= 2, f"broker and worker expected, got {started}"
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        assert demo.wait(60) == 0
        time.sleep(0.5)
        left = [pid for pid in started if alive(pid)]
        assert not left, f"still running after Ctrl-C: {left}"
        out = demo.stdout.read()
        assert b"stopping" in out
        assert f"status page (read-only, live): http://127.0.0.1:{port}/".encode() in out
    finally:
        for pid in [demo.pid, *started]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        demo.wait(10)
