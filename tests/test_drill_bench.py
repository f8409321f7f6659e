"""``shoppulse bench playbooks``: the figures it prints come from real runs (small sizes)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_playbooks_measures_first_action_and_baseline(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "shoppulse.commands.cli", "bench", "playbooks", "--alerts", "8",
         "--runs", "1", "--json"], cwd=tmp_path, capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    r = json.loads(out.stdout)
    assert r["received"] == r["sent"] == 8  # every alert's webhook arrived, signed
    assert r["signature_rejects"] == 0
    assert 0 < r["baseline_p50_s"] <= r["baseline_p99_s"]
    assert 0 < r["first_action_p50_s"] <= r["first_action_p99_s"]
    assert r["p99_ratio"] == r["first_action_p99_s"] / r["baseline_p99_s"]
    assert r["goal_met"] == (r["first_action_p99_s"] <= 0.5)
