"""The drill's watcher as plain code: which alert and run a scenario is credited with."""

from __future__ import annotations

from shoppulse.commands.drill import DRILL_START, Watcher, schedule
from shoppulse.streams.records import Alert, PlaybookStep


def _alert(episode: int, at: float, channel: str = "search") -> Alert:
    return Alert(fingerprint="fp-sessions", episode=episode, state="firing",
                 rule="SessionsAnomaly", severity="warning",
                 labels={"metric": "sessions_started", "channel": channel, "drill": "true"},
                 starts_at=at - 60, at=at, value=10.0, expected=100.0)


def _step(run_id: str, playbook: str, status: str, event_at: float, *, stage: str = "identify",
          at: float = 0.0, inputs: dict[str, str] | None = None) -> PlaybookStep:
    return PlaybookStep(run_id=run_id, playbook=playbook, fingerprint="fp-sessions",
                        stage=stage, step="", status=status, who="shoppulse", at=at,
                        event_at=event_at, inputs=inputs or {})


def test_a_run_is_timed_from_the_firing_that_started_it_not_an_earlier_wave():
    drills = schedule(["platform_policy_change", "channel_traffic_drop"], warm=2100.0)
    drill = next(d for d in drills if d.scenario == "channel_traffic_drop")
    w = Watcher(drills, "app", "", "http://127.0.0.1:9", "token")
    early = DRILL_START + 2400.0  # wave 0: the iOS drop lowered search's sessions too
    w.on_alert(_alert(1, early), wall=100.0)
    w.on_alert(_alert(2, drill.start + 60.0), wall=500.0)
    w.on_alert(_alert(2, drill.start + 60.0), wall=501.0)  # a replayed record
    w.on_step(_step("ctd-1", "channel_traffic_drop", "started", early))  # not this drill's
    assert drill.run_id is None
    w.on_step(_step("ctd-2", "channel_traffic_drop", "started", drill.start + 60.0, at=502.0))
    w.on_step(_step("ctd-2", "channel_traffic_drop", "dry_run", 0.0, stage="act", at=503.0))
    r = drill.report()
    assert r["run_id"] == "ctd-2" and r["ttd_s"] == 60.0
    assert r["first_action_s"] == 3.0  # from the second firing's record, not the first's
    # every run started and every alert an open run took instead is counted
    w.on_step(_step("bots-1", "bot_traffic", "inhibited", 0.0, stage="evaluate",
                    inputs={"playbook": "landing_bounce_spike"}))
    assert w.started == {"channel_traffic_drop": 2}
    assert w.inhibited == {"landing_bounce_spike": 1}
