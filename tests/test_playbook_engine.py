"""The playbook engine as plain code on event time: stages, approvals, attach, compensation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shoppulse.alerting.playbooks.engine import ApprovalError, Call, Engine, match_labels
from shoppulse.alerting.playbooks.spec import Playbook, load_library
from shoppulse.streams.records import Alert, Verdict

T0 = 1_767_225_600.0


def book(**over: Any) -> Playbook:
    data: dict[str, Any] = {
        "name": "pay", "title": "Payment outage", "scenario": "payment_outage",
        "risk": "financial", "trigger": ['metric=~"payment_success.*"', 'direction="drop"'],
        "act": [
            {"name": "a", "type": "notify", "message": "one",
             "compensate": {"name": "undo_a", "type": "notify", "message": "undo one"}},
            {"name": "b", "type": "kafka", "topic": "commands", "idempotent": True,
             "retries": 1, "compensate": {"name": "undo_b", "type": "notify", "message": "x"}},
            {"name": "c", "type": "webhook", "url": "http://127.0.0.1:9/x"},
        ],
        "evaluate": {"windows": 3, "timeout": "1h"},
    }
    data.update(over)
    return Playbook.model_validate(data)


def alert(episode: int = 1, *, state: str = "firing", value: float = 0.4,
          fp: str = "fp1", contributors: list[dict[str, Any]] | None = None) -> Alert:
    return Alert(fingerprint=fp, episode=episode, state=state, rule="PaymentAnomaly",
                 severity="critical", labels={"metric": "payment_success", "platform": "ios"},
                 starts_at=T0, at=T0 + 120, value=value, expected=0.97, lower=0.9, upper=1.0,
                 contributors=contributors or [])


def verdict(start: float, value: float, *, anomalous: bool = False) -> Verdict:
    return Verdict(score=0.1, expected=0.97, lower=0.9, upper=1.0, anomalous=anomalous,
                   warming_up=False, metric="payment_success", labels={"platform": "ios"},
                   window_start=start, window_end=start + 60, value=value)


def drive(engine: Engine, calls: list[Call], fail: str = "") -> list[Any]:
    """Report every call as done (``fail`` names one that fails); return all records."""
    records: list[Any] = []
    queue = list(calls)
    while queue:
        call = queue.pop(0)
        ok = call.step != fail
        steps, more = engine.finished(call, 0.0, T0 + 180, ok=ok, error="" if ok else "boom")
        records += steps
        queue += more
    return records


def test_auto_run_walks_the_four_stages_and_recovers_on_event_time() -> None:
    eng = Engine({"pay": book()})
    steps, calls = eng.on_alert(alert(), now=100.0)
    assert [(s.stage, s.status) for s in steps] == [
        ("identify", "started"), ("identify", "succeeded"), ("decide", "approved")]
    assert [c.step for c in calls] == ["a"]  # one action at a time, in order
    records = drive(eng, calls)
    assert [(r.stage, r.step, r.status) for r in records] == [
        ("act", "a", "succeeded"), ("act", "b", "succeeded"), ("act", "c", "succeeded"),
        ("evaluate", "", "started")]
    run = eng.get(steps[0].run_id)
    assert run is not None and run.stage == "evaluate"
    # an anomalous window resets the streak; three inside in a row recover
    out = []
    for i, (v, anom) in enumerate([(0.95, False), (0.5, True), (0.95, False), (0.96, False),
                                   (0.97, False)]):
        s, _ = eng.on_verdict(verdict(T0 + 240 + 60 * i, v, anomalous=anom), now=200.0)
        out += s
    assert [s.status for s in out] == ["recovered"]
    assert out[0].result["windows"] == 3
    assert eng.get(run.run_id).outcome == "recovered"
    assert eng.open_runs == {}
    # a window judged twice (a replayed verdict) is not counted again
    assert eng.on_verdict(verdict(T0 + 480, 0.97), now=300.0) == ([], [])


def test_approval_timeout_escalates_and_never_acts() -> None:
    eng = Engine({"pay": book(decide={"mode": "approval", "timeout": "10m"})})
    steps, calls = eng.on_alert(alert(), now=100.0)
    assert calls == [] and steps[-1].status == "awaiting_approval"
    assert eng.tick(now=100.0 + 599) == ([], [])
    steps, calls = eng.tick(now=100.0 + 600)
    assert [s.status for s in steps] == ["escalated"]
    assert [c.stage for c in calls] == ["escalate"]  # a notification, not an action
    run_id = steps[0].run_id
    with pytest.raises(ApprovalError):  # too late: the run is closed
        eng.approve(run_id, "alice", now=1000.0)
    assert eng.get(run_id).outcome == "escalated"


def test_approve_then_act_and_a_second_answer_is_refused() -> None:
    eng = Engine({"pay": book(decide={"mode": "approval"})})
    steps, _ = eng.on_alert(alert(), now=100.0)
    run_id = steps[0].run_id
    steps, calls = eng.approve(run_id, "alice", now=160.0)
    assert steps[0].status == "approved" and steps[0].who == "alice"
    assert steps[0].result["tta_s"] == 60.0
    assert [c.step for c in calls] == ["a"]
    with pytest.raises(ApprovalError):
        eng.approve(run_id, "bob", now=161.0, approve=False)


def test_reject_closes_without_acting() -> None:
    eng = Engine({"pay": book(decide={"mode": "approval"})})
    steps, _ = eng.on_alert(alert(), now=100.0)
    steps, calls = eng.approve(steps[0].run_id, "alice", now=120.0, approve=False)
    assert [s.status for s in steps] == ["rejected"] and calls == []
    assert eng.open_runs == {}


def test_new_firing_of_the_same_fingerprint_attaches_and_replays_do_nothing() -> None:
    eng = Engine({"pay": book()})
    steps, calls = eng.on_alert(alert(1), now=100.0)
    assert len({s.run_id for s in steps}) == 1 and calls
    steps2, calls2 = eng.on_alert(alert(2), now=200.0)
    assert [s.status for s in steps2] == ["attached"] and calls2 == []
    assert steps2[0].run_id == steps[0].run_id
    assert eng.get(steps[0].run_id).episodes == [1, 2]
    assert eng.on_alert(alert(2), now=300.0) == ([], [])  # the same firing replayed
    assert eng.on_alert(alert(1, state="resolved"), now=300.0) == ([], [])
    assert len(eng.runs) == 1


def test_failed_step_compensates_completed_steps_in_reverse_order() -> None:
    eng = Engine({"pay": book()})
    _, calls = eng.on_alert(alert(), now=100.0)
    records = drive(eng, calls, fail="c")
    statuses = [(r.stage, r.step, r.status) for r in records]
    assert ("act", "c", "failed") in statuses
    comp = [r.step for r in records if r.stage == "compensate"]
    assert comp == ["b", "a"]
    run = eng.get(records[0].run_id)
    assert run.outcome == "failed"
    assert ("act", "escalated") in [(r.stage, r.status) for r in records]


def test_a_late_report_of_a_step_does_not_advance_the_run_twice() -> None:
    eng = Engine({"pay": book()})
    _, calls = eng.on_alert(alert(), now=100.0)
    _steps, more = eng.finished(calls[0], 1.0, T0, ok=True)
    assert [c.step for c in more] == ["b"]
    assert eng.finished(calls[0], 2.0, T0, ok=True) == ([], [])  # the same outcome again


def test_recovery_counts_values_back_in_the_band_while_the_detector_episode_lasts() -> None:
    # the detector's alarm episode (`anomalous`) outlives the incident by its cooldown (15m):
    # a run asks whether the value is back, so windows inside the band count regardless
    eng = Engine({"pay": book(act=[], evaluate={"windows": 3, "timeout": "1h"})})
    eng.on_alert(alert(), now=100.0)
    out: list[Any] = []
    for i, v in enumerate([0.3, 0.95, 0.97, 0.96]):
        s, _c = eng.on_verdict(verdict(T0 + 180 + 60 * i, v, anomalous=True), now=1.0)
        out += s
    assert [(s.status, s.result["windows"]) for s in out] == [("recovered", 3)]
    assert out[0].result["ttr_s"] == 180 + 60 * 3 + 60 - 120


def test_evaluation_times_out_into_an_escalation() -> None:
    eng = Engine({"pay": book(act=[], evaluate={"windows": 2, "timeout": "5m"})})
    steps, calls = eng.on_alert(alert(), now=100.0)
    assert calls == [] and steps[-1].stage == "evaluate"
    out: list[Any] = []
    for i in range(6):
        s, _c = eng.on_verdict(verdict(T0 + 120 + 60 * i, 0.3, anomalous=True), now=1.0)
        out += s
    assert [s.status for s in out] == ["escalated"]


def test_match_labels_give_direction_and_the_top_contributor() -> None:
    labels = match_labels(alert(contributors=[{"labels": {"platform": "ios"}, "share": 0.8}]))
    assert labels["direction"] == "drop" and labels["top_platform"] == "ios"
    assert labels["where_platform"] == "ios" and labels["signal"].endswith(":drop")
    assert labels["alertname"] == "PaymentAnomaly"
    assert match_labels(alert(value=1.5))["direction"] == "rise"


def test_library_has_eleven_valid_playbooks_one_per_scenario() -> None:
    from shoppulse.streams.incidents import SCENARIOS

    books = load_library()
    assert len(books) == 11
    assert {b.scenario for b in books.values()} == set(SCENARIOS)
    for b in books.values():
        assert b.act and b.evaluate.windows >= 1
        for a in b.act:  # library side effects are safe to retry only when declared so
            assert a.retries == 0 or a.idempotent
            assert a.type != "shell"


def test_bad_playbook_is_a_config_error_with_file_line_and_key(tmp_path) -> None:
    from shoppulse.alerting.playbooks.spec import load_playbook
    from shoppulse.streams.config import ConfigError

    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ntitle: x\nscenario: x\nrisk: financial\ntrigger: ['metric=x']\n"
                 "act:\n  - name: hook\n    type: webhook\n    retries: 2\n")
    with pytest.raises(ConfigError) as err:
        load_playbook(p)
    text = str(err.value)
    assert "bad.yaml:5: trigger" in text and 'name="value"' in text
    assert "bad.yaml:7: act[0]" in text and "needs 'url'" in text


def _firing(fp: str, rule: str, labels: dict[str, str], *, top: dict[str, str] | None = None,
            episode: int = 1, value: float = 0.8) -> Alert:
    return Alert(fingerprint=fp, episode=episode, state="firing", rule=rule,
                 severity="warning", labels=labels, starts_at=T0, at=T0 + 300, value=value,
                 expected=0.4, lower=0.3, upper=0.5,
                 contributors=[{"labels": top, "share": 0.9}] if top else [])


def test_an_open_run_that_explains_an_alert_inhibits_a_second_playbook() -> None:
    bots = book(name="bots", decide={"mode": "auto"}, trigger=['alertname="CtrHigh"'])
    bounce = book(name="bounce", trigger=['metric=~"bounce.*"', 'direction="rise"'],
                  inhibited_by=["bots"])
    eng = Engine({"bots": bots, "bounce": bounce})
    steps, _ = eng.on_alert(_firing("ctr-ads", "CtrHigh", {"metric": "ctr", "channel": "ads"}),
                            now=100.0)
    bots_run = steps[0].run_id
    # the site-wide bounce, whose top contributor is the bots' channel: recorded on their run
    site = _firing("bounce", "BounceHigh", {"metric": "bounce_overall"}, top={"channel": "ads"})
    steps, calls = eng.on_alert(site, now=110.0)
    assert [(s.run_id, s.status) for s in steps] == [(bots_run, "inhibited")] and calls == []
    assert steps[0].inputs["playbook"] == "bounce" and steps[0].inputs["fingerprint"] == "bounce"
    assert eng.on_alert(site, now=120.0) == ([], [])  # a replay records nothing more
    assert {r["playbook"] for r in eng.runs.values()} == {"bots"}
    # search's bounce is not the bots' doing, nor a site-wide bounce naming no channel
    search = _firing("bounce-search", "BounceHigh", {"metric": "bounce", "channel": "search"})
    steps, _ = eng.on_alert(search, now=130.0)
    assert steps[0].playbook == "bounce" and steps[0].status == "started"
    steps, _ = eng.on_alert(_firing("b2", "BounceHigh", {"metric": "bounce_overall"}),
                            now=140.0)
    assert steps[0].playbook == "bounce" and steps[0].status == "started"
    site_run = steps[0].run_id
    # once the bots' alert resolved (their run still evaluating), it explains nothing more
    ctr = _firing("ctr-ads", "CtrHigh", {"metric": "ctr", "channel": "ads"})
    eng.on_alert(replace(ctr, state="resolved", at=T0 + 600, ends_at=T0 + 600), now=800.0)
    assert eng.get(bots_run).open
    steps, _ = eng.on_alert(_firing("bounce", "BounceHigh", {"metric": "bounce_overall"},
                                    top={"channel": "ads"}, episode=2), now=900.0)
    # not inhibited: taken in by the open site-wide bounce run, whose alert names no channel
    assert [(s.run_id, s.status) for s in steps] == [(site_run, "attached")]


def test_inhibited_by_must_name_another_playbook_of_the_library(tmp_path) -> None:
    from shoppulse.streams.config import ConfigError

    head = "title: x\nscenario: x\nrisk: financial\ntrigger: ['metric=\"x\"']\n"
    (tmp_path / "a.yaml").write_text(f"name: a\n{head}inhibited_by: [nope]\n")
    (tmp_path / "b.yaml").write_text(f"name: b\n{head}inhibited_by: [b]\n")
    with pytest.raises(ConfigError) as err:
        load_library(tmp_path)
    text = str(err.value)
    assert "a.yaml:1: inhibited_by: unknown playbook(s) nope" in text
    assert "b.yaml" in text and "cannot inhibit itself" in text
    # the shipped library's inhibitions name shipped playbooks
    books = load_library()
    assert books["landing_bounce_spike"].inhibited_by == ["bot_traffic"]


def _judged(metric: str, labels: dict[str, str], start: float, value: float) -> Verdict:
    return Verdict(score=0.1, expected=0.4, lower=0.3, upper=0.5, anomalous=value > 0.5,
                   warming_up=False, metric=metric, labels=labels, window_start=start,
                   window_end=start + 60, value=value)


def test_one_incident_one_run_recovered_when_every_alert_of_it_is_back() -> None:
    """Bots on ads raise sessions, CTR and impressions alerts on ads: one run, one approval,
    and it recovers only when each of the three series is back inside its band."""
    bots = book(name="bots", trigger=['alertname=~"SessionsHigh|CtrHigh|ImprHigh"'],
                decide={"mode": "approval"})
    eng = Engine({"bots": bots})
    ads = {"channel": "ads"}
    steps, _ = eng.on_alert(_firing("s-ads", "SessionsHigh", {"metric": "sessions", **ads}),
                            now=100.0)
    run_id = steps[0].run_id
    ctr = _firing("ctr-ads", "CtrHigh", {"metric": "ctr", **ads})
    steps, calls = eng.on_alert(ctr, now=110.0)
    assert [(s.run_id, s.status) for s in steps] == [(run_id, "attached")] and calls == []
    assert steps[0].inputs["rule"] == "CtrHigh" and steps[0].inputs["series"] == "ctr{channel=ads}"
    impr = _firing("impr", "ImprHigh", {"metric": "impressions", "channel": "ads",
                                        "platform": "web"})
    assert eng.on_alert(impr, now=115.0)[0][0].status == "attached"
    # search's CTR is another incident; a replay of a member changes nothing
    search = _firing("ctr-search", "CtrHigh", {"metric": "ctr", "channel": "search"})
    other = eng.on_alert(search, now=120.0)[0][0]
    assert other.status == "started" and other.run_id != run_id
    assert eng.on_alert(ctr, now=130.0) == ([], [])
    run = eng.get(run_id)
    assert run.watched == {"sessions{channel=ads}", "ctr{channel=ads}",
                           "impressions{channel=ads,platform=web}"}
    assert len(eng.active()) == 2  # the run is under three keys, counted once
    # one approval for the incident
    steps, calls = eng.approve(run_id, "alice", now=140.0)
    drive(eng, calls)
    assert eng.get(run_id).stage == "evaluate"
    out: list[Any] = []
    for i in range(4):  # sessions and impressions back, CTR still high
        t = T0 + 240 + 60 * i
        out += eng.on_verdict(_judged("sessions", ads, t, 0.4), now=200.0)[0]
        out += eng.on_verdict(_judged("impressions", {**ads, "platform": "web"}, t, 0.4),
                              now=200.0)[0]
        out += eng.on_verdict(_judged("ctr", ads, t, 0.8), now=200.0)[0]
    assert out == [] and eng.get(run_id).open
    for i in range(4, 7):  # CTR back for three windows: now the incident is over
        t = T0 + 240 + 60 * i
        out += eng.on_verdict(_judged("ctr", ads, t, 0.4), now=300.0)[0]
    assert [(s.run_id, s.status) for s in out] == [(run_id, "recovered")]
    assert out[0].result["series"] == "ctr{channel=ads}" and out[0].result["members"] == 2
    assert all(not k.endswith(("s-ads", "ctr-ads", "impr")) for k in eng.open_runs)
    # the member's alert fires again after the run closed: replayed, it starts nothing
    assert eng.on_alert(ctr, now=400.0) == ([], [])


def test_one_run_whichever_alert_of_the_incident_comes_first() -> None:
    """The more specific alert first (impressions on ads and web), then sessions on ads:
    it names fewer dimensions, each with the run's value, and joins. Sessions on search, or
    a site-wide alert naming no dimension, are other incidents."""
    bots = book(name="bots", trigger=['alertname=~"SessionsHigh|ImprHigh"'])
    eng = Engine({"bots": bots})
    steps, _ = eng.on_alert(_firing("impr", "ImprHigh", {"metric": "impressions",
                                                         "channel": "ads", "platform": "web"}),
                            now=100.0)
    run_id = steps[0].run_id
    s_ads = _firing("s-ads", "SessionsHigh", {"metric": "sessions", "channel": "ads"})
    assert [(s.run_id, s.status) for s in eng.on_alert(s_ads, now=110.0)[0]] == [
        (run_id, "attached")]
    s_search = _firing("s-search", "SessionsHigh", {"metric": "sessions", "channel": "search"})
    assert eng.on_alert(s_search, now=120.0)[0][0].status == "started"
    site = _firing("s-all", "SessionsHigh", {"metric": "sessions_overall"})
    assert eng.on_alert(site, now=130.0)[0][0].status == "started"
    assert len(eng.active()) == 3
