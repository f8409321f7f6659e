"""Storm control: 1 000 series turning anomalous at once (a site-wide outage) give one
notification per group and receiver with exact firing/resolved counts, not 1 000 messages,
and the stream that feeds the notifiers keeps its pace meanwhile."""

from __future__ import annotations

import asyncio
import random
import time

from prometheus_client import CollectorRegistry

from shoppulse.alerting.notifiers.dispatcher import Dispatcher, MemoryRows
from shoppulse.alerting.notifiers.grouping import Grouper
from tests.hooks import HookServer
from tests.notify_helpers import alert, spec, until

CHANNELS = ("search", "ads", "social", "direct")
N = 1000
# the groups' timers: a storm handed over within one group_wait is one notification per group
# (a loaded machine took over 1 s for the 1 000 hand-overs, and a 1.5 s wait split a group)
WAIT = 4.0


def outage(state: str) -> list:
    return [alert(i, state, labels={"metric": "payment_success", "series": f"s{i}",
                                    "channel": CHANNELS[i % len(CHANNELS)]}) for i in range(N)]


def test_a_storm_within_group_wait_is_one_notification_per_group():
    """Alertmanager's default timers, explicit times: the series turn anomalous over 29 s."""
    g = Grouper("r", group_by=["alertname"], group_wait=30, group_interval=300,
                repeat_interval=4 * 3600, queue_size=10_000)
    rng = random.Random(5)
    times = sorted([0.0] + [rng.uniform(0, 29) for _ in range(N - 1)])
    for a, t in zip(outage("firing"), times, strict=True):
        g.add(a, t)
    assert g.due(29.5) == []
    (n,) = g.due(30.0)
    assert n.counts == {"firing": N, "resolved": 0}
    g.delivered(n, 30.0)
    for a, t in zip(outage("resolved"), times, strict=True):
        g.add(a, 600 + t)
    assert g.due(600 + 29) == []  # 630 is the group's next tick after they arrived
    (n,) = g.due(630.0)
    assert n.counts == {"firing": 0, "resolved": N} and g.due(10_000.0) == []


def test_storm_end_to_end_one_message_per_group_and_receiver_exact_counts():
    async def main():
        with HookServer(["k"]) as a, HookServer(["k"]) as b:
            # a slow receiver, well under its timeout: one that timed out would be sent the
            # notification again (at least once), and the counts below would double
            b.mode, b.hang_for = "hang", 0.3
            reg = CollectorRegistry()
            receivers = {name: spec(url=h.url, secrets=["k"], group_by=["alertname", "channel"],
                                    group_wait=WAIT, group_interval=WAIT, timeout=10.0)
                         for name, h in (("oncall", a), ("chat", b))}
            d = Dispatcher.from_config(receivers, MemoryRows(), reg)
            d.start()
            t0 = time.perf_counter()
            for x in outage("firing"):
                d.handle(x)
                await asyncio.sleep(0)  # the stream yields between records, like the agent
            handled = time.perf_counter() - t0
            await until(lambda: len(a.received) >= 4 and len(b.received) >= 4, what="4 + 4")
            b.hang_for = 0.0
            for x in outage("resolved"):
                d.handle(x)
            await until(lambda: len(a.received) >= 8 and len(b.received) >= 8, what="8 + 8")
            await asyncio.sleep(2.0)  # anything extra would come by now
            await d.stop()
            return handled, a.bodies(), b.bodies(), reg
    handled, got_a, got_b, reg = asyncio.run(main())
    assert handled < WAIT, f"1 000 transitions took {handled:.2f}s to hand over"
    for bodies in (got_a, got_b):
        assert len(bodies) == 8  # 4 channel groups, firing then resolved
        firing = {b["groupLabels"]["channel"]: b["counts"] for b in bodies[:4]}
        resolved = {b["groupLabels"]["channel"]: b["counts"] for b in bodies[4:]}
        assert firing == {c: {"firing": N // 4, "resolved": 0} for c in CHANNELS}
        assert resolved == {c: {"firing": 0, "resolved": N // 4} for c in CHANNELS}
        assert all(len(b["alerts"]) == N // 4 for b in bodies)
        series = {x["labels"]["series"] for b in bodies[:4] for x in b["alerts"]}
        assert len(series) == N
    for r in ("oncall", "chat"):
        assert reg.get_sample_value("shoppulse_notifications_total",
                                    {"receiver": r, "result": "sent"}) == 8
