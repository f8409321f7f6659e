"""The alert lifecycle: inactive -> pending -> firing -> resolved, on event time.

One :class:`AlertState` per fingerprint, advanced by :func:`advance` with one
:class:`~shoppulse.alerting.rules.Sample` at a time. Rules of the state machine:

* ``for``: the condition must hold from the start of the first bad window until the
  end of the current one for at least ``for`` before the alert fires (``pending`` until
  then; a pending that clears just goes back to inactive, with no record).
* ``keep_firing_for``: a firing alert resolves once the condition has been false
  for that long (0: at the first good window).
* flap damping: for ``flap_window`` after a resolve, a new episode needs the
  condition to hold for ``flap_for`` (>= ``for``) before it fires; trouble that comes
  and goes in that time restarts the window. A metric that flaps for an hour therefore
  gives one FIRING and one RESOLVED, while a genuine second incident still fires,
  ``flap_for`` later.
* samples whose end is not after the last judged one are ignored: a replay of
  points or verdicts after a crash changes nothing.
* a sample may judge an active (pending or firing) alert differently from an inactive
  one (:attr:`~shoppulse.alerting.rules.Sample.holds`): an anomaly alert starts on the
  detector's evidence and lasts while that evidence is there or the value is outside its
  band, so it never resolves with the value still far off.

Transitions are named, not built into records here; :mod:`shoppulse.alerting.engine`
turns them into :class:`~shoppulse.streams.records.Alert` records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from shoppulse.alerting.rules import Sample


@dataclass
class Timing:
    for_: float = 0.0
    keep_firing_for: float = 0.0
    flap_window: float = 3600.0
    flap_for: float = 900.0


@dataclass
class AlertState:
    state: str = "inactive"  # inactive | pending | firing; first, so the bytes start with it
    rule: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    partition: int = 0
    episode: int = 0  # episodes that fired so far; the current one when firing
    announced: int = 0  # last episode number a pending record went out for
    since: float | None = None  # start of the trouble (first bad window)
    need: float = 0.0  # how long the trouble must last before firing (for / flap_for)
    clear: float | None = None  # firing, but the condition false since
    last: float = -math.inf  # end of the last judged sample
    resolved_at: float | None = None  # last resolve, or last damped trouble since then
    peak: float | None = None
    peak_distance: float = -1.0
    sample: dict[str, Any] = field(default_factory=dict)  # the last sample's numbers

    def dumps(self) -> bytes:
        return orjson.dumps(self)  # orjson writes dataclasses natively; -inf as null

    @classmethod
    def loads(cls, raw: bytes) -> AlertState:
        d = orjson.loads(raw)
        if d.get("last") is None:
            d["last"] = -math.inf
        return cls(**d)

    @property
    def active(self) -> bool:
        return self.state != "inactive"


def advance(st: AlertState, s: Sample, t: Timing) -> list[str]:
    """Apply one sample; return the transitions it caused (``pending``/``firing``/
    ``resolved``). Mutates ``st``."""
    cond = s.cond if s.holds is None or st.state == "inactive" else s.holds
    if s.end <= st.last or cond is None:
        return []
    st.last = s.end
    out: list[str] = []
    if cond:
        if st.state == "inactive":
            damped = st.resolved_at is not None and s.end - st.resolved_at < t.flap_window
            st.state, st.since, st.clear = "pending", s.start, None
            st.need = max(t.for_, t.flap_for) if damped else t.for_
            st.peak, st.peak_distance = None, -1.0
            if st.need > 0 and st.announced <= st.episode:
                st.announced = st.episode + 1
                out.append("pending")
        _track_peak(st, s)
        if st.state == "pending" and s.end - st.since >= st.need:  # type: ignore[operator]
            st.state = "firing"
            st.episode += 1
            st.announced = max(st.announced, st.episode)
            out.append("firing")
        st.clear = None
    elif st.state == "pending":
        if st.need > t.for_:  # a damped episode that did not last: still flapping
            st.resolved_at = s.end
        st.state, st.since = "inactive", None
    elif st.state == "firing":
        if st.clear is None:
            st.clear = s.start
        if s.end - st.clear >= t.keep_firing_for:
            st.state = "inactive"
            st.resolved_at = s.end
            out.append("resolved")
    st.sample = _numbers(s)
    return out


def _track_peak(st: AlertState, s: Sample) -> None:
    if s.value is not None and s.distance > st.peak_distance:
        st.peak, st.peak_distance = s.value, s.distance


def _numbers(s: Sample) -> dict[str, Any]:
    return {"value": s.value, "expected": s.expected, "lower": s.lower, "upper": s.upper,
            "score": s.score, "numerator": s.numerator, "denominator": s.denominator,
            "contributors": s.contributors, "start": s.start, "end": s.end}
