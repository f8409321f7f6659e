"""A run protecting no metric series (an absence on a topic) recovers when its alert resolves.

The pipeline_stall drill needs it: ``OrdersSilent`` carries ``{topic: orders}``, a series no
detector judges, so evaluate has no verdict to count; the flow coming back is its recovery.
Plain code on event time.
"""

from __future__ import annotations

from dataclasses import replace

from shoppulse.alerting.playbooks.engine import Engine
from shoppulse.alerting.playbooks.spec import load_library
from shoppulse.streams.records import Alert
from tests.test_playbook_engine import T0, drive


def silent(state: str, at: float) -> Alert:
    return Alert(fingerprint="fpsilent", episode=1, state=state, rule="OrdersSilent",
                 severity="critical", labels={"topic": "orders", "drill": "true"},
                 starts_at=T0, at=at, ends_at=at if state == "resolved" else None,
                 value=300.0, expected=300.0,
                 annotations={"playbook": "pipeline_stall"})


def test_absence_run_recovers_when_the_alert_resolves_after_the_actions():
    eng = Engine(load_library(None), dry_run=True)
    steps, calls = eng.on_alert(silent("firing", T0 + 300), now=1.0)
    assert {s.playbook for s in steps} == {"pipeline_stall"}
    records = drive(eng, calls)
    assert [r.status for r in records][-1] == "started"  # evaluate started, nothing to read
    done, _ = eng.on_alert(silent("resolved", T0 + 900), now=2.0)
    assert [(s.stage, s.status) for s in done] == [("evaluate", "recovered")]
    assert done[0].result["ttr_s"] == 600.0
    assert eng.open_runs == {}


def test_absence_resolved_while_acting_recovers_once_the_actions_are_done():
    eng = Engine(load_library(None), dry_run=True)
    _, calls = eng.on_alert(silent("firing", T0 + 300), now=1.0)
    assert eng.on_alert(silent("resolved", T0 + 420), now=1.5) == ([], [])  # still in act
    records = drive(eng, calls)
    assert [(r.stage, r.status) for r in records][-2:] == [("evaluate", "started"),
                                                          ("evaluate", "recovered")]
    assert eng.open_runs == {}


def test_a_resolved_series_alert_still_waits_for_its_verdicts():
    eng = Engine(load_library(None), dry_run=True)
    pay = Alert(fingerprint="fppay", episode=1, state="firing", rule="PaymentSuccessLow",
                severity="critical", labels={"metric": "payment_success_overall"},
                starts_at=T0, at=T0 + 180, value=0.4, expected=0.9,
                annotations={"playbook": "payment_outage"})
    eng.on_alert(pay, now=1.0)
    resolved = replace(pay, state="resolved", at=T0 + 600, ends_at=T0 + 600)
    assert eng.on_alert(resolved, now=2.0) == ([], [])
    assert len(eng.open_runs) == 1
