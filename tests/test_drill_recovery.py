"""A run protecting no metric series (an absence on a topic) recovers when its alert resolves.

The pipeline_stall drill needs it: ``OrdersSilent`` carries ``{topic: orders}``, a series no
detector judges, so evaluate has no verdict to count; the flow coming back is its recovery.
So does a series the detector is still warming up on (fastship's delays in the drill): no
band yet, so the threshold rule's resolve, once the verdicts' clock reaches it, is the
recovery. Plain code on event time.
"""

from __future__ import annotations

from dataclasses import replace

from shoppulse.alerting.playbooks.engine import Engine
from shoppulse.alerting.playbooks.spec import load_library
from shoppulse.streams.records import Alert, Verdict
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


def _judged(start: float, value: float, *, warming: bool) -> Verdict:
    return Verdict(score=0.0, expected=0.05, lower=0.0, upper=0.2, anomalous=False,
                   warming_up=warming, metric="delay", labels={"carrier": "fastship"},
                   window_start=start, window_end=start + 60, value=value)


def _delays_high() -> Alert:
    """fastship's delays firing: the alert of a series the detector may still learn."""
    return Alert(fingerprint="fpdelay", episode=1, state="firing", rule="DeliveryDelaysHigh",
                 severity="warning", labels={"metric": "delay", "carrier": "fastship"},
                 starts_at=T0, at=T0 + 300, value=0.9, expected=0.3,
                 annotations={"playbook": "logistics_delay"})


def test_a_series_the_detector_still_learns_recovers_on_the_alerts_resolve():
    eng = Engine(load_library(None), dry_run=True)
    late = _delays_high()
    steps, calls = eng.on_alert(late, now=1.0)
    drive(eng, calls)
    run_id = steps[0].run_id
    assert eng.get(run_id).stage == "evaluate"
    # warming-up verdicts alone recover nothing: no band, and the rule still fires
    for i in range(4):
        assert eng.on_verdict(_judged(T0 + 300 + 60 * i, 0.0, warming=True), now=2.0)[0] == []
    resolved = replace(late, state="resolved", at=T0 + 900, ends_at=T0 + 900)
    assert eng.on_alert(resolved, now=3.0) == ([], [])  # the verdicts' clock is behind
    assert eng.on_verdict(_judged(T0 + 780, 0.0, warming=True), now=4.0)[0] == []
    steps, _ = eng.on_verdict(_judged(T0 + 840, 0.0, warming=True), now=5.0)
    assert [(s.stage, s.status) for s in steps] == [("evaluate", "recovered")]
    assert steps[0].result["warming_up"] and steps[0].result["ttr_s"] == 600.0
    assert eng.open_runs == {}


def test_a_judged_series_still_needs_its_windows_inside_the_band_after_a_resolve():
    eng = Engine(load_library(None), dry_run=True)
    late = _delays_high()
    _, calls = eng.on_alert(late, now=1.0)
    drive(eng, calls)
    eng.on_alert(replace(late, state="resolved", at=T0 + 600, ends_at=T0 + 600), now=2.0)
    out = []
    for i, v in enumerate([0.5, 0.1, 0.1, 0.1]):  # outside, then three inside
        out += eng.on_verdict(_judged(T0 + 600 + 60 * i, v, warming=False), now=3.0)[0]
    assert [(s.status, s.result.get("windows")) for s in out] == [("recovered", 3)]
