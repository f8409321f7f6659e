"""Grouping replayed on event time (what ``rules test`` compares): Alertmanager's timers."""

from __future__ import annotations

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.notifiers.timeline import notifications
from shoppulse.streams.notifiers_config import ReceiverSpec
from shoppulse.streams.records import Alert

T0 = 1_767_254_400.0


def alert(series: str, state: str, at: float, episode: int = 1) -> Alert:
    labels = {"metric": "orders", "channel": series}
    return Alert(fingerprint=fingerprint("R", labels), episode=episode, state=state, rule="R",
                 severity="warning", labels=labels, starts_at=T0, at=T0 + at)


def spec(**kw) -> dict[str, ReceiverSpec]:
    return {"r": ReceiverSpec(type="stdout", **kw)}


def test_a_storm_within_group_wait_is_one_notification_with_exact_counts():
    storm = [alert(f"c{i}", "firing", 60 + i * 0.01) for i in range(1000)]
    got = notifications(spec(group_by=["alertname"], group_wait=30, group_interval=300),
                        storm, T0 + 600)
    assert [(n.at - T0, n.firing, n.resolved) for n in got] == [(90.0, 1000, 0)]


def test_resolves_go_out_at_the_groups_next_tick_and_repeats_stop_at_the_end():
    seq = [alert("a", "firing", 0), alert("b", "firing", 10), alert("a", "resolved", 400)]
    got = notifications(spec(group_by=["alertname"], group_wait=30, group_interval=300,
                             repeat_interval=600), seq, T0 + 1000)
    # first flush at 30 s (both firing), a's resolve at the tick 630 s; b still firing
    # is repeated 600 s after the last notification, at 1230 s: past the end, not sent
    assert [(n.at - T0, n.firing, n.resolved, n.repeat) for n in got] == [
        (30.0, 2, 0, False), (630.0, 0, 1, False)]


def test_match_and_send_resolved_per_receiver():
    receivers = {
        "crit": ReceiverSpec(type="stdout", match={"severity": "critical"}, group_wait=0),
        "all": ReceiverSpec(type="stdout", group_by=["..."], group_wait=0,
                            group_interval=60, send_resolved=False),
    }
    seq = [alert("a", "firing", 0), alert("a", "resolved", 120)]
    got = notifications(receivers, seq, T0 + 300)
    assert [(n.receiver, n.at - T0, n.firing, n.resolved) for n in got] == [("all", 0.0, 1, 0)]
