"""The demo's story lines from the worker's /alerts and /playbooks/runs (plain code)."""

from __future__ import annotations

from shoppulse.commands.demo_story import Story

FIRING = {"fingerprint": "f1", "episode": 1, "state": "firing", "rule": "PaymentSuccessLow",
          "severity": "critical", "labels": {"metric": "payment_success_overall"},
          "at": 10.0, "value": 0.4, "expected": 0.97, "lower": 0.9, "upper": 1.0,
          "contributors": [{"labels": {"platform": "ios"}, "share": 0.6}]}


def run(**over):
    r = {"run_id": "payment_outage-abc", "playbook": "payment_outage", "stage": "decide",
         "outcome": None, "series": "payment_success_overall", "completed": [],
         "awaiting_approval": True, "acknowledged_by": None, "windows_inside": 0,
         "windows_needed": 3, "started_at": 1.0}
    r.update(over)
    return r


def test_fire_stages_approval_recovery_and_resolve_are_told_once_in_order():
    approved = []
    story = Story("http://x", "t", approve=lambda rid: approved.append(rid) or True)
    lines = story.update([FIRING], [run()])
    assert lines[0].startswith("ALERT FIRING PaymentSuccessLow (critical) "
                               "payment_success_overall value 0.400 expected 0.970 band "
                               "0.900..1.000 top contributors: platform=ios 60 %")
    assert lines[1].endswith("1/4 identify: payment_success_overall")
    assert "2/4 decide: awaiting approval; approved as the on-call (`shoppulse playbook "\
        "approve payment_outage-abc`)" in lines[2]  # after identify, as the run goes
    assert approved == ["payment_outage-abc"]
    assert story.update([FIRING], [run()]) == []  # nothing new, nothing told, no 2nd approval
    # the poll misses the act stage: it is told anyway, once the actions are done
    lines = story.update([FIRING], [run(stage="evaluate", awaiting_approval=False,
                                        acknowledged_by="demo",
                                        completed=["notify", "switch_route"])])
    assert [ln.split(": ", 1)[1] for ln in lines] == [
        "2/4 decide: approved by demo", "3/4 act: notify, switch_route",
        "4/4 evaluate: payment_success_overall back inside its band for 3 windows?"]
    resolved = {**FIRING, "state": "resolved", "value": 0.97, "peak": 0.2, "at": 99.0}
    lines = story.update([resolved], [run(stage="evaluate", outcome="recovered",
                                          awaiting_approval=False, windows_inside=3)])
    assert lines == ["ALERT RESOLVED PaymentSuccessLow payment_success_overall now 0.970, "
                     "worst 0.200 at 00:01:39",
                     "PLAYBOOK payment_outage run payment_outage-abc: recovered after 3 windows"]


def test_transitions_say_where_they_fall_against_the_incident_and_the_end_is_told():
    story = Story("http://x", "t", approve=lambda rid: True, incidents=[(5.0, 65.0)])
    early = {**FIRING, "fingerprint": "f0", "state": "pending", "rule": "CtrLow", "at": 2.0}
    lines = story.update([early, FIRING], [])
    assert lines[0].endswith("at 00:00:02 (event time; normal traffic, 3 s before the "
                             "incident)")
    assert lines[1].endswith("at 00:00:10 (event time; incident +5 s)")
    resolved = {**FIRING, "state": "resolved", "value": 0.97, "peak": 0.2, "at": 245.0}
    done = run(stage="evaluate", outcome="recovered", awaiting_approval=False)
    lines = story.update([resolved], [done])
    assert lines[0].endswith("at 00:04:05 (event time; 180 s after the incident's end)")
    assert lines[-1].startswith("DEMO every alert that fired (1) has resolved and every "
                                "playbook run is closed")
    assert story.update([resolved], [done]) == []  # told once


def test_alerts_that_join_a_run_are_told_and_its_evaluate_names_every_series():
    story = Story("http://x", "t", approve=lambda rid: True)
    member = {"rule": "CtrHigh", "series": "ctr{channel=ads}", "windows_inside": 0}
    r = run(stage="evaluate", awaiting_approval=False, acknowledged_by="auto",
            completed=["notify"], members=[member])
    lines = story.update([], [r])
    tail = [ln.split(": ", 1)[1] for ln in lines]
    assert tail[-2:] == [
        "4/4 evaluate: payment_success_overall, ctr{channel=ads} back inside their bands for "
        "3 windows?",
        "the same incident: CtrHigh ctr{channel=ads}, watched until it is back too"]
    assert story.update([], [r]) == []  # told once
