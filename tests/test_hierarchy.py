"""Hierarchy: a conversion drop confined to one channel is called once, at the most
specific level that carries it, and the overall's verdict names that channel first.

The detector stage scores each closed window's points together
(``DetectorStage.score_window``) with the repository's config, whose ``hierarchy`` maps
``conversion{channel, platform}`` to ``conversion_overall``. Generated data: 5 channels x
4 platforms of sessions with a daily rhythm, 3 % conversion, 5-minute windows.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from shoppulse.agents.detection import DetectorStage
from shoppulse.streams.config import load_config
from shoppulse.streams.records import MetricPoint, Verdict

W = 300.0
DAY = 86400.0
CHANNELS = ("search", "ads", "social", "direct", "email")
PLATFORMS = ("web", "ios", "android", "miniapp")


def daily(t: float) -> float:
    h = (t % DAY) / 3600.0
    return 0.15 + 0.85 * float(np.exp(3.0 * (np.cos(2 * np.pi * (h - 19.0) / 24.0) - 1.0)))


def simulate(sessions: dict[str, float], hit: str, factor: float, start: float,
             windows: int, days: float = 3.0, seed: int = 1
             ) -> tuple[list[list[Verdict]], list[float]]:
    """Score every window; the conversion of channel ``hit`` is x ``factor`` for
    ``windows`` windows from ``start``. Returns per window the verdicts (children then
    the overall) and the window starts."""
    rng = np.random.default_rng(seed)
    stage = DetectorStage(load_config(env={}), {}, CollectorRegistry())
    out, starts = [], []
    for i in range(int(days * DAY / W)):
        ts = i * W
        points = []
        tot_n = tot_k = 0
        for ch in CHANNELS:
            p = 0.03 * (factor if ch == hit and start <= ts < start + windows * W else 1.0)
            for pl in PLATFORMS:
                n = int(rng.poisson(sessions[ch] * daily(ts)))
                k = int(rng.binomial(n, p))
                tot_n, tot_k = tot_n + n, tot_k + k
                points.append(MetricPoint("conversion", {"channel": ch, "platform": pl}, ts,
                                          ts + W, k / n if n else None, k, n, kind="ratio"))
        points.append(MetricPoint("conversion_overall", {}, ts, ts + W,
                                  tot_k / tot_n if tot_n else None, tot_k, tot_n,
                                  kind="ratio"))
        out.append(stage.score_window(points))
        starts.append(ts)
    return out, starts


def check(verdicts: list[list[Verdict]], starts: list[float], hit: str, start: float,
          windows: int) -> tuple[bool, bool]:
    """Common assertions; returns (a child alarmed, the overall alarmed) in the incident."""
    i0 = starts.index(start)
    child_alarm = overall_alarm = False
    first = None
    for i in range(i0, i0 + windows + 2):
        vs = verdicts[i]
        overall = next(v for v in vs if v.metric == "conversion_overall")
        kids = [v for v in vs if v.metric == "conversion" and v.anomalous
                and v.labels["channel"] == hit and v.value is not None
                and v.expected is not None and v.value < v.expected]
        assert not (overall.anomalous and kids)  # one alarm, at the most specific level
        child_alarm |= bool(kids)
        overall_alarm |= overall.anomalous
        if first is None and (kids or overall.anomalous):
            first = overall
    assert first is not None, "the incident raised no alarm at any level"
    last = next(v for v in verdicts[i0 + windows - 1] if v.metric == "conversion_overall")
    for overall in (first, last):
        top = overall.contributors[0]
        assert top["labels"].get("channel") == hit and top["share"] >= 0.6, overall.contributors
        assert len(overall.contributors) <= 3
    return child_alarm, overall_alarm


def test_a_thick_channel_carries_its_own_drop() -> None:
    sessions = {"search": 400.0, "ads": 30.0, "social": 15.0, "direct": 15.0, "email": 10.0}
    start, windows = 2 * DAY + 18 * 3600.0, 24
    verdicts, starts = simulate(sessions, "search", 0.3, start, windows)
    child, _ = check(verdicts, starts, "search", start, windows)
    assert child  # called on the channel; the overall only names it


def test_a_thin_channels_drop_is_called_once_and_named_by_the_overall() -> None:
    """Each email child carries under two purchases a window; an email outage spread over
    its four platforms is called once (whichever level carries it first) and the overall
    names email, the channel across platforms, first."""
    sessions = {"search": 40.0, "ads": 20.0, "social": 10.0, "direct": 10.0, "email": 60.0}
    start, windows = 2 * DAY + 16 * 3600.0, 48
    verdicts, starts = simulate(sessions, "email", 0.0, start, windows, seed=2)
    check(verdicts, starts, "email", start, windows)


def test_a_hierarchy_is_routed_to_one_place_children_first() -> None:
    """Live pooling needs a window's parent and children in one place, children first:
    the ingest sends a hierarchy to its top ancestor's destination (``Plan.route``) and
    the detect stage sends its points to one metrics partition, deepest first."""
    from shoppulse.agents.ingest import split_by_dest
    from shoppulse.agents.plan import compile_plan
    from shoppulse.detectors.hierarchy import roots

    assert roots({"a": "b", "b": "c", "x": "c"}) == {"a": ("c", 2), "b": ("c", 1),
                                                    "x": ("c", 1), "c": ("c", 0)}
    cfg = load_config(env={})
    plan = compile_plan(cfg)
    assert plan.route["conversion"] == plan.route["conversion_overall"] == "conversion_overall"
    conv, overall = plan.metric_index("conversion"), plan.metric_index("conversion_overall")
    parts = {(conv, ("ads", "web"), 0.0): [1], (overall, (), 0.0): [1]}
    for n_dest in (2, 3, 4, 8):
        per_dest = split_by_dest(parts, plan, n_dest)
        assert sorted(len(d) for d in per_dest)[-1] == 2  # both on one destination
    stage = DetectorStage(cfg, {}, CollectorRegistry())
    pts = [MetricPoint("conversion_overall", {}, 0.0, 60.0, 0.03, 3, 100, kind="ratio"),
           MetricPoint("orders", {"channel": "ads"}, 0.0, 60.0, 5.0, kind="count"),
           *(MetricPoint("conversion", {"channel": ch, "platform": "web"}, 0.0, 60.0, 0.03,
                         1, 30, kind="ratio") for ch in CHANNELS)]
    routed = stage.route(pts, 8)
    names = [p.metric for _, p in routed]
    assert names.index("conversion_overall") > max(
        i for i, n in enumerate(names) if n == "conversion")
    assert len({part for part, p in routed if p.metric.startswith("conversion")}) == 1


def test_a_child_in_its_cooldown_keeps_the_incident_it_carried() -> None:
    """Bots on ads: the ads child carries the sessions surge, then the bots leave. The ads
    child's alarm lasts its cooldown while a window of it falls just below expected; the
    parent's evidence of the same surge is still fading. Judged on this window's sign, the
    parent took the incident back as a new alarm (a critical `HeadlineAnomaly` on
    `sessions_started_overall` after the incident's end, value inside its band); judged on
    the child's run, as the parent's direction is, the child still carries it."""
    from shoppulse.detectors.hierarchy import Pool

    def v(exp: float, val: float, anomalous: bool) -> Verdict:
        return Verdict(0.9, exp, None, None, anomalous, False, value=val)

    pool = Pool()
    for _ in range(6):  # the surge: ads at 4x, carried by the child
        pool.child({"channel": "ads"}, v(30.0, 120.0, True))
        pool.child({"channel": "search"}, v(60.0, 61.0, False))
        assert not pool.parent(v(90.0, 181.0, True)).anomalous
    # over: ads a little below expected, its episode in its cooldown; the parent's too
    pool.child({"channel": "ads"}, v(30.0, 27.0, True))
    pool.child({"channel": "search"}, v(60.0, 60.0, False))
    after = pool.parent(v(90.0, 87.0, True))
    assert not after.anomalous and not after.alarm_now
    assert after.contributors[0]["labels"] == {"channel": "ads"}
