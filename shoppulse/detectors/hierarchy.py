"""Hierarchy: a parent series' verdict names the children that drive it, and one incident
raises one alarm, at the most specific level that carries it.

Why: a conversion drop confined to one channel shows in ``conversion{channel=email}`` and
in ``conversion_overall``. A thin child cannot carry an alarm alone (a handful of events a
window); its parent pools the evidence of all children — the parent's numerator and
denominator are the sums of the children's, so its detector judges every child's events
at once, with the parent's volume. Either way an operator wants one alarm that says
where: on the child when the child carries it, else on the parent, naming the child.

How (:class:`Pool`, one per parent series, plain state, picklable): for each window the
children's verdicts are added (:meth:`Pool.child`) before the parent's
(:meth:`Pool.parent`). Each child's deviation is measured in events: ``actual - expected``
of its numerator (``expected rate * denominator`` for ratios; the value for counts and
sums), summed over the recent windows with a decay of 0.9 a window, so a thin child's
steady deficit adds up while noise cancels. The
parent's verdict gets ``contributors``: the children — or one dimension's value across
them (``{"channel": "email"}`` over every platform), when the deviation concentrates
there — whose deviation points the same way as the run's total, each with its share of
that direction's deviation (largest first, top three; ``expected``/``actual`` of the last
window in the child's units, ``None`` for a group of several children). If a child is
alarming in this window and its run of deviations points the same way, the parent's
``anomalous`` is cleared: the child carries the incident and the parent only names it.

Where it runs: the detect stage is keyed by series, so a parent and its children may be
judged on different partitions. The pooling therefore runs where all children of a
window are known — the window's points are emitted together by the global stage, so the
detector stage scores a closed window's points as one batch
(:meth:`~shoppulse.agents.detection.DetectorStage.score_window`) and keeps the pool
state next to the models under ``pool|<parent series>``.

>>> from shoppulse.streams.records import Verdict
>>> p = Pool()
>>> def v(exp, val, anomalous=False, score=0.5):
...     return Verdict(score, exp, None, None, anomalous, False, value=val)
>>> p.child({"channel": "email"}, v(0.03, 0.0), numerator=0, denominator=100)
>>> p.child({"channel": "ads"}, v(0.03, 0.031), numerator=31, denominator=1000)
>>> out = p.parent(v(0.03, 31 / 1100, anomalous=True))
>>> out.anomalous, out.contributors[0]["labels"], round(out.contributors[0]["share"], 2)
(True, {'channel': 'email'}, 1.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shoppulse.streams.records import Verdict, series_key

TOP = 3
RUN_DECAY = 0.9
"""Per-window decay of the children's summed deviations (about 7 windows' half-life)."""


def roots(hierarchy: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """Every metric of ``hierarchy`` (child -> parent) -> (its top ancestor, its depth).

    Why: the points of one hierarchy must be judged in one place and children first, so
    the pipeline routes every metric of a hierarchy by its top ancestor's name and sorts a
    window's points deepest first. A cycle is a config error caught before this.

    >>> roots({"conversion": "conversion_overall", "conv_city": "conversion"})["conv_city"]
    ('conversion_overall', 2)
    """
    out: dict[str, tuple[str, int]] = {}
    for name in {*hierarchy, *hierarchy.values()}:
        top, depth = name, 0
        while top in hierarchy and depth <= len(hierarchy):
            top, depth = hierarchy[top], depth + 1
        out[name] = (top, depth)
    return out


class Pool:
    """Contributors and one-alarm arbitration for one parent series."""

    def __init__(self) -> None:
        self.run: dict[str, list[Any]] = {}  # key -> [labels, deviation, expected, actual]
        self.carried: set[int] = set()  # directions a child alarms in, this window

    def child(
        self,
        labels: dict[str, str],
        verdict: Verdict,
        *,
        numerator: float | None = None,
        denominator: float | None = None,
    ) -> None:
        """Add one child's verdict of the current window."""
        if verdict.expected is None or verdict.value is None or verdict.warming_up:
            return
        if numerator is not None and denominator is not None:
            dev = numerator - verdict.expected * denominator
        else:
            dev = verdict.value - verdict.expected
        key = series_key("", labels)
        row = self.run.setdefault(key, [dict(labels), 0.0, None, None])
        row[1] = RUN_DECAY * row[1] + dev
        row[2], row[3] = verdict.expected, verdict.value
        if verdict.anomalous and row[1] != 0.0:
            # the direction of its run, as the parent's is judged: one window of a child
            # back below expected (its alarm's cooldown, after the incident) does not hand
            # the incident's fading evidence back to the parent as a new alarm
            self.carried.add(1 if row[1] > 0 else -1)

    def contributors(self) -> list[dict[str, Any]]:
        """Children (or one dimension's value across them) driving the run's deviation,
        largest share first (top three)."""
        total = sum(r[1] for r in self.run.values())
        if total == 0.0:
            return []
        sign = 1.0 if total > 0 else -1.0
        mass = sum(r[1] * sign for r in self.run.values() if r[1] * sign > 0.0)
        groups: dict[str, list[Any]] = {}  # key -> [labels, deviation, expected, actual, n]
        for labels, dev, exp, act in self.run.values():
            keys = [dict(labels)]
            if len(labels) > 1:  # one dimension's value across the others: channel=email
                keys += [{k: v} for k, v in labels.items()]
            for g in keys:
                row = groups.setdefault(series_key("", g), [g, 0.0, 0.0, 0.0, 0])
                row[1] += dev
                row[2] = exp if row[4] == 0 else None  # a group's units are not one child's
                row[3] = act if row[4] == 0 else None
                row[4] += 1
        ranked = sorted(
            (g for g in groups.values() if g[1] * sign > 0.0),
            key=lambda g: (-g[1] * sign, -len(g[0])),  # ties: the more specific labels
        )
        out: list[dict[str, Any]] = []
        for g in ranked:
            if any(o["share"] == g[1] * sign / mass and set(g[0].items()) <= set(
                    o["labels"].items()) for o in out):
                continue  # the same deviation as a more specific group already listed
            out.append({"labels": g[0], "expected": g[2], "actual": g[3],
                        "share": g[1] * sign / mass})
            if len(out) == TOP:
                break
        return out

    def parent(self, verdict: Verdict) -> Verdict:
        """The parent's verdict with ``contributors``; not anomalous if a child carries it."""
        contributors = self.contributors()
        total = sum(r[1] for r in self.run.values())
        direction = 1 if total > 0 else -1
        anomalous = verdict.anomalous and direction not in self.carried
        self.carried = set()
        return dataclasses.replace(verdict, anomalous=anomalous, contributors=contributors,
                                   alarming=anomalous and verdict.alarm_now)
