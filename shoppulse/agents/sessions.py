"""Sessions and bounce, decided in event time within one click partition.

Producers key clicks by ``session_id``, so one partition owns a session and its
state never leaves the local stage. The rules, applied in offset order to the
events that are neither late nor duplicates:

* an event matching ``sessions.start`` (a landing view) **starts** a session
  unless that session is already active;
* any further event of an active session whose event time is before
  ``start + bounce_timeout`` makes it **engaged**;
* once the partition's watermark reaches ``start + bounce_timeout`` the session
  is resolved: **engaged**, or **bounced** if nothing engaged it. It is then
  forgotten, so state lives at most ``bounce_timeout`` of event time.

Started, bounced and engaged all count in the window of the session's start
event, with the dimensions of that event. State changes only on these
transitions; page views of a resolved session cost one dict lookup.
"""

from __future__ import annotations

import heapq
import operator
from typing import Any

from shoppulse.agents.cardinality import label
from shoppulse.agents.plan import Plan, acc_for, compile_filter
from shoppulse.streams.config import Config


class SessionTracker:
    def __init__(self, config: Config, plan: Plan) -> None:
        self.ops = plan.ops
        self.key_of = operator.attrgetter(config.sessions.key)
        self.is_start = compile_filter(config.sessions.start)
        self.timeout = config.sessions.bounce_timeout
        self.window = config.session_window
        self.feeds = {
            state: tuple(f for f in plan.session_feeds if f.session == state)
            for state in ("started", "bounced", "engaged")
        }
        self.active: dict[str, list[Any]] = {}  # sid -> [start_ts, start_event, engaged, seq]
        self.deadlines: list[tuple[float, int, str]] = []
        self.seq = 0

    def observe(self, ev: Any, ts: float, wm_before: float, parts: dict) -> None:
        if self.deadlines and self.deadlines[0][0] <= wm_before:
            self.resolve(wm_before, parts)
        sid = self.key_of(ev)
        state = self.active.get(sid)
        if state is not None:
            if not state[2] and ts < state[0] + self.timeout:
                state[2] = True
            return
        if self.is_start(ev):
            self.seq += 1
            self.active[sid] = [ts, ev, False, self.seq]
            heapq.heappush(self.deadlines, (ts + self.timeout, self.seq, sid))
            self._emit("started", ev, ts, parts)

    def resolve(self, wm: float, parts: dict) -> None:
        """Resolve every session whose bounce deadline the watermark has reached."""
        heap = self.deadlines
        while heap and heap[0][0] <= wm:
            _, seq, sid = heapq.heappop(heap)
            state = self.active.get(sid)
            if state is None or state[3] != seq:
                continue
            del self.active[sid]
            self._emit("engaged" if state[2] else "bounced", state[1], state[0], parts)

    def _emit(self, transition: str, ev: Any, ts: float, parts: dict) -> None:
        wstart = ts // self.window * self.window
        for f in self.feeds[transition]:
            labels = tuple([label(getattr(ev, d)) for d in f.dims])
            acc = acc_for(parts, (f.metric, labels, wstart), self.ops[f.metric])
            acc[f.comp] += 1
            acc[-1] += 1
