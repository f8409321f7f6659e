"""One simulator producing a stream segment by segment, in a thread of the caller.

Why one simulator across segments: it continues its sessions from one segment into the
next. Two simulators, one for a warm-up history and one for live traffic, cut every session
in progress at the seam: a landing whose next click falls past the history reads as a
bounce, and the demo's bounce alert fired on normal traffic 60 s before its incident.

Why segments: a drill holds event time at the end of each wave (``ends``) and lets it go on
(:meth:`Feed.release`) once the wave's runs are evaluating, as an exercise clock stops while
the responders act; the demo produces its history at full speed, starts the worker, then
goes on live at its speed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator, Sequence

from shoppulse.streams.config import Config
from shoppulse.streams.simulator import SimEvent, Simulator


class Feed(threading.Thread):
    """Produces ``sim``'s events up to each of ``ends`` (event times) in turn: segment ``i``
    once it is released (:meth:`release`; the first at once), paced at ``speeds[i]`` x the
    wall clock (0: as fast as the broker takes them). ``error`` holds what stopped it."""

    def __init__(self, config: Config, bootstrap: str, sim: Simulator, ends: Sequence[float],
                 speeds: Sequence[float] | None = None) -> None:
        super().__init__(name="shoppulse-feed", daemon=True)
        self.config, self.bootstrap, self.sim, self.ends = config, bootstrap, sim, list(ends)
        self.speeds = list(speeds) if speeds is not None else [0.0] * len(self.ends)
        if len(self.speeds) != len(self.ends):
            raise ValueError("one speed per segment")
        self.gates = [threading.Event() for _ in self.ends]
        self.gates[0].set()
        self.produced = sim.start  # event time produced so far
        self.segment = 0  # segments fully produced
        self.error: BaseException | None = None
        self.stopping = False

    def release(self, segment: int) -> None:
        if segment < len(self.gates):
            self.gates[segment].set()

    def stop(self) -> None:
        """Stop at the next event; what was produced is flushed."""
        self.stopping = True
        for g in self.gates:
            g.set()

    def _until_stopped(self, events: Iterable[SimEvent]) -> Iterator[SimEvent]:
        for ev in events:
            if self.stopping:
                return
            yield ev

    def run(self) -> None:
        from shoppulse.streams.producer import produce_async

        partitions = {t: spec.partitions for t, spec in self.config.topics.items()}
        try:
            for i, (end, speed) in enumerate(zip(self.ends, self.speeds, strict=True)):
                self.gates[i].wait()
                if self.stopping:
                    return
                asyncio.run(produce_async(
                    self.bootstrap, self._until_stopped(self.sim.events(end - self.produced)),
                    partitions, speed=speed, client_options=self.config.kafka.client_options()))
                self.produced, self.segment = end, i + 1
        except BaseException as exc:  # reported by the caller's loop, not lost in a thread
            self.error = exc
