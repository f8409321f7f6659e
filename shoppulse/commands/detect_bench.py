"""Evaluation harness for detectors: recall, time-to-detect, false alarms, cost.

Why a separate, generic harness: the same numbers must come out whether the points come
from the simulator (``shoppulse bench detect``) or from synthetic series in a test, so it
takes plain points and a list of incidents and knows nothing about where they came from.

Input
    ``series``: series key -> points ``(window_start, window_end, value, numerator,
    denominator)`` (tuples, or objects with those attributes such as ``MetricPoint``),
    fed to one fresh detector per series in ``window_start`` order.
    ``truth``: incidents ``{"start", "end", "scenario", "series": [keys]}`` in event-time
    seconds; an optional ``"magnitude"`` lets :func:`evaluate` set aside incidents below
    ``min_magnitude`` (one number, or one per scenario such as
    ``shoppulse.streams.incidents.MIN_MAGNITUDE``): they are reported under
    ``below_min_magnitude`` and not counted in recall.

Definitions (all in event time)
    *Detected*: some series of the incident has an anomalous verdict for a window that
    overlaps ``[start, end + 2 windows)`` (``window_end > start`` and
    ``window_start < end + 2 * window``) — a window that merely contains the start counts.
    *Time-to-detect*: from the incident start to the **end** of the first such window,
    i.e. the earliest moment the verdict can exist. ``ttd_seconds = first_window_end -
    start``, ``ttd_windows = ttd_seconds / window``: an incident that starts on a window
    boundary and alarms in its first window has TTD = 1 window. (Counting to the window's
    start instead would read one window lower.)
    *Alarm episode*: a run of anomalous verdicts of one series whose successive windows are
    at most one window apart (``next start - previous end <= window``), spanning
    ``[first window_start, last window_end)``.
    *False alarm*: an episode that overlaps no ``[start, end + 5 windows)`` of an incident
    listing that series. An alarm on a series the incident does not list counts as false,
    so truth must list every series an incident is expected to move.
    *False alarms per day* = false episodes over all series / simulated days, where
    simulated days = (last window_end - first window_start) / 86 400 over all points.
    *µs per update*: wall time of all ``update`` calls of that kind / number of calls.

Output (JSON-ready)::

    {"detector": kinds[0], "scenarios": {NAME: {"incidents", "detected", "recall",
      "ttd_median_windows", "ttd_p95_windows", "ttd_median_seconds", "ttd_p95_seconds"}},
     "false_alarms_per_day", "false_alarms", "simulated_days", "series", "updates",
     "us_per_update", "baselines": {kind: {...the same without "baselines"...}}}

``kinds[0]`` is the detector reported at the top level; the other kinds go under
``baselines``. Percentiles are linear-interpolated (numpy) over detected incidents;
``None`` when nothing was detected.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from shoppulse.detectors import make_detector

Point = tuple[float, float, float | None, float | None, float | None]
"""(window_start, window_end, value, numerator, denominator)."""

DAY = 86400.0
DETECT_TAIL_WINDOWS = 2
FALSE_ALARM_TAIL_WINDOWS = 5


def as_point(p: Any) -> Point:
    """A :data:`Point` from a tuple/list or an object with the MetricPoint attributes."""
    if isinstance(p, (tuple, list)):
        ws, we, v, num, den = p
        return float(ws), float(we), v, num, den
    return (
        float(p.window_start),
        float(p.window_end),
        p.value,
        getattr(p, "numerator", None),
        getattr(p, "denominator", None),
    )


def points_by_series(points: Iterable[Any]) -> dict[str, list[Point]]:
    """Group MetricPoint-like objects (with a ``series`` key) into :func:`evaluate` input."""
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.series, []).append(as_point(p))
    return out


def run_detector(
    series: Mapping[str, Sequence[Any]], kind: str, window: float, params: Mapping[str, Any],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, list[tuple[float, float]]], int, float]:
    """Feed every series to a fresh detector; return alarmed windows, updates, seconds
    (of ``clock``: wall time by default, ``time.process_time`` for CPU time)."""
    alarms: dict[str, list[tuple[float, float]]] = {}
    n = 0
    elapsed = 0.0
    for key, pts in series.items():
        det = make_detector(kind, window=window, **params)
        rows = sorted((as_point(p) for p in pts), key=lambda r: r[0])
        flagged: list[tuple[float, float]] = []
        update = det.update
        t0 = clock()
        for ws, we, v, num, den in rows:
            if update(ws, v, numerator=num, denominator=den).anomalous:
                flagged.append((ws, we))
        elapsed += clock() - t0
        n += len(rows)
        alarms[key] = flagged
    return alarms, n, elapsed


def episodes(flagged: Sequence[tuple[float, float]], window: float) -> list[tuple[float, float]]:
    """Merge anomalous windows into episodes (gaps of at most one window are bridged)."""
    out: list[tuple[float, float]] = []
    for ws, we in flagged:
        if out and ws - out[-1][1] <= window + 1e-9:
            out[-1] = (out[-1][0], max(out[-1][1], we))
        else:
            out.append((ws, we))
    return out


def first_alarm_end(
    flagged: Sequence[tuple[float, float]], ends: Sequence[float], start: float, end: float,
    window: float,
) -> float | None:
    """End of the first anomalous window that detects an incident over ``[start, end)``.

    ``flagged``: one series' anomalous windows in time order, ``ends`` their window ends
    (for the bisection). ``None`` when none overlaps ``[start, end + 2 windows)``.
    """
    i = bisect.bisect_right(ends, start)  # first window ending after start
    if i < len(flagged) and flagged[i][0] < end + DETECT_TAIL_WINDOWS * window:
        return flagged[i][1]
    return None


def false_episodes(
    flagged: Sequence[tuple[float, float]], spans: Sequence[tuple[float, float]], window: float,
    bridge: float | None = None,
) -> int:
    """Episodes of one series that overlap none of its protected ``spans`` (false alarms).

    ``bridge``: the largest gap merged into one episode (default ``window``; 0 counts
    every onset, i.e. every anomalous window after a non-anomalous one).
    """
    eps = episodes(flagged, window if bridge is None else bridge)
    return sum(1 for es, ee in eps if not any(es < pe and ee > ps for ps, pe in spans))


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def score_alarms(
    alarms: Mapping[str, Sequence[tuple[float, float]]],
    truth: Sequence[Mapping[str, Any]],
    window: float,
    simulated_days: float,
    min_magnitude: float | Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Recall / TTD per scenario and false alarms per day from alarmed windows.

    ``alarms``: series key -> anomalous windows ``(window_start, window_end)`` in time
    order. ``min_magnitude``: one threshold, or one per scenario name.
    """
    ends = {key: [we for _, we in flagged] for key, flagged in alarms.items()}
    per: dict[str, dict[str, list[float] | int]] = {}
    below: dict[str, list[int]] = {}
    for inc in truth:
        start, end = float(inc["start"]), float(inc["end"])
        first: float | None = None
        for key in inc["series"]:
            we = first_alarm_end(alarms.get(key, ()), ends.get(key, []), start, end, window)
            if we is not None:
                first = we if first is None else min(first, we)
        name = str(inc["scenario"])
        mag = inc.get("magnitude")
        floor = min_magnitude.get(name) if isinstance(min_magnitude, Mapping) else min_magnitude
        if floor is not None and mag is not None and float(mag) < floor:
            b = below.setdefault(name, [0, 0])
            b[0] += 1
            b[1] += first is not None
            continue
        s = per.setdefault(name, {"incidents": 0, "ttd": []})
        s["incidents"] = int(s["incidents"]) + 1  # type: ignore[call-overload]
        if first is not None:
            s["ttd"].append(first - start)  # type: ignore[union-attr]
    scenarios: dict[str, dict[str, Any]] = {}
    for name in sorted(set(per) | set(below)):
        s = per.get(name, {"incidents": 0, "ttd": []})
        ttd: list[float] = list(s["ttd"])  # type: ignore[arg-type]
        n_inc = int(s["incidents"])  # type: ignore[arg-type]
        med, p95 = _pct(ttd, 50), _pct(ttd, 95)
        row: dict[str, Any] = {
            "incidents": n_inc,
            "detected": len(ttd),
            "recall": len(ttd) / n_inc if n_inc else None,
            "ttd_median_windows": None if med is None else med / window,
            "ttd_p95_windows": None if p95 is None else p95 / window,
            "ttd_median_seconds": med,
            "ttd_p95_seconds": p95,
        }
        if name in below:
            row["below_min_magnitude"] = {"incidents": below[name][0], "detected": below[name][1]}
        scenarios[name] = row
    # false alarms
    protect: dict[str, list[tuple[float, float]]] = {}
    for inc in truth:
        span = (float(inc["start"]), float(inc["end"]) + FALSE_ALARM_TAIL_WINDOWS * window)
        for key in inc["series"]:
            protect.setdefault(key, []).append(span)
    false = 0
    worst: dict[str, int] = {}
    for key, flagged in alarms.items():
        n_false = false_episodes(flagged, protect.get(key, []), window)
        if n_false:
            false += n_false
            worst[key] = worst.get(key, 0) + n_false
    top = dict(sorted(worst.items(), key=lambda kv: -kv[1])[:10])
    return {
        "scenarios": scenarios,
        "false_alarms": false,
        "false_alarms_per_day": false / simulated_days if simulated_days > 0 else None,
        "false_alarm_series": top,
    }


def evaluate(
    series: Mapping[str, Sequence[Any]],
    truth: Sequence[Mapping[str, Any]],
    kinds: Sequence[str],
    window: float,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    min_magnitude: float | Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Run ``kinds`` over ``series`` and score them against ``truth`` (module docstring).

    ``params`` maps a kind to extra detector parameters (``window`` is always passed).
    """
    if not kinds:
        raise ValueError("at least one detector kind is needed")
    rows = [as_point(p) for pts in series.values() for p in pts]
    days = (max(r[1] for r in rows) - min(r[0] for r in rows)) / DAY if rows else 0.0
    updates_total = sum(len(p) for p in series.values())
    results: list[dict[str, Any]] = []
    for kind in kinds:
        alarms, n, secs = run_detector(series, kind, window, (params or {}).get(kind, {}))
        res = {"detector": kind}
        res.update(score_alarms(alarms, truth, window, days, min_magnitude))
        res.update(
            simulated_days=days,
            series=len(series),
            updates=updates_total,
            us_per_update=secs / n * 1e6 if n else None,
        )
        results.append(res)
    out = results[0]
    out["baselines"] = {r["detector"]: r for r in results[1:]}
    return out
