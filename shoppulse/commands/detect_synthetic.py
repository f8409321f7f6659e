"""``bench detect --synthetic``: detectors against the oracle on series of known law.

Why: on the shop simulator nobody knows how fast an incident *could* be called, so a slow
time-to-detect may be physics (a thin series) or a bad detector. Here every window's true
distribution is known (:mod:`~shoppulse.commands.synthetic_series`), so for each incident
the **oracle** — a CUSUM on the exact log-likelihood ratio of the after- to the
before-distribution, ``S = max(0, S + log f1(x) / f0(x))``, alarm while ``S > h`` — gives
the shortest delay any detector can have at the same false-alarm rate (Lorden 1971,
Moustakides 1986). Detectors are scored by their ratio to it.

The oracle, per incident:

- ``f0``/``f1``: the series' true parameters in each window without / with the incident
  at its full size (a ramp's oracle knows where the ramp ends, not its path).
- ``h``: the same false-alarm budget as the bar, ``budget`` alarm onsets per simulated
  day across all series, split evenly: a per-series mean run length of
  ``ARL = n_series * windows_per_day / budget`` windows. It is calibrated by simulation:
  ``calibration * ARL`` windows of incident-free data of that series' law, and ``h`` is
  the smallest level whose onsets there (``S`` crossing above it) are at most
  ``calibration`` — counted, not taken from the ``e^h`` approximation.
- delay: the CUSUM started at 0 at the incident start (Lorden's worst case) on the
  series' actual data; ``ttd`` = windows to the end of the first window with ``S > h``.
  Incidents it does not call within their duration are not *oracle-detectable* and are
  left out of recall (reported as ``incidents - oracle_detectable``).

A detector (fresh per series, through :func:`~shoppulse.commands.detect_bench.run_detector`,
told the metric's kind when it takes a ``family``/``metric_kind`` parameter) is scored
with the harness' rules (:mod:`~shoppulse.commands.detect_bench`): detected when an
anomalous window overlaps ``[start, end + 2 windows)``, TTD to the end of that window;
false alarms are alarm *onsets* (an anomalous window after a non-anomalous one) outside
``[start, end + 5 windows)`` of the series' incidents, per simulated day across all series.
µs per update is CPU time (``time.process_time``) spent in ``update``: on a shared machine
wall time measures the neighbours.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shoppulse.commands.detect_bench import (
    DAY,
    false_episodes,
    first_alarm_end,
    run_detector,
)
from shoppulse.commands.synthetic_series import (
    START,
    Incident,
    Series,
    SeriesSpec,
    build,
    changed,
    loglik,
    null_params,
    sample,
)
from shoppulse.detectors import make_detector

BAR = {"false_alarms_per_day": 1.0, "recall": 0.95, "ttd_ratio_to_oracle_median": 1.5,
       "us_per_update": 100.0}
"""The bar of issue 13 for the default detector."""
KIND_PARAMS = ("family", "metric_kind")
KIND_VALUES = {"count": ("count",), "sum": ("sum",), "ratio": ("ratio",),
               "real": ("real", "gauss")}


# -- the oracle ---------------------------------------------------------------------------
def cusum(z: np.ndarray) -> np.ndarray:
    """``S_t = max(0, S_{t-1} + z_t)`` from ``S_{-1} = 0``, vectorised (Lindley)."""
    x = np.cumsum(z)
    return x - np.minimum(np.minimum.accumulate(x), 0.0)


def onsets(s: np.ndarray, h: float) -> int:
    """Alarm onsets of ``S > h``: windows above ``h`` whose predecessor is not."""
    above = s > h
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


def _steps(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted starts and ends of the up-steps of ``S``: an onset above ``h`` is an up-step
    from ``a <= h`` to ``b > h``, so the onsets above ``h`` are ``#(a <= h) - #(b <= h)``."""
    prev = np.concatenate(([0.0], s[:-1]))
    up = s > prev
    return np.sort(prev[up]), np.sort(s[up])


def _count(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.searchsorted(a, h, side="right") - np.searchsorted(b, h, side="right")


def level_for(s: np.ndarray, allowed: float) -> float:
    """Smallest ``h`` such that ``S`` has at most ``allowed`` onsets above ``h`` and above
    every higher level (exact: the count is constant between step ends)."""
    a, b = _steps(s)
    pts = np.sort(np.concatenate([a, b]))
    bad = np.flatnonzero(_count(a, b, pts) > allowed)
    if len(bad) == 0:
        return 0.0
    return float(pts[bad[-1] + 1])  # the count is 0 at the highest step end


def calibrate_h(s: np.ndarray, allowed: float, span: float = 16.0) -> float:
    """``h`` at which null data ``s`` is expected to have ``allowed`` onsets.

    The level where the count first falls to ``allowed`` (:func:`level_for`) is the
    minimum of a noisy, clustered count, hence biased low (measured: ~1.8 x the onsets on
    fresh data at ``allowed`` = 4). So the counts at levels from ``span * allowed``
    onsets up to that one are fitted with ``log n = c - k h`` (weighted by ``n``) and ``h``
    read off the fit at ``allowed``: the tail of an LLR CUSUM is exponential in ``h``,
    and the fit interpolates between counted levels instead of trusting ``ARL ~ e^h``.
    """
    hi = level_for(s, allowed)
    lo = level_for(s, span * allowed)
    if not hi > lo:
        return hi
    a, b = _steps(s)
    grid = np.linspace(lo, hi, 16)
    n = _count(a, b, grid).astype(float)
    ok = n > 0
    if ok.sum() < 3:
        return hi
    k, c = np.polyfit(grid[ok], np.log(n[ok]), 1, w=np.sqrt(n[ok]))
    if not k < 0:
        return hi
    return float((math.log(allowed) - c) / k)


def series_arl(n_series: int, window: float, budget: float) -> float:
    """Per-series mean run length (windows) for ``budget`` onsets/day over all series."""
    return n_series * DAY / window / budget


class NullSample:
    """Incident-free data of one series' law, ``length`` windows, for calibrating ``h``."""

    def __init__(self, spec: SeriesSpec, length: int, rng: np.random.Generator) -> None:
        self.spec = spec
        ts = START + spec.window * np.arange(length, dtype=float)
        self.p0 = null_params(spec, ts)
        self.x, self.den = sample(spec, self.p0, rng)
        self.ll0 = loglik(spec, self.x, self.den, self.p0)

    def threshold(self, inc: Incident, allowed: float) -> float:
        p1 = changed(self.spec, self.p0, inc, 1.0)
        z = loglik(self.spec, self.x, self.den, p1) - self.ll0
        return calibrate_h(cusum(z), allowed)


def oracle_delay(series: Series, inc: Incident, h: float) -> int | None:
    """Windows from the incident start to the end of the oracle's first alarm window, or
    ``None`` when it does not alarm within the incident's duration."""
    sl = slice(inc.start_index, inc.start_index + inc.duration)
    spec = series.spec
    p0 = null_params(spec, series.ts[sl])
    p1 = changed(spec, p0, inc, 1.0)
    x = series.numerator if series.numerator is not None else series.value
    den = series.denominator[sl] if series.denominator is not None else None
    z = loglik(spec, x[sl], den, p1) - loglik(spec, x[sl], den, p0)
    hit = np.flatnonzero(cusum(z) > h)
    return int(hit[0]) + 1 if len(hit) else None


def oracle(data: Sequence[Series], *, budget: float = 1.0, calibration: float = 4.0,
           seed: int = 0) -> dict[tuple[str, int], dict[str, Any]]:
    """``h`` and delay of the oracle for every incident, keyed by (series, start index)."""
    rng = np.random.default_rng([seed, 1])
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for s in data:
        if not s.incidents:
            continue
        arl = series_arl(len(data), s.spec.window, budget)
        null = NullSample(s.spec, math.ceil(calibration * arl), rng)
        for inc in s.incidents:
            h = null.threshold(inc, calibration)
            out[(s.spec.key, inc.start_index)] = {"h": h, "ttd": oracle_delay(s, inc, h)}
    return out


# -- detectors ----------------------------------------------------------------------------
def kind_params(detector: str, metric_kind: str, window: float) -> dict[str, Any]:
    """The parameter telling ``detector`` the metric's kind, if it takes one (else {})."""
    for name in KIND_PARAMS:
        for value in KIND_VALUES[metric_kind]:
            try:
                make_detector(detector, window=window, **{name: value})
            except (TypeError, ValueError):
                continue
            return {name: value}
    return {}


def run_kind(data: Sequence[Series], detector: str
             ) -> tuple[dict[str, list[tuple[float, float]]], int, float, dict[str, Any]]:
    """Alarmed windows per series, updates, CPU seconds in ``update`` (CPU, not wall: the
    machine may be shared), kind parameters used."""
    alarms: dict[str, list[tuple[float, float]]] = {}
    n = 0
    secs = 0.0
    told: dict[str, Any] = {}
    cache: dict[tuple[str, float], dict[str, Any]] = {}
    for s in data:
        sp = s.spec
        key = (sp.kind, sp.window)
        if key not in cache:
            cache[key] = kind_params(detector, sp.kind, sp.window)
            if cache[key]:
                told[sp.kind] = cache[key]
        a, k, e = run_detector({sp.key: s.points()}, detector, sp.window, cache[key],
                               clock=time.process_time)
        alarms.update(a)
        n += k
        secs += e
    return alarms, n, secs, told


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    det = [r for r in rows if r["oracle_ttd"] is not None]
    hit = [r for r in det if r["ttd"] is not None]
    ttd = [r["ttd"] for r in hit]
    ratio = [r["ttd"] / r["oracle_ttd"] for r in hit]
    return {
        "incidents": len(rows),
        "oracle_detectable": len(det),
        "detected": len(hit),
        "recall": len(hit) / len(det) if det else None,
        "ttd_median_windows": _pct(ttd, 50),
        "ttd_p95_windows": _pct(ttd, 95),
        "ttd_ratio_to_oracle_median": _pct(ratio, 50),
        "oracle_ttd_median_windows": _pct([r["oracle_ttd"] for r in det], 50),
    }


def bridge_unjudged(flagged: list[tuple[float, float]], s: Series) -> list[tuple[float, float]]:
    """``flagged`` plus the windows without a valid value (a ratio with no sessions)
    that lie between two flagged windows: such a window is not judged (the contract:
    not anomalous), so it cannot end an alarm, and the alarm resuming after it is not a
    new onset. Counting it as one made one episode on a thin ratio 20 onsets."""
    if not flagged:
        return flagged
    bad = ~np.isfinite(s.value)
    if not bad.any():
        return flagged
    w = s.spec.window
    idx = np.rint((np.array([ws for ws, _ in flagged]) - s.ts[0]) / w).astype(int)
    on = np.zeros(len(s.value), dtype=bool)
    on[idx] = True
    out = on.copy()
    last_valid_on = False
    run: list[int] = []
    for i in range(len(on)):
        if bad[i]:
            run.append(i)
            continue
        if on[i] and last_valid_on and run:
            out[run] = True
        run = []
        last_valid_on = bool(on[i])
    return [(float(s.ts[i]), float(s.ts[i]) + w) for i in np.flatnonzero(out)]


def score(data: Sequence[Series], alarms: dict[str, list[tuple[float, float]]],
          orc: dict[tuple[str, int], dict[str, Any]], days: float) -> dict[str, Any]:
    """Per-scenario (and per scenario/volume) recall, TTD, oracle ratio; false alarms."""
    rows: list[dict[str, Any]] = []
    false = 0
    for s in data:
        w = s.spec.window
        flagged = bridge_unjudged(alarms.get(s.spec.key, []), s)
        ends = [we for _, we in flagged]
        spans = []
        for inc in s.incidents:
            start = float(s.ts[inc.start_index])
            end = start + inc.duration * w
            spans.append((start, end + 5 * w))
            we = first_alarm_end(flagged, ends, start, end, w)
            rows.append({"scenario": inc.scenario, "volume": s.spec.volume,
                         "ttd": None if we is None else (we - start) / w,
                         "oracle_ttd": orc[(s.spec.key, inc.start_index)]["ttd"]})
        false += false_episodes(flagged, spans, w, bridge=0.0)
    scenarios = {name: _stats([r for r in rows if r["scenario"] == name])
                 for name in sorted({r["scenario"] for r in rows})}
    volumes = {f"{sc}/{vol}": _stats([r for r in rows if (r["scenario"], r["volume"]) == (sc, vol)])
               for sc, vol in sorted({(r["scenario"], r["volume"]) for r in rows})}
    return {"scenarios": scenarios, "volumes": volumes, "false_alarm_onsets": false,
            "false_alarms_per_day": false / days if days > 0 else None}


def meets_bar(res: dict[str, Any]) -> dict[str, bool]:
    """Each criterion of the bar, true when met (a scenario without data does not fail)."""
    sc = res["scenarios"].values()
    return {
        "false_alarms_per_day": res["false_alarms_per_day"] <= BAR["false_alarms_per_day"],
        "recall": all(s["recall"] is None or s["recall"] >= BAR["recall"] for s in sc),
        "ttd_ratio_to_oracle_median": all(
            s["ttd_ratio_to_oracle_median"] is None
            or s["ttd_ratio_to_oracle_median"] <= BAR["ttd_ratio_to_oracle_median"] for s in sc),
        "us_per_update": res["us_per_update"] <= BAR["us_per_update"],
    }


def evaluate_synthetic(*, n_series: int = 200, days: float = 7.0, seed: int = 1,
                       kinds: Sequence[str] = ("default", "gaussian", "hst"),
                       budget: float = 1.0, calibration: float = 4.0,
                       say: Callable[..., None] = lambda *a: None,
                       orc: dict[tuple[str, int], dict[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """Generate, compute the oracle, run ``kinds`` and score them (module docstring).

    ``orc``: the oracle of the same ``n_series``/``days``/``seed``/``budget`` computed
    before (:func:`oracle`), to compare detector versions without recomputing it."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    data = build(n_series, days, seed)
    n_inc = sum(len(s.incidents) for s in data)
    say(f"{n_series} series, {days:g} days, {n_inc} incidents generated in "
        f"{time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    if orc is None:
        orc = oracle(data, budget=budget, calibration=calibration, seed=seed)
    n_det = sum(o["ttd"] is not None for o in orc.values())
    say(f"oracle: {n_det} of {n_inc} incidents detectable, {time.perf_counter() - t0:.1f}s")
    results = []
    for kind in kinds:
        t0 = time.perf_counter()
        alarms, n, secs, told = run_kind(data, kind)
        res: dict[str, Any] = {"detector": kind, "told_kind": told}
        res.update(score(data, alarms, orc, days))
        res.update(us_per_update=secs / n * 1e6 if n else None, updates=n,
                   series=len(data), simulated_days=days)
        say(f"{kind}: {n:,} updates in {time.perf_counter() - t0:.0f}s")
        results.append(res)
    out = results[0]
    out["baselines"] = {r["detector"]: r for r in results[1:]}
    out["meets_bar"] = meets_bar(out)
    out.update(seed=seed, incidents=n_inc, oracle_detectable=n_det,
               false_alarm_budget_per_day=budget, cpu_seconds=time.process_time() - cpu0)
    return out


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_report(res: dict[str, Any]) -> None:
    """Human-readable tables: per scenario, per scenario/volume, for each detector."""
    seeds = (f"seeds {res['seeds']}: medians, counts summed" if "seeds" in res
             else f"seed {res['seed']}")
    print(f"{res['series']} series, {res['simulated_days']:g} simulated days ({seeds}), "
          f"{res['incidents']} incidents, {res['oracle_detectable']} "
          f"oracle-detectable at {res['false_alarm_budget_per_day']:g} false alarm/day")
    head = (f"{'detector':<9} {'scenario':<18} {'n':>4} {'det':>4} {'recall':>6} "
            f"{'ttd p50':>7} {'ttd p95':>7} {'oracle':>6} {'ratio':>6}")
    for r in [res, *res["baselines"].values()]:
        print(head)
        for table in ("scenarios", "volumes"):
            for name, s in r[table].items():
                print(f"{r['detector']:<9} {name:<18} {s['incidents']:>4} "
                      f"{s['oracle_detectable']:>4} {_fmt(s['recall'], '.2f'):>6} "
                      f"{_fmt(s['ttd_median_windows']):>7} {_fmt(s['ttd_p95_windows']):>7} "
                      f"{_fmt(s['oracle_ttd_median_windows']):>6} "
                      f"{_fmt(s['ttd_ratio_to_oracle_median'], '.2f'):>6}")
        print(f"{r['detector']:<9} false alarms/day {r['false_alarms_per_day']:.2f} "
              f"({r['false_alarm_onsets']} onsets), {r['us_per_update']:.1f} us/update, "
              f"told kind: {r['told_kind'] or 'no'}")
    print("bar (default): " + ", ".join(f"{k} {'met' if v else 'MISSED'}"
                                        for k, v in res["meets_bar"].items()))


SUMMED = ("incidents", "oracle_detectable", "detected", "false_alarm_onsets", "updates")
"""Counts that add up over runs; every other figure is the median over runs."""


def _median_tree(items: Sequence[Any]) -> Any:
    """Element-wise median of same-shaped JSON trees (counts in :data:`SUMMED` summed)."""
    first = items[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for x in items if isinstance(x, dict) for k in x))
        items = [x if isinstance(x, dict) else {} for x in items]
        out = {}
        for k in keys:
            vals = [x.get(k) for x in items]
            if k in SUMMED and all(isinstance(v, int) for v in vals):
                out[k] = sum(vals)
            else:
                out[k] = _median_tree([v for v in vals if v is not None] or [None])
        return out
    nums = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if nums and len(nums) == len(items):
        return statistics.median(nums)
    if all(isinstance(x, bool) for x in items):
        return all(items)
    return first


def median_of_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report of the same shape from several runs (seeds): medians of the figures,
    sums of the counts, ``meets_bar`` re-judged on the medians, ``seeds`` listed."""
    out = _median_tree(list(runs))
    out["seeds"] = [r["seed"] for r in runs]
    out.pop("seed", None)
    out["meets_bar"] = meets_bar(out)
    return out


def main_synthetic(*, n_series: int, days: float, seed: int, as_json: bool,
                   runs: int = 1) -> dict[str, Any]:
    """The CLI entry: run (seeds ``seed`` .. ``seed + runs - 1``, medians when several),
    print a report (or one JSON object)."""
    import orjson

    say = (lambda *a: None) if as_json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    results = [evaluate_synthetic(n_series=n_series, days=days, seed=seed + i, say=say)
               for i in range(runs)]
    res = results[0] if runs == 1 else median_of_runs(results)
    if as_json:
        print(orjson.dumps(res, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print_report(res)
    return res
