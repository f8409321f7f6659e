"""Which notifications a run of transitions yields, on event time (``rules test``).

The receivers' grouping (:class:`~.grouping.Grouper`, Alertmanager's ``group_wait``,
``group_interval``, ``repeat_interval``) replayed with the transitions' own event times as
the clock and every notification delivered at once: what a receiver would get if the
pipeline and the target took no time. Plain code, no I/O; the worker runs the same
grouper on the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoppulse.alerting.notifiers.dispatcher import routes
from shoppulse.alerting.notifiers.grouping import Grouper
from shoppulse.streams.notifiers_config import ReceiverSpec
from shoppulse.streams.records import Alert


@dataclass
class Sent:
    """One notification as a receiver would see it."""

    receiver: str
    group: dict[str, str]
    at: float
    firing: int
    resolved: int
    repeat: bool


def notifications(receivers: dict[str, ReceiverSpec], transitions: Iterable[Alert],
                  until: float) -> list[Sent]:
    """Notifications of ``transitions`` (in event-time order) per receiver, by time.

    Due notifications go out at their due time; repeats only up to ``until`` (the end of
    the input), pending transitions are flushed whenever they fall due."""
    groupers = {name: Grouper(name, group_by=spec.group_by, group_wait=spec.group_wait,
                              group_interval=spec.group_interval,
                              repeat_interval=spec.repeat, queue_size=spec.queue_size)
                for name, spec in receivers.items()}
    out: list[Sent] = []

    def flush(upto: float, *, repeats: bool) -> None:
        for name, g in groupers.items():
            while (nxt := g.next_due()) is not None and nxt <= upto:
                sent_any = False
                for n in g.due(nxt):
                    g.delivered(n, nxt)
                    if n.repeat and not repeats:
                        continue
                    sent_any = True
                    states = [a.state for a in n.alerts]
                    out.append(Sent(name, dict(n.group_labels), nxt, states.count("firing"),
                                    states.count("resolved"), n.repeat))
                if not sent_any and not g.size:
                    break  # only repeats are left and they are not wanted
        out.sort(key=lambda s: (s.at, s.receiver))

    for a in transitions:
        if a.state not in ("firing", "resolved"):
            continue
        flush(a.at, repeats=True)
        for name, spec in receivers.items():
            if not routes(name, spec, a):
                continue
            if a.state == "resolved" and not spec.send_resolved:
                groupers[name].settle(a)
                continue
            groupers[name].add(a, a.at, must=a.state == "resolved")
    flush(until, repeats=True)
    flush(float("inf"), repeats=False)
    return out
