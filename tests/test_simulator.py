"""The simulator: reproducible, schema-valid, and every incident moves the rate it claims to.

Rates are computed here straight from the generated events (not through any pipeline code),
comparing a run with incidents against the same seed without them over the incident interval.
"""

from __future__ import annotations

import gc
import itertools
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from shoppulse.streams.incidents import (
    MIN_MAGNITUDE,
    SCENARIOS,
    Incident,
    parse_duration,
    parse_incident,
)
from shoppulse.streams.simulator import (
    CATEGORIES,
    CHANNELS,
    SimEvent,
    Simulator,
    diurnal_factor,
    read_jsonl,
    write_ground_truth,
    write_jsonl,
)

ROOT = Path(__file__).resolve().parent.parent
START = 1_700_000_000.0  # 2023-11-14 22:13 UTC: evening, near the daily peak
RATE = 30.0
RUN = 330.0
T0, T1 = START + 60.0, START + 210.0  # incident interval of the incident run
INCIDENTS = [
    Incident("payment_outage", T0, T1 - T0),
    Incident("checkout_conversion_drop", T0, T1 - T0),
    Incident("landing_bounce_spike", T0, T1 - T0, affected={"channel": "ads"}),
    Incident("channel_traffic_drop", T0, T1 - T0, affected={"channel": "social"}),
    Incident("bot_traffic", T0, T1 - T0, affected={"channel": "search"}),
    Incident("logistics_delay", T0, T1 - T0, affected={"carrier": "fastship"}),
    Incident("order_spike", T0, T1 - T0),
    Incident("price_error", T0, T1 - T0, affected={"category": "fashion"}),
    Incident("stock_out", T0, T1 - T0, affected={"category": "electronics"}),
]


def _run(sim: Simulator, duration: float) -> list[SimEvent]:
    """All events of a run as a list; the cyclic GC is paused meanwhile because scanning
    hundreds of thousands of kept events would dominate the test time (a producer that does
    not keep them is unaffected)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return list(sim.events(duration))
    finally:
        if enabled:
            gc.enable()


@pytest.fixture(scope="module")
def baseline() -> list[SimEvent]:
    return _run(Simulator(seed=7, rate=RATE, start=START), RUN)


@pytest.fixture(scope="module")
def incident_run() -> tuple[Simulator, list[SimEvent]]:
    sim = Simulator(seed=7, rate=RATE, start=START, incidents=INCIDENTS)
    return sim, _run(sim, RUN)


@pytest.fixture(scope="module")
def noisy() -> tuple[list[SimEvent], list[SimEvent]]:
    """The same seed clean and with late, duplicate and disordered emission."""
    kw: dict[str, Any] = {"seed": 3, "rate": 15.0, "start": START, "warm_logistics": False}
    clean = _run(Simulator(**kw), 180)
    dirty = _run(Simulator(**kw, late_fraction=0.1, duplicate_fraction=0.05,
                           disorder_seconds=2.0), 180)
    return clean, dirty


# ----------------------------------------------------------------------------- schemas
def _topics() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "shoppulse.yaml").read_text())["topics"]


def _check_value(name: str, f: dict[str, Any], x: Any) -> str | None:
    t = f["type"]
    if t == "string":
        if not isinstance(x, str) or not x:
            return f"{name}={x!r} not a non-empty string"
        if "max_length" in f and len(x) > f["max_length"]:
            return f"{name} longer than {f['max_length']}"
    elif t == "timestamp":
        if type(x) is not float or not math.isfinite(x) or not 1e9 < x < 1e10:
            return f"{name}={x!r} not epoch seconds as float"
    elif t == "number":
        if type(x) not in (int, float) or not math.isfinite(x):
            return f"{name}={x!r} not a number"
        if x < f.get("min", -math.inf) or x > f.get("max", math.inf):
            return f"{name}={x!r} out of range"
    else:
        return f"{name}: unexpected field type {t}"
    if "enum" in f and x not in f["enum"]:
        return f"{name}={x!r} not in {f['enum']}"
    return None


def _problems(events: list[SimEvent], topics: dict[str, Any]) -> Counter[str]:
    """Everything wrong with ``events`` against the field specs of shoppulse.yaml.

    Field-name sets and distinct values are collected first and each checked once, which
    keeps validating a few hundred thousand events fast.
    """
    bad: Counter[str] = Counter()
    shapes: set[str] = set()
    values = {t: defaultdict(set) for t in topics}  # topic -> field -> distinct values
    types = {t: defaultdict(set) for t in topics}  # topic -> field -> python types
    keys = {name: spec["key"] for name, spec in topics.items()}
    for ev in events:
        v = ev.value
        if ev.topic not in keys:
            bad[f"unknown topic {ev.topic}"] += 1
            continue
        if ev.key != v.get(keys[ev.topic]):
            bad[f"{ev.topic}: key is not {keys[ev.topic]}"] += 1
        shapes.add(",".join((ev.topic, *v)))
        vals, tps = values[ev.topic], types[ev.topic]
        for k, x in v.items():
            vals[k].add(x)
            tps[k].add(x.__class__)
    for shape in shapes:
        topic, *field_names = shape.split(",")
        names = set(field_names)
        fields = topics[topic]["fields"]
        for name, f in fields.items():
            if f.get("required", True) and name not in names:
                bad[f"{topic}: missing {name}"] += 1
        for name in names - set(fields):
            bad[f"{topic}: undeclared field {name}"] += 1
    for topic, fields in values.items():
        for name, xs in fields.items():
            f = topics[topic]["fields"].get(name)
            if f is None:
                continue
            allowed = {"string": {str}, "timestamp": {float}, "number": {int, float}}[f["type"]]
            if types[topic][name] - allowed:
                bad[f"{topic}: {name} has types {types[topic][name]}"] += 1
                continue
            _check_values(topic, name, f, xs, bad)
    return bad


def _check_values(topic: str, name: str, f: dict[str, Any], xs: set[Any],
                  bad: Counter[str]) -> None:
    for x in xs:
        problem = _check_value(name, f, x)
        if problem:
            bad[f"{topic}: {problem}"] += 1


def test_every_event_validates_against_shoppulse_yaml(incident_run, noisy) -> None:
    """The incident run (normal traffic plus every scenario) and the noisy run (duplicates)."""
    topics = _topics()
    seen: Counter[str] = Counter()
    for events in (incident_run[1], noisy[1]):
        bad = _problems(events, topics)
        assert not bad, bad.most_common(10)
        seen.update(f"{ev.topic}/{ev.value['event_type']}" for ev in events)
    expected = {
        "clicks/impression", "clicks/click", "clicks/landing_view", "clicks/page_view",
        "clicks/add_to_cart", "clicks/checkout", "clicks/purchase", "orders/placed",
        "orders/paid", "orders/payment_failed", "orders/cancelled", "orders/refunded",
        "logistics/shipped", "logistics/delivered", "logistics/delayed",
        "logistics/exception",
    }
    assert expected <= set(seen), expected - set(seen)


def test_validator_catches_bad_events() -> None:
    """The checker above is not vacuous."""
    good = SimEvent("orders", "o1", {
        "event_id": "e1", "ts": START, "order_id": "o1", "visitor_id": "v1",
        "event_type": "placed", "channel": "ads", "platform": "web", "device": "desktop",
        "category": "books", "amount": 12.5, "currency": "USD"})
    topics = _topics()
    assert not _problems([good], topics)
    for change in ({"ts": 1700000000}, {"amount": -1.0}, {"channel": "tv"},
                   {"payment_method": None}, {"extra": "x"}):
        assert _problems([SimEvent("orders", "o1", {**good.value, **change})], topics), change
    missing = {k: v for k, v in good.value.items() if k != "currency"}
    assert _problems([SimEvent("orders", "o1", missing)], topics)


# --------------------------------------------------------------------- determinism
def test_same_seed_same_events_and_different_seed_differs() -> None:
    kw: dict[str, Any] = {"rate": 10.0, "start": START, "late_fraction": 0.05,
                          "duplicate_fraction": 0.02, "disorder_seconds": 1.0,
                          "incidents": [Incident("payment_outage", START + 5, 20)]}
    a = list(Simulator(seed=11, **kw).events(40))
    b = list(Simulator(seed=11, **kw).events(40))
    c = list(Simulator(seed=12, **kw).events(40))
    assert len(a) > 1000
    assert a == b
    assert [e.value for e in a[:200]] != [e.value for e in c[:200]]


def test_consecutive_calls_continue_the_same_stream() -> None:
    kw: dict[str, Any] = {"seed": 4, "rate": 10.0, "start": START}
    whole = list(Simulator(**kw).events(60))
    sim = Simulator(**kw)
    parts = list(sim.events(10.5)) + list(sim.events(19.5)) + list(sim.events(30))
    assert parts == whole


def test_event_time_range_ids_and_start_default() -> None:
    sim = Simulator(seed=2, rate=10.0, start=START)
    events = list(sim.events(30))
    ts = [e.value["ts"] for e in events]
    assert min(ts) >= START and max(ts) < START + 30
    assert ts == sorted(ts)  # no noise requested: exact event-time order
    assert len({e.value["event_id"] for e in events}) == len(events)
    before = time.time()
    assert before - 1 <= Simulator().start <= time.time() + 1


def test_diurnal_curve_night_is_a_fraction_of_the_evening_peak() -> None:
    day = 1_699_920_000.0  # 2023-11-14 00:00 UTC
    factors = [diurnal_factor(day + m * 60) for m in range(24 * 60)]
    assert max(factors) == pytest.approx(1.0, abs=0.01)
    assert 0.10 <= min(factors) <= 0.20
    assert max(abs(x - y) for x, y in itertools.pairwise(factors)) < 0.01

    def sessions(at: float) -> int:
        sim = Simulator(seed=1, rate=30.0, start=at, warm_logistics=False)
        return sum(e.value["event_type"] == "landing_view" for e in sim.events(60))

    night, evening = sessions(day + 4 * 3600), sessions(day + 20 * 3600)
    assert 0.08 < night / evening < 0.25


# ---------------------------------------------------------------- rates from events
_SESSIONS: dict[int, tuple[list[SimEvent], dict[str, dict[str, Any]]]] = {}


def _sessions(events: list[SimEvent]) -> dict[str, dict[str, Any]]:
    """session_id -> landing time, dims, visitor and the (ts, type) of its later events."""
    cached = _SESSIONS.get(id(events))
    if cached is not None and cached[0] is events:
        return cached[1]
    out: dict[str, dict[str, Any]] = {}
    later: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for e in events:
        if e.topic != "clicks":
            continue
        v = e.value
        if v["event_type"] == "landing_view":
            out[v["session_id"]] = {"ts": v["ts"], "channel": v["channel"],
                                    "visitor": v["visitor_id"], "later": later[v["session_id"]]}
        elif v["event_type"] not in ("impression", "click"):
            later[v["session_id"]].append((v["ts"], v["event_type"]))
    _SESSIONS[id(events)] = (events, out)
    return out


def _in(ts: float) -> bool:
    return T0 <= ts < T1


def _bounce(events: list[SimEvent], channel: str) -> tuple[float, int]:
    s = [x for x in _sessions(events).values() if x["channel"] == channel and _in(x["ts"])]
    bounced = sum(not any(t - x["ts"] <= 30 for t, _ in x["later"]) for x in s)
    return bounced / len(s), len(s)


def test_sessions_follow_the_bounce_and_conversion_model(baseline) -> None:
    sessions = [s for s in _sessions(baseline).values() if s["ts"] < START + RUN - 200]
    engaged = [s for s in sessions if s["later"]]
    assert all(min(t for t, _ in s["later"]) - s["ts"] <= 30 for s in engaged)
    bounce = 1 - len(engaged) / len(sessions)
    assert 0.30 < bounce < 0.45
    purchases = sum(any(k == "purchase" for _, k in s["later"]) for s in sessions)
    assert 0.022 < purchases / len(sessions) < 0.042
    ctr = Counter(e.value["event_type"] for e in baseline
                  if e.topic == "clicks" and e.value["event_type"] in ("impression", "click"))
    assert 0.03 < ctr["click"] / ctr["impression"] < 0.06


def test_payment_outage_lowers_payment_success(baseline, incident_run) -> None:
    def success(events: list[SimEvent]) -> float:
        c = Counter(e.value["event_type"] for e in events
                    if e.topic == "orders" and _in(e.value["ts"]))
        return c["paid"] / (c["paid"] + c["payment_failed"])

    assert success(baseline[:]) > 0.9
    assert success(incident_run[1]) < 0.6


def test_checkout_conversion_drop_lowers_checkout_to_purchase(baseline, incident_run) -> None:
    def rate(events: list[SimEvent]) -> float:
        checkouts = [s for s in _sessions(events).values()
                     if any(k == "checkout" and _in(t) for t, k in s["later"])]
        bought = sum(any(k == "purchase" for _, k in s["later"]) for s in checkouts)
        return bought / len(checkouts)

    assert rate(baseline) > 0.5
    assert rate(incident_run[1]) < 0.35


def test_landing_bounce_spike_raises_bounce_of_the_channel(baseline, incident_run) -> None:
    before, _ = _bounce(baseline, "ads")
    during, _ = _bounce(incident_run[1], "ads")
    assert before < 0.5 and during > 0.8
    # other channels keep their bounce rate
    assert abs(_bounce(incident_run[1], "direct")[0] - _bounce(baseline, "direct")[0]) < 0.08


def test_channel_traffic_drop_removes_sessions_and_impressions(baseline, incident_run) -> None:
    def volume(events: list[SimEvent], kind: str) -> int:
        return sum(e.value["event_type"] == kind and e.value["channel"] == "social"
                   and _in(e.value["ts"]) for e in events if e.topic == "clicks")

    for kind in ("landing_view", "impression"):
        assert volume(incident_run[1], kind) < 0.4 * volume(baseline, kind)


def test_bot_traffic_adds_bouncing_never_converting_sessions(baseline, incident_run) -> None:
    def search(events: list[SimEvent]) -> list[dict[str, Any]]:
        return [s for s in _sessions(events).values()
                if s["channel"] == "search" and _in(s["ts"])]

    base, bots_run = search(baseline), search(incident_run[1])
    assert len(bots_run) > 3 * len(base)
    assert _bounce(incident_run[1], "search")[0] > 0.8
    bots = [s for s in bots_run if "-b" in s["visitor"]]
    assert len(bots) > 2 * len(base)
    assert not any(s["later"] for s in bots)
    assert not any("-b" in s["visitor"] for s in _sessions(baseline).values())


def test_logistics_delay_raises_the_carriers_delay_rate(baseline, incident_run) -> None:
    def delay_rate(events: list[SimEvent]) -> tuple[float, int]:
        c: Counter[str] = Counter()
        for e in events:
            v = e.value
            if e.topic == "logistics" and v["carrier"] == "fastship" and _in(v["ts"]):
                if v["event_type"] == "delivered" and v["ts"] <= v["promised_ts"]:
                    c["on_time"] += 1
                elif v["event_type"] in ("delayed", "exception"):
                    c["delayed"] += 1
        n = c["on_time"] + c["delayed"]
        return c["delayed"] / n, n

    (before, n0), (during, n1) = delay_rate(baseline), delay_rate(incident_run[1])
    assert n0 > 20 and n1 > 20
    assert before < 0.2 and during > 0.4


def test_orders_and_logistics_carry_their_order_story(baseline) -> None:
    stories: dict[str, list[str]] = defaultdict(list)
    for e in baseline:
        if e.topic != "clicks":
            stories[e.key].append(e.value["event_type"])
    for oid, story in stories.items():
        if story[0] == "placed" and len(story) > 1:  # else paid after the run's end
            assert story[1] in ("paid", "payment_failed"), (oid, story)
            if "shipped" in story:
                assert "paid" in story and "cancelled" not in story
    shipped = [e.value for e in baseline if e.value.get("event_type") == "shipped"]
    latency = sorted(v["ts"] - v["paid_ts"] for v in shipped)
    assert latency[0] >= 600 and latency[-1] <= 6 * 3600
    delivered = [e.value for e in baseline if e.value.get("event_type") == "delivered"]
    on_time = sum(v["ts"] <= v["promised_ts"] for v in delivered) / len(delivered)
    assert 0.85 < on_time < 0.97


# -------------------------------------------------------------------- stream noise
def _lateness(events: list[SimEvent]) -> list[float]:
    out, top = [], -math.inf
    for e in events:
        ts = e.value["ts"]
        top = max(top, ts)
        out.append(top - ts)
    return out


def test_late_duplicate_and_disorder_fractions(noisy) -> None:
    clean, dirty = noisy
    ids = Counter(e.value["event_id"] for e in dirty)
    # noise changes emission only: the same events, some twice
    assert set(ids) == {e.value["event_id"] for e in clean}
    dup_fraction = sum(n - 1 for n in ids.values()) / len(ids)
    assert 0.04 < dup_fraction < 0.06
    first: dict[str, dict[str, Any]] = {}
    for e in dirty:
        if e.value["event_id"] in first:
            assert e.value == first[e.value["event_id"]]
        first[e.value["event_id"]] = e.value

    late = _lateness(dirty)
    late_fraction = sum(x >= 4.0 for x in late) / len(late)
    assert 0.08 < late_fraction < 0.12
    assert any(5 < x < 30 for x in late) and any(30 < x <= 121 for x in late)
    assert max(late) <= 121.0 + 2.0 + 5.0


def test_disorder_only_reorders_within_its_bound() -> None:
    sim = Simulator(seed=5, rate=10.0, start=START, disorder_seconds=2.0)
    late = _lateness(list(sim.events(60)))
    assert max(late) <= 2.0
    assert sum(x > 0 for x in late) > 100


# -------------------------------------------------------------------- ground truth
def test_ground_truth_lists_every_incident(tmp_path: Path, incident_run) -> None:
    sim, _ = incident_run
    truth = sim.ground_truth()
    assert [t["scenario"] for t in truth] == [i.name for i in INCIDENTS]
    for t, inc in zip(truth, INCIDENTS, strict=True):
        assert (t["start"], t["end"]) == (T0, T1)
        assert t["magnitude"] == SCENARIOS[inc.name].default_magnitude
        assert t["affected"] == inc.affected
    path = tmp_path / "truth.jsonl"
    write_ground_truth(sim, path)
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == truth


def test_affected_dimension_is_picked_from_the_seed() -> None:
    incs = [Incident(name, START, 60) for name in SCENARIOS]

    def picked(seed: int) -> list[dict[str, str]]:
        return [t["affected"] for t in Simulator(seed=seed, start=START,
                                                 incidents=incs).ground_truth()]

    a = picked(1)
    assert a == picked(1)
    by_name = dict(zip(SCENARIOS, a, strict=True))
    assert by_name["channel_traffic_drop"]["channel"] in CHANNELS
    assert set(by_name["landing_bounce_spike"]) <= {"channel", "platform"}
    assert "carrier" in by_name["logistics_delay"]
    assert by_name["payment_outage"] == {}
    assert any(picked(s) != a for s in range(2, 8))


def test_unknown_affected_value_is_rejected() -> None:
    inc = Incident("channel_traffic_drop", START, 60, affected={"channel": "tv"})
    with pytest.raises(ValueError, match="unknown channel 'tv'"):
        Simulator(start=START, incidents=[inc])


def test_order_spike_adds_sessionless_orders(baseline, incident_run) -> None:
    def placed(events: list[SimEvent]) -> list[dict[str, Any]]:
        return [e.value for e in events if e.topic == "orders"
                and e.value["event_type"] == "placed" and _in(e.value["ts"])]

    normal = len(placed(baseline))
    fraud = [v for v in placed(incident_run[1]) if "session_id" not in v]
    assert len(fraud) > 2 * normal
    assert len({v["visitor_id"] for v in fraud}) <= 40


def test_price_error_and_stock_out_move_their_category(baseline, incident_run) -> None:
    def carts(events: list[SimEvent], category: str) -> int:
        return sum(e.value["event_type"] == "add_to_cart" and e.value["category"] == category
                   and _in(e.value["ts"]) for e in events if e.topic == "clicks")

    run = incident_run[1]
    assert carts(run, "fashion") > 2 * carts(baseline, "fashion")
    # the order-spike orders arrive at once (no session first): enough of them to see prices
    amounts = sorted(e.value["amount"] for e in run
                     if e.topic == "orders" and e.value["event_type"] == "placed"
                     and "session_id" not in e.value and e.value["category"] == "fashion"
                     and _in(e.value["ts"]))
    assert len(amounts) > 20
    assert amounts[len(amounts) // 2] < 0.3 * 3 * CATEGORIES["fashion"][1]
    assert carts(run, "electronics") < 0.3 * carts(baseline, "electronics")


# -------------------------------------------------------------------- incident specs
def test_parse_incident_spec() -> None:
    inc = parse_incident("payment_outage@60s+5m", origin=1000.0)
    assert (inc.name, inc.start, inc.duration, inc.end) == ("payment_outage", 1060.0, 300.0,
                                                            1360.0)
    assert inc.magnitude == 0.6 and inc.affected == {}
    inc = parse_incident("bot_traffic@1h+30m:2.5/channel=ads", origin=0.0)
    assert (inc.start, inc.duration, inc.magnitude, inc.affected) == (3600.0, 1800.0, 2.5,
                                                                      {"channel": "ads"})
    inc = parse_incident(" logistics_delay@0+1h30m:0.3/carrier=globex,region=uk ", origin=5.0)
    assert (inc.start, inc.duration) == (5.0, 5400.0)
    assert inc.affected == {"carrier": "globex", "region": "uk"}
    assert parse_duration("2h") == 7200.0 and parse_duration("90") == 90.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo@1m+1m", "unknown scenario 'foo'"),
        ("payment_outage", "missing '@START'"),
        ("@1m+1m", "missing NAME"),
        ("payment_outage@1x+1m", "START '1x'"),
        ("payment_outage@1m", "missing '\\+DURATION'"),
        ("payment_outage@1m+soon", "DURATION 'soon'"),
        ("payment_outage@1m+0s", "DURATION '0s' must be > 0"),
        ("payment_outage@1m+2m:abc", "MAGNITUDE 'abc'"),
        ("payment_outage@1m+2m:1.5", "magnitude 1.5 out of range"),
        ("payment_outage@1m+2m:nan", "MAGNITUDE 'nan'"),
        ("landing_bounce_spike@1m+1m/carrier=x", "cannot affect dimension"),
        ("landing_bounce_spike@1m+1m/channel", "bad DIM=VALUE 'channel'"),
    ],
)
def test_parse_incident_errors_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_incident(spec, origin=0.0)


def test_scenario_registry_is_consistent() -> None:
    required = {"payment_outage", "checkout_conversion_drop", "landing_bounce_spike",
                "channel_traffic_drop", "bot_traffic", "logistics_delay"}
    assert required <= set(SCENARIOS)
    assert set(MIN_MAGNITUDE) == set(SCENARIOS)
    for name, s in SCENARIOS.items():
        assert 0 < s.min_magnitude <= s.default_magnitude <= s.max_magnitude, name
        assert s.doc and set(s.pick) <= set(s.dims)
    assert MIN_MAGNITUDE["payment_outage"] == 0.3
    with pytest.raises(ValueError, match="unknown incident scenario"):
        Incident("meteor", 0.0, 10.0)


# ----------------------------------------------------------------------------- files
def test_jsonl_round_trip(tmp_path: Path) -> None:
    events = list(Simulator(seed=1, rate=5.0, start=START).events(20))
    path = tmp_path / "events.jsonl"
    assert write_jsonl(events, path) == len(events)
    assert list(read_jsonl(path)) == events
    first = orjson.loads(path.read_bytes().splitlines()[0])
    assert set(first) == {"topic", "key", "value"}
