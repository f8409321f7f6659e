"""A seeded shop that emits clicks, orders and logistics events, with injectable incidents.

Why: every stage downstream (windows, sessions, detectors, alerts, playbooks, drills,
benchmarks) needs a realistic stream whose truth is known. This module is pure Python (no
Kafka): producers, replays and tests iterate :meth:`Simulator.events` and send or inspect
the :class:`SimEvent` it yields.

Model, in short. Sessions arrive as a Poisson process (``rate`` per second at the evening
peak, shaped by a smooth diurnal curve on the UTC hour). A search, ads or social visit is
preceded, under its own session_id, by 1-3 impressions and a click up to 25 s before its
``landing_view`` (the event that opens a session); each click also comes with impression
batches that led nowhere (own session ids, no landing), so clicks / impressions = the
channel's CTR. Bounced sessions emit nothing after ``landing_view``; engaged ones a
``page_view`` within 30 s and more over the next minutes, some ``add_to_cart``,
``checkout``, ``purchase`` (visit -> order ~3.2 %). A purchase places an order (same
session_id), paid or failed 1-15 s later, some cancelled before dispatch or refunded after
delivery. Paid orders ship (dispatch latency 10 min - 6 h, ``paid_ts`` on ``shipped``) and
are delivered on time or after a ``delayed`` / ``exception`` event (``promised_ts`` on
``delivered``). The run is warm-started: shipments, cancels and refunds of orders paid
before ``start`` are still open, so those metrics have data from the first minute.

Ids are seeded counters (``e<seed>-<n>`` events, ``s``/``i`` sessions and impression
batches, ``o`` orders, ``h`` shipments, ``v`` visitors): fast and reproducible.

Generation runs per 1 s slice of event time: sessions are created ``LOOKAHEAD`` seconds
ahead (their impressions precede the landing), their events go into per-second buckets of
emission time, and each slice's bucket is sorted and yielded. Memory is bounded by what is
in flight (sessions for minutes, shipments for hours), not by the run length. Logistics
events hours ahead are stored as compact tuples and built into dicts only when emitted.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path
from random import Random
from typing import Any

import orjson

from shoppulse.streams.incidents import SCENARIOS, Incident

__all__ = [
    "CARRIERS",
    "CATEGORIES",
    "CHANNELS",
    "DIMENSION_VALUES",
    "LOOKAHEAD",
    "SimEvent",
    "Simulator",
    "diurnal_factor",
    "read_jsonl",
    "write_ground_truth",
    "write_jsonl",
]


@dataclass(slots=True)
class SimEvent:
    """One event to produce: ``topic``, partitioning ``key`` and the schema payload."""

    topic: str  # "clicks" | "orders" | "logistics"
    key: str  # clicks: session_id; orders and logistics: order_id
    value: dict[str, Any]


# --------------------------------------------------------------------------- catalogue
# channel: (traffic share, CTR per impression (0 = no impressions), bounce, add-to-cart
# probability of an engaged session). Overall: bounce ~38 %, visit->order ~3.2 %. Every
# channel's CTR sits well above the plan's 3 % (CtrLow), also in the demo's 10 s windows.
CHANNELS: dict[str, tuple[float, float, float, float]] = {
    "search": (0.32, 0.055, 0.35, 0.16),
    "ads": (0.25, 0.045, 0.42, 0.13),
    "social": (0.15, 0.050, 0.52, 0.10),
    "direct": (0.18, 0.0, 0.30, 0.20),
    "email": (0.10, 0.0, 0.32, 0.18),
}
# (platform, device): share
PLATFORM_DEVICES: dict[tuple[str, str], float] = {
    ("web", "desktop"): 0.26,
    ("web", "mobile"): 0.13,
    ("web", "tablet"): 0.03,
    ("ios", "mobile"): 0.21,
    ("ios", "tablet"): 0.04,
    ("android", "mobile"): 0.23,
    ("android", "tablet"): 0.02,
    ("miniapp", "mobile"): 0.08,
}
# category: (share, median order amount in USD)
CATEGORIES: dict[str, tuple[float, float]] = {
    "electronics": (0.14, 160.0),
    "fashion": (0.20, 48.0),
    "home": (0.14, 65.0),
    "beauty": (0.12, 32.0),
    "grocery": (0.12, 38.0),
    "sports": (0.10, 55.0),
    "toys": (0.08, 30.0),
    "books": (0.10, 19.0),
}
PAYMENT_METHODS: dict[str, float] = {"card": 0.62, "wallet": 0.28, "bank_transfer": 0.06,
                                     "cod": 0.04}
# currency: (share, units per USD)
CURRENCIES: dict[str, tuple[float, float]] = {"USD": (0.85, 1.0), "EUR": (0.10, 0.92),
                                              "GBP": (0.05, 0.79)}
# carrier: (share, late probability, exception probability, promised transit hours);
# ~91 % of deliveries on time overall
CARRIERS: dict[str, tuple[float, float, float, float]] = {
    "fastship": (0.24, 0.05, 0.006, 2.5),
    "parcelpro": (0.22, 0.07, 0.008, 3.0),
    "swiftpost": (0.18, 0.09, 0.010, 3.5),
    "cargoline": (0.14, 0.11, 0.012, 4.0),
    "ecoexpress": (0.12, 0.13, 0.015, 5.0),
    "globex": (0.10, 0.08, 0.010, 4.0),
}
# warehouse: (share, median dispatch latency in minutes)
WAREHOUSES: dict[str, tuple[float, float]] = {
    "wh-east": (0.30, 45.0),
    "wh-west": (0.25, 55.0),
    "wh-central": (0.20, 60.0),
    "wh-north": (0.13, 80.0),
    "wh-south": (0.12, 70.0),
}
REGIONS: dict[str, float] = {"us-east": 0.22, "us-west": 0.18, "us-central": 0.14,
                             "eu-west": 0.14, "eu-central": 0.10, "uk": 0.08, "apac": 0.08,
                             "latam": 0.06}

DIMENSION_VALUES: dict[str, tuple[str, ...]] = {
    "channel": tuple(CHANNELS),
    "platform": tuple(dict.fromkeys(p for p, _ in PLATFORM_DEVICES)),
    "device": tuple(dict.fromkeys(d for _, d in PLATFORM_DEVICES)),
    "category": tuple(CATEGORIES),
    "payment_method": tuple(PAYMENT_METHODS),
    "carrier": tuple(CARRIERS),
    "warehouse": tuple(WAREHOUSES),
    "region": tuple(REGIONS),
    "topic": ("clicks", "orders", "logistics"),  # pipeline_stall: which producer stalls
}
# Values a scenario picks from when its incident names no dimension (default: all values).
_PICK_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("bot_traffic", "channel"): ("ads", "social", "search"),
    ("pipeline_stall", "topic"): ("orders",),  # the producer whose silence costs most
}

P_CHECKOUT = 0.5  # add_to_cart -> checkout
P_PURCHASE = 0.67  # checkout -> purchase
P_PAYMENT_FAIL = 0.03
P_CANCEL = 0.03  # of paid orders, before dispatch
P_REFUND = 0.02  # of paid orders, after delivery
REFUND_DELAY_MIN, REFUND_DELAY_MAX = 1800.0, 21600.0  # s after delivery
AMOUNT_SIGMA = 0.65  # lognormal spread of order amounts
DISPATCH_SIGMA = 0.7
DISPATCH_MIN, DISPATCH_MAX = 600.0, 21600.0
LOOKAHEAD = 30  # s: sessions are created this far ahead of emission (impressions precede them)
MAX_LATE = 120.0  # s: upper bound of the extra delay of a late event
DUPLICATE_DELAY = 5.0  # s: a duplicate is re-emitted within this after the original
VISITOR_POOL = 5_000_000
BOT_POOL = 200
FRAUD_POOL = 40

# Traffic relative to the 20:00 UTC peak, per UTC hour; night bottoms out at ~14 %.
_DIURNAL = (0.55, 0.38, 0.25, 0.17, 0.14, 0.15, 0.20, 0.30, 0.42, 0.52, 0.60, 0.65,
            0.70, 0.68, 0.66, 0.65, 0.66, 0.70, 0.78, 0.90, 1.00, 0.98, 0.88, 0.72)


def diurnal_factor(ts: float) -> float:
    """Traffic multiplier (0.14-1.0) for the UTC hour of ``ts``, cosine-smoothed between hours."""
    h = (ts % 86400.0) / 3600.0
    i = int(h)
    w = (1.0 - math.cos(math.pi * (h - i))) * 0.5
    return _DIURNAL[i] * (1.0 - w) + _DIURNAL[(i + 1) % 24] * w


def _cum(weights: Iterable[float]) -> list[float]:
    """Normalised cumulative weights for ``bisect_right(cum, random())``."""
    ws = list(weights)
    total = sum(ws)
    out, acc = [], 0.0
    for w in ws:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0 + 1e-9  # random() < 1 always lands inside
    return out


_CH_NAMES = tuple(CHANNELS)
_CH_CUM = _cum(v[0] for v in CHANNELS.values())
_CH_CTR = tuple(v[1] for v in CHANNELS.values())
_CH_BOUNCE = tuple(v[2] for v in CHANNELS.values())
_CH_CART = tuple(v[3] for v in CHANNELS.values())
_PD = tuple(PLATFORM_DEVICES)
_PD_CUM = _cum(PLATFORM_DEVICES.values())
_CAT_NAMES = tuple(CATEGORIES)
_CAT_CUM = _cum(v[0] for v in CATEGORIES.values())
_CAT_MU = tuple(math.log(v[1]) for v in CATEGORIES.values())
_PM_NAMES = tuple(PAYMENT_METHODS)
_PM_CUM = _cum(PAYMENT_METHODS.values())
_CUR = tuple((c, v[1]) for c, v in CURRENCIES.items())
_CUR_CUM = _cum(v[0] for v in CURRENCIES.values())
_CAR_NAMES = tuple(CARRIERS)
_CAR_CUM = _cum(v[0] for v in CARRIERS.values())
_CAR_LATE = tuple(v[1] for v in CARRIERS.values())
_CAR_EXC = tuple(v[2] for v in CARRIERS.values())
_CAR_SLA = tuple(v[3] * 3600.0 for v in CARRIERS.values())
_WH_NAMES = tuple(WAREHOUSES)
_WH_CUM = _cum(v[0] for v in WAREHOUSES.values())
_WH_MU = tuple(math.log(v[1] * 60.0) for v in WAREHOUSES.values())
_REG_NAMES = tuple(REGIONS)
_REG_CUM = _cum(REGIONS.values())
# The longest a paid order can still emit logistics events: dispatch + 2 x the longest SLA.
_LOGISTICS_SPAN = DISPATCH_MAX + 2.0 * max(_CAR_SLA)
# Paid orders per session, used to warm-start shipments in flight.
_PAID_PER_SESSION = (1.0 - P_PAYMENT_FAIL) * sum(
    s * (1.0 - b) * c * P_CHECKOUT * P_PURCHASE for s, _, b, c in CHANNELS.values()
)
# Mean non-clicking impressions per click beyond the clicked batch (mean batch size 2).
_EXTRA_IMPRESSIONS = tuple((1.0 / c - 2.0) if c else 0.0 for c in _CH_CTR)

# Pending impressions (80 % of all events) are compact tuples under this marker until emitted:
# less memory in flight and the payload dict is built right before it is consumed.
_IMPRESSION = "clicks:impression"
# An incident as the hot path checks it: (start, end, magnitude, affected items).
_Window = tuple[float, float, float, tuple[tuple[str, str], ...]]


class Simulator:
    """Seeded, reproducible generator of shop events with optional incidents and stream noise.

    ``rate``: sessions started per second at the daily peak (the diurnal curve scales it).
    ``start``: event time of the first event (epoch seconds; ``None`` = now).
    ``incidents``: what breaks when (see :mod:`shoppulse.streams.incidents`).
    ``late_fraction``: share of events emitted 5-120 s after their event-time position.
    ``duplicate_fraction``: share emitted twice (same payload and event_id, <= 5 s apart).
    ``disorder_seconds``: every event emitted up to this much after its event time.
    ``warm_logistics``: start with the shipments/cancels/refunds of earlier orders open.

    Same seed and arguments give the identical event sequence. Noise (late, duplicate,
    disorder) uses its own random stream, so adding it changes when events are emitted but
    not which events exist.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        rate: float = 200.0,
        start: float | None = None,
        incidents: Sequence[Incident] = (),
        late_fraction: float = 0.0,
        duplicate_fraction: float = 0.0,
        disorder_seconds: float = 0.0,
        warm_logistics: bool = True,
    ) -> None:
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        for name, frac in (("late_fraction", late_fraction),
                           ("duplicate_fraction", duplicate_fraction)):
            if not 0.0 <= frac <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {frac}")
        if not (math.isfinite(disorder_seconds) and disorder_seconds >= 0):
            raise ValueError(f"disorder_seconds must be >= 0, got {disorder_seconds}")
        self.seed = seed
        self.rate = float(rate)
        self.start = float(time.time() if start is None else start)
        self.late_fraction = late_fraction
        self.duplicate_fraction = duplicate_fraction
        self.disorder_seconds = disorder_seconds
        self.incidents = [self._resolve(i, inc) for i, inc in enumerate(incidents)]
        self._warm_logistics = warm_logistics

        self._rng = Random(seed)
        self._random = self._rng.random
        self._noise = Random(f"{seed}:noise").random
        self._noisy = bool(late_fraction or duplicate_fraction or disorder_seconds)
        self._by_name: dict[str, list[_Window]] = {}
        for inc in self.incidents:
            self._by_name.setdefault(inc.name, []).append(
                (inc.start, inc.end, float(inc.magnitude or 0.0),
                 tuple(inc.affected.items()))
            )
        self._inc_traffic = self._by_name.get("channel_traffic_drop", [])
        self._inc_bounce = self._by_name.get("landing_bounce_spike", [])
        self._inc_bots = self._by_name.get("bot_traffic", [])
        self._inc_checkout = self._by_name.get("checkout_conversion_drop", [])
        self._inc_payment = self._by_name.get("payment_outage", [])
        self._inc_logistics = self._by_name.get("logistics_delay", [])
        self._inc_orders = self._by_name.get("order_spike", [])
        self._inc_price = self._by_name.get("price_error", [])
        self._inc_stock = self._by_name.get("stock_out", [])
        self._inc_platform = self._by_name.get("platform_policy_change", [])
        self._inc_stall = self._by_name.get("pipeline_stall", [])

        # ids: seeded prefix + counter (uuid4 is slow and not reproducible)
        self._ep, self._en = f"e{seed}-", count()
        self._sp, self._sn = f"s{seed}-", count()
        self._ip, self._in = f"i{seed}-", count()
        self._op, self._on = f"o{seed}-", count()
        self._hp, self._hn = f"h{seed}-", count()
        self._wn = count()  # orders paid before start (warm start)
        self._vp = f"v{seed}-"

        # event-time state, relative to start: everything emitted before _now; sessions
        # generated up to _next_arrival; pending events per second of emit time as one flat
        # list [emit_rel, topic, payload, emit_rel, topic, payload, ...]
        self._now = 0.0
        self._next_arrival = 0.0
        self._diurnal_sec = -1
        self._lambda = 0.0
        self._buckets: dict[int, list[Any]] = {}
        self._warmed = False
        self._push = self._make_push()

    # ----------------------------------------------------------------- public API
    def events(self, duration: float) -> Iterator[SimEvent]:
        """The events whose event time falls in the next ``duration`` seconds (see
        :meth:`_events`), less those a ``pipeline_stall`` incident keeps from arriving."""
        if not self._inc_stall:
            return self._events(duration)
        return self._stalled(self._events(duration))

    def _stalled(self, events: Iterator[SimEvent]) -> Iterator[SimEvent]:
        stalls, noise = self._inc_stall, self._noise
        for ev in events:
            m = self._magnitude(stalls, ev.value["ts"], {"topic": ev.topic})
            if m and (m >= 1.0 or noise() < m):
                continue
            yield ev

    def _events(self, duration: float) -> Iterator[SimEvent]:
        """The events whose event time falls in the next ``duration`` seconds, in emission order.

        Emission order is event-time order except for the requested noise. The first call
        starts at ``start``; each further call continues where the previous one ended (a
        stream abandoned mid-way loses the rest of its current second). Late and duplicate
        copies of events inside the interval that would be emitted after its end are
        flushed at its end, so every call is complete for its interval. ``duration`` may be
        ``math.inf`` for an endless stream.
        """
        if not duration >= 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        if not self._warmed:
            self._warmed = True
            if self._warm_logistics:
                self._warm_start()
        buckets = self._buckets
        end = self._now + duration
        while self._now < end:
            k = int(self._now)
            stop = min(k + 1.0, end)
            self._generate(stop + LOOKAHEAD)
            bucket = buckets.pop(k, None)
            self._now = stop
            if bucket is None:
                continue
            em, tp, ob = bucket[0::3], bucket[1::3], bucket[2::3]
            order = sorted(range(len(em)), key=em.__getitem__)
            if stop < k + 1.0:  # partial slice: hold back what is due after the end
                keep = [i for i in order if em[i] >= stop]
                if keep:
                    order = [i for i in order if em[i] < stop]
                    buckets[k] = [x for i in keep for x in (em[i], tp[i], ob[i])]
            for i in order:  # runs once per event: keep it inline
                topic = tp[i]
                obj = ob[i]
                if topic is _IMPRESSION:
                    _, ts, eid, sid, vid, channel, platform, device, category = obj
                    yield SimEvent("clicks", sid, {
                        "event_id": eid, "ts": ts, "session_id": sid, "visitor_id": vid,
                        "event_type": "impression", "channel": channel, "platform": platform,
                        "device": device, "category": category})
                elif topic == "clicks":
                    yield SimEvent(topic, obj["session_id"], obj)
                elif topic == "orders":
                    yield SimEvent(topic, obj["order_id"], obj)
                else:
                    yield _logistics_event(obj)
        if math.isfinite(end) and self._noisy:
            yield from self._flush(self.start + end)

    def ground_truth(self) -> list[dict[str, Any]]:
        """One record per incident: scenario, start, end, magnitude, affected dimensions."""
        return [inc.ground_truth() for inc in self.incidents]

    # ------------------------------------------------------------------ plumbing
    def _resolve(self, index: int, inc: Incident) -> Incident:
        """Check ``affected`` values and pick one deterministically from the seed if empty."""
        for dim, value in inc.affected.items():
            if value not in DIMENSION_VALUES[dim]:
                raise ValueError(
                    f"{inc.name}: unknown {dim} {value!r}; known: "
                    f"{', '.join(DIMENSION_VALUES[dim])}"
                )
        pick = SCENARIOS[inc.name].pick
        if inc.affected or not pick:
            return inc
        choices = [(d, v) for d in pick
                   for v in _PICK_VALUES.get((inc.name, d), DIMENSION_VALUES[d])]
        dim, value = Random(f"{self.seed}:{index}:{inc.name}").choice(choices)
        return replace(inc, affected={dim: value})

    def _make_push(self) -> Callable[[float, str, Any], None]:
        """``push(ts, topic, payload)``: schedule a payload dict or compact tuple for ``ts``.

        Pending events are plain values in one flat list per second of emission time: payload
        dicts of plain values are not tracked by the garbage collector, which otherwise
        dominated the run time. A closure, because this runs once per event.
        """
        start = self.start
        buckets = self._buckets
        get = buckets.get

        def push(ts: float, topic: str, obj: Any) -> None:
            emit = ts - start
            if emit < 0.0:  # before the simulation (impressions of the first sessions)
                return
            k = int(emit)
            b = get(k)
            if b is None:
                buckets[k] = [emit, topic, obj]
            else:
                b += (emit, topic, obj)

        if not self._noisy:
            return push
        noise = self._noise
        disorder, late, dup = self.disorder_seconds, self.late_fraction, self.duplicate_fraction
        put = self._put

        def push_noisy(ts: float, topic: str, obj: Any) -> None:
            """``push`` with late, duplicate and disordered emission (own random stream)."""
            emit = ts - start
            if emit < 0.0:
                return
            if disorder:
                emit += noise() * disorder
            if late and noise() < late:
                emit += 5.0 + (MAX_LATE - 5.0) * noise()
            now = self._now
            if dup and noise() < dup:
                copy = obj if type(obj) is tuple else dict(obj)
                put(max(emit + noise() * DUPLICATE_DELAY, now), topic, copy)
            put(emit if emit > now else now, topic, obj)

        return push_noisy

    def _put(self, emit: float, topic: str, obj: Any) -> None:
        k = int(emit)
        b = self._buckets.get(k)
        if b is None:
            self._buckets[k] = [emit, topic, obj]
        else:
            b += (emit, topic, obj)

    def _flush(self, end_ts: float) -> Iterator[SimEvent]:
        """Emit now the late/duplicate copies of events before ``end_ts`` due after it."""
        out: list[Any] = []
        horizon = end_ts - self.start + self.disorder_seconds + MAX_LATE + DUPLICATE_DELAY
        for k in range(int(self._now), int(horizon) + 2):
            bucket = self._buckets.get(k)
            if bucket is None:
                continue
            keep: list[Any] = []
            for j in range(0, len(bucket), 3):
                obj = bucket[j + 2]
                ts = obj["ts"] if type(obj) is dict else obj[1]
                (out if ts < end_ts else keep).extend(bucket[j:j + 3])
            if keep:
                self._buckets[k] = keep
            else:
                del self._buckets[k]
        em, tp, ob = out[0::3], out[1::3], out[2::3]
        for i in sorted(range(len(em)), key=em.__getitem__):
            topic, obj = tp[i], ob[i]
            if topic == "logistics":
                yield _logistics_event(obj)
            elif topic is _IMPRESSION:
                _, ts, eid, sid, vid, channel, platform, device, category = obj
                yield SimEvent("clicks", sid, {
                    "event_id": eid, "ts": ts, "session_id": sid, "visitor_id": vid,
                    "event_type": "impression", "channel": channel, "platform": platform,
                    "device": device, "category": category})
            else:
                yield SimEvent(topic, obj["session_id" if topic == "clicks" else "order_id"],
                               obj)

    @staticmethod
    def _magnitude(incs: list[_Window], ts: float, dims: dict[str, str]) -> float:
        """Largest magnitude of the incidents active at ``ts`` whose affected dims match."""
        best = 0.0
        for start, end, mag, affected in incs:
            if start <= ts < end and mag > best:
                for k, v in affected:
                    if dims.get(k) != v:
                        break
                else:
                    best = mag
        return best

    # ---------------------------------------------------------------- generation
    def _generate(self, until_rel: float) -> None:
        """Create every session arriving before ``until_rel`` (seconds after start)."""
        if self.rate <= 0:
            return
        rnd = self._random
        start = self.start
        t = self._next_arrival
        while t < until_rel:
            sec = int(t)
            if sec != self._diurnal_sec:
                self._diurnal_sec = sec
                self._lambda = self.rate * diurnal_factor(start + sec)
            self._arrival(start + t)
            t -= math.log(1.0 - rnd()) / self._lambda
        self._next_arrival = t

    def _arrival(self, a: float) -> None:
        """One visitor arrives at ``a``: choose dimensions, apply traffic incidents."""
        rnd = self._random
        ci = bisect_right(_CH_CUM, rnd())
        platform, device = _PD[bisect_right(_PD_CUM, rnd())]
        cat = bisect_right(_CAT_CUM, rnd())
        dims = None
        if self._inc_bots or self._inc_orders or self._inc_traffic or self._inc_platform:
            dims = {"channel": _CH_NAMES[ci], "platform": platform, "device": device,
                    "category": _CAT_NAMES[cat]}
            if self._inc_bots:
                m = self._magnitude(self._inc_bots, a, dims)
                if m:
                    for _ in range(int(m + rnd())):
                        self._bot_session(a + rnd(), ci)
            if self._inc_orders:
                m = self._magnitude(self._inc_orders, a, dims)
                if m:
                    for _ in range(int(m * _PAID_PER_SESSION + rnd())):
                        self._fraud_order(a + rnd(), dims)
            for incs in (self._inc_traffic, self._inc_platform):
                m = self._magnitude(incs, a, dims) if incs else 0.0
                if m and rnd() < m:
                    return
        self._session(a, ci, platform, device, cat)

    def _session(self, a: float, ci: int, platform: str, device: str, cat: int) -> None:
        """All click events of one visit arriving (landing) at ``a``."""
        rnd = self._random
        push = self._push
        ep, en = self._ep, self._en
        channel = _CH_NAMES[ci]
        category = _CAT_NAMES[cat]
        sid = f"{self._sp}{next(self._sn)}"
        vid = f"{self._vp}{int(rnd() * VISITOR_POOL)}"
        if _CH_CTR[ci]:
            self._impressions(a, ci, category)
            for _ in range(1 + int(rnd() * 3)):
                ts = a - 1.5 - rnd() * 24.0
                push(ts, _IMPRESSION, ("impression", ts, f"{ep}{next(en)}", sid, vid, channel,
                                       platform, device, category))
            ts = a - 0.2 - rnd()
            push(ts, "clicks", {
                "event_id": f"{ep}{next(en)}", "ts": ts, "session_id": sid,
                "visitor_id": vid, "event_type": "click", "channel": channel,
                "platform": platform, "device": device, "category": category})
        r = rnd()
        page = "/" if r < 0.3 else (f"/c/{category}" if r < 0.6 else
                                    f"/p/{cat}{int(rnd() * 5000):04d}")
        push(a, "clicks", {
            "event_id": f"{ep}{next(en)}", "ts": a, "session_id": sid, "visitor_id": vid,
            "event_type": "landing_view", "channel": channel, "platform": platform,
            "device": device, "category": category, "page": page})

        bounce = _CH_BOUNCE[ci]
        dims = None
        if self._inc_bounce:
            dims = {"channel": channel, "platform": platform, "device": device,
                    "category": category}
            m = self._magnitude(self._inc_bounce, a, dims)
            if m:
                bounce = min(0.98, bounce + m)
        if rnd() < bounce:
            return

        # engaged: the second event within 30 s, more over the next minutes
        t = a + 1.5 + rnd() * 23.0
        for _ in range(1 + int(-math.log(1.0 - rnd()) * 2.5)):
            pid = f"p{cat}{int(rnd() * 5000):04d}"
            push(t, "clicks", {
                "event_id": f"{ep}{next(en)}", "ts": t, "session_id": sid, "visitor_id": vid,
                "event_type": "page_view", "channel": channel, "platform": platform,
                "device": device, "category": category, "page": f"/p/{pid}",
                "product_id": pid})
            t += 3.0 + min(-math.log(1.0 - rnd()) * 20.0, 600.0)

        cart = _CH_CART[ci]
        if self._inc_stock or self._inc_price:
            dims = dims or {"channel": channel, "platform": platform, "device": device,
                            "category": category}
            cart *= 1.0 - self._magnitude(self._inc_stock, t, dims)
            cart *= 1.0 + 3.0 * self._magnitude(self._inc_price, t, dims)
        if rnd() >= cart:
            return
        pid = f"p{cat}{int(rnd() * 5000):04d}"
        push(t, "clicks", {
            "event_id": f"{ep}{next(en)}", "ts": t, "session_id": sid, "visitor_id": vid,
            "event_type": "add_to_cart", "channel": channel, "platform": platform,
            "device": device, "category": category, "page": f"/p/{pid}", "product_id": pid})
        if rnd() >= P_CHECKOUT:
            return
        t += 10.0 + rnd() * 80.0
        push(t, "clicks", {
            "event_id": f"{ep}{next(en)}", "ts": t, "session_id": sid, "visitor_id": vid,
            "event_type": "checkout", "channel": channel, "platform": platform,
            "device": device, "category": category, "page": "/checkout"})
        p = P_PURCHASE
        if self._inc_checkout:
            dims = dims or {"channel": channel, "platform": platform, "device": device,
                            "category": category}
            p *= 1.0 - self._magnitude(self._inc_checkout, t, dims)
        if rnd() >= p:
            return
        t += 15.0 + rnd() * 100.0
        push(t, "clicks", {
            "event_id": f"{ep}{next(en)}", "ts": t, "session_id": sid, "visitor_id": vid,
            "event_type": "purchase", "channel": channel, "platform": platform,
            "device": device, "category": category, "page": "/checkout/complete"})
        self._order(t, sid, vid, channel, platform, device, cat)

    def _impressions(self, a: float, ci: int, category: str) -> None:
        """Impressions that did not lead to this click: batches with their own session ids."""
        rnd = self._random
        push = self._push
        ep, en = self._ep, self._en
        channel = _CH_NAMES[ci]
        left = int(_EXTRA_IMPRESSIONS[ci] + rnd())
        while left > 0:
            n = min(left, 1 + int(rnd() * 4))
            left -= n
            sid = f"{self._ip}{next(self._in)}"
            vid = f"{self._vp}{int(rnd() * VISITOR_POOL)}"
            platform, device = _PD[bisect_right(_PD_CUM, rnd())]
            t0 = a - 20.0 + rnd() * 40.0
            for j in range(n):
                ts = t0 + j * 3.0 * rnd()
                push(ts, _IMPRESSION, ("impression", ts, f"{ep}{next(en)}", sid, vid, channel,
                                       platform, device, category))

    def _bot_session(self, a: float, ci: int) -> None:
        """Invalid traffic: (impression, click,) landing, nothing else - bounces, never buys."""
        rnd = self._random
        push = self._push
        ep, en = self._ep, self._en
        channel = _CH_NAMES[ci]
        affected = next((aff for s, e, _, aff in self._inc_bots if s <= a < e), ())
        platform = dict(affected).get("platform", "web")
        device = "desktop" if platform == "web" else "mobile"
        sid = f"{self._sp}{next(self._sn)}"
        vid = f"{self._vp}b{int(rnd() * BOT_POOL)}"
        base = {"session_id": sid, "visitor_id": vid, "channel": channel,
                "platform": platform, "device": device}
        if _CH_CTR[ci]:
            ts = a - 1.0 - rnd()
            push(ts, "clicks", {"event_id": f"{ep}{next(en)}", "ts": ts,
                                "event_type": "impression", **base})
            ts = a - 0.1 - rnd() * 0.4
            push(ts, "clicks", {"event_id": f"{ep}{next(en)}", "ts": ts,
                                "event_type": "click", **base})
        push(a, "clicks", {"event_id": f"{ep}{next(en)}", "ts": a,
                           "event_type": "landing_view", "page": "/", **base})

    def _fraud_order(self, a: float, dims: dict[str, str]) -> None:
        """An order-spike order: no click session, few visitors, big baskets."""
        vid = f"{self._vp}f{int(self._random() * FRAUD_POOL)}"
        cat = _CAT_NAMES.index(dims["category"])
        self._order(a, None, vid, dims["channel"], dims["platform"], dims["device"], cat,
                    amount_factor=3.0, fail_p=0.15)

    def _order_fields(self, oid: str, t: float, sid: str | None, vid: str, channel: str,
                      platform: str, device: str, cat: int,
                      amount_factor: float = 1.0) -> dict[str, Any]:
        """The fields every orders event of one order repeats (schema: all required)."""
        rnd = self._random
        category = _CAT_NAMES[cat]
        currency, fx = _CUR[bisect_right(_CUR_CUM, rnd())]
        method = _PM_NAMES[bisect_right(_PM_CUM, rnd())]
        amount = math.exp(_CAT_MU[cat] + AMOUNT_SIGMA * self._rng.gauss(0.0, 1.0))
        amount *= amount_factor * fx
        if self._inc_price:
            amount *= 1.0 - self._magnitude(self._inc_price, t, {"category": category})
        base = {"order_id": oid, "visitor_id": vid, "channel": channel, "platform": platform,
                "device": device, "category": category,
                "amount": min(round(amount, 2), 10_000_000.0), "currency": currency,
                "payment_method": method}
        if sid is not None:
            base["session_id"] = sid
        return base

    def _order(self, t: float, sid: str | None, vid: str, channel: str, platform: str,
               device: str, cat: int, *, amount_factor: float = 1.0,
               fail_p: float = P_PAYMENT_FAIL) -> None:
        """Orders topic events of one purchase placed at ``t``, and its shipment."""
        rnd = self._random
        push = self._push
        ep, en = self._ep, self._en
        oid = f"{self._op}{next(self._on)}"
        base = self._order_fields(oid, t, sid, vid, channel, platform, device, cat,
                                  amount_factor)
        push(t, "orders", {"event_id": f"{ep}{next(en)}", "ts": t, "event_type": "placed",
                           **base})
        t += 1.0 + rnd() * 14.0
        if self._inc_payment:
            fail_p += (1.0 - fail_p) * self._magnitude(self._inc_payment, t, base)
        if rnd() < fail_p:
            push(t, "orders", {"event_id": f"{ep}{next(en)}", "ts": t,
                               "event_type": "payment_failed", **base})
            return
        push(t, "orders", {"event_id": f"{ep}{next(en)}", "ts": t, "event_type": "paid",
                           **base})
        wh = bisect_right(_WH_CUM, rnd())
        dispatch = self._dispatch(wh)
        r = rnd()
        if r < P_CANCEL:
            ts = t + dispatch * (0.1 + 0.8 * rnd())
            push(ts, "orders", {"event_id": f"{ep}{next(en)}", "ts": ts,
                                "event_type": "cancelled", **base})
            return
        done = self._ship(oid, t, wh, dispatch, bisect_right(_CAR_CUM, rnd()))
        if r < P_CANCEL + P_REFUND:
            ts = done + REFUND_DELAY_MIN + rnd() * (REFUND_DELAY_MAX - REFUND_DELAY_MIN)
            push(ts, "orders", {"event_id": f"{ep}{next(en)}", "ts": ts,
                                "event_type": "refunded", **base})

    def _dispatch(self, wh: int) -> float:
        """Paid -> shipped latency of warehouse ``wh`` (lognormal, 10 min - 6 h)."""
        d = math.exp(_WH_MU[wh] + DISPATCH_SIGMA * self._rng.gauss(0.0, 1.0))
        return DISPATCH_MIN if d < DISPATCH_MIN else (DISPATCH_MAX if d > DISPATCH_MAX else d)

    def _ship(self, oid: str | None, paid: float, wh: int, dispatch: float, ci: int,
              floor: float | None = None) -> float:
        """Logistics events of one paid order shipped by carrier ``ci``; returns delivery time.

        Lateness is decided at the moment the delivery falls due, so a carrier incident
        shows as delays inside its interval. With a ``floor`` (warm start) events before it
        are not emitted and ``oid`` None means "make one up if anything is left to emit".
        Events are lazy tuples, built into dicts when emitted.
        """
        rnd = self._random
        region = _REG_NAMES[bisect_right(_REG_CUM, rnd())]
        carrier, warehouse = _CAR_NAMES[ci], _WH_NAMES[wh]
        sla = _CAR_SLA[ci]
        shipped = paid + dispatch
        promised = shipped + sla
        due = shipped + sla * (0.35 + 0.65 * rnd())
        late, exc = _CAR_LATE[ci], _CAR_EXC[ci]
        if self._inc_logistics:
            m = self._magnitude(self._inc_logistics, due,
                                {"carrier": carrier, "warehouse": warehouse, "region": region})
            late += (1.0 - late) * m
        r = rnd()
        if r < exc:
            notice, delivered = "exception", promised + sla * (0.2 + 0.8 * rnd())
        elif r < exc + late:
            notice, delivered = "delayed", promised + sla * (0.1 + 0.9 * rnd())
        else:
            notice, delivered = None, due
        if floor is not None and delivered < floor:
            return delivered
        if oid is None:
            oid = f"{self._op}w{next(self._wn)}"
        shp = f"{self._hp}{next(self._hn)}"
        ep, en, push = self._ep, self._en, self._push
        if floor is None or shipped >= floor:
            push(shipped, "logistics", ("shipped", shipped, f"{ep}{next(en)}", shp, oid,
                                        carrier, warehouse, region, paid))
        if notice and (floor is None or due >= floor):
            push(due, "logistics", (notice, due, f"{ep}{next(en)}", shp, oid, carrier,
                                    warehouse, region, promised))
        push(delivered, "logistics", ("delivered", delivered, f"{ep}{next(en)}", shp,
                                      oid, carrier, warehouse, region, promised))
        return delivered

    def _warm_start(self) -> None:
        """Shipments, cancels, refunds of orders paid before ``start`` still open at ``start``.

        Orders are drawn over the longest logistics span before ``start`` (and, thinned to
        the refunded ones, over the refund delay before that); a cheap test on dispatch and
        carrier SLA discards those certainly closed before ``start``. Their orders-topic
        history before ``start`` is not emitted, as if the stream was joined mid-flight.
        """
        if self.rate <= 0:
            return
        rnd = self._random
        gauss = self._rng.gauss
        log, exp = math.log, math.exp
        start = self.start
        refunds_only = start - _LOGISTICS_SPAN
        t = refunds_only - REFUND_DELAY_MAX
        lam_sec, lam = -1, 0.0
        rate = self.rate * _PAID_PER_SESSION
        while True:
            sec = int(t)
            if sec != lam_sec:
                lam_sec, lam = sec, rate * diurnal_factor(sec)
                if t < refunds_only:
                    lam *= P_REFUND
            t -= log(1.0 - rnd()) / lam
            if t >= start:
                break
            # r in [0, P_CANCEL): cancelled; then P_REFUND: refunded; else shipped only
            r = P_CANCEL if t < refunds_only else rnd()
            wh = bisect_right(_WH_CUM, rnd())
            ci = bisect_right(_CAR_CUM, rnd())
            d = exp(_WH_MU[wh] + DISPATCH_SIGMA * gauss(0.0, 1.0))
            d = DISPATCH_MIN if d < DISPATCH_MIN else (DISPATCH_MAX if d > DISPATCH_MAX else d)
            if r >= P_CANCEL + P_REFUND:
                if t + d + 2.0 * _CAR_SLA[ci] >= start:  # else certainly delivered already
                    self._ship(None, t, wh, d, ci, start)
                continue
            if r < P_CANCEL:
                ts = t + d * (0.1 + 0.8 * rnd())
                kind = "cancelled"
            elif t + d + 2.0 * _CAR_SLA[ci] + REFUND_DELAY_MAX < start:
                continue
            else:
                kind = "refunded"
            oid = f"{self._op}w{next(self._wn)}"
            if kind == "refunded":
                done = self._ship(oid, t, wh, d, ci, start)
                ts = done + REFUND_DELAY_MIN + rnd() * (REFUND_DELAY_MAX - REFUND_DELAY_MIN)
            if ts < start:
                continue
            platform, device = _PD[bisect_right(_PD_CUM, rnd())]
            base = self._order_fields(
                oid, t, None, f"{self._vp}{int(rnd() * VISITOR_POOL)}",
                _CH_NAMES[bisect_right(_CH_CUM, rnd())], platform, device,
                bisect_right(_CAT_CUM, rnd()))
            self._push(ts, "orders", {"event_id": f"{self._ep}{next(self._en)}", "ts": ts,
                                      "event_type": kind, **base})


def _logistics_event(obj: tuple[Any, ...]) -> SimEvent:
    """Build a lazily stored logistics event (kept as a tuple while hours ahead)."""
    kind, ts, eid, shp, oid, carrier, wh, region, extra = obj
    value = {"event_id": eid, "ts": ts, "shipment_id": shp, "order_id": oid,
             "event_type": kind, "carrier": carrier, "warehouse": wh, "region": region,
             "paid_ts" if kind == "shipped" else "promised_ts": extra}
    return SimEvent("logistics", oid, value)


# ------------------------------------------------------------------------ JSON lines
def write_jsonl(events: Iterable[SimEvent], path: str | Path) -> int:
    """Write ``{"topic", "key", "value"}`` lines (the replay format); returns the count."""
    n = 0
    with open(path, "wb") as f:
        buf: list[bytes] = []
        for ev in events:
            buf.append(orjson.dumps({"topic": ev.topic, "key": ev.key, "value": ev.value}))
            n += 1
            if len(buf) >= 4096:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    return n


def read_jsonl(path: str | Path) -> Iterator[SimEvent]:
    """Read what :func:`write_jsonl` wrote, lazily (files may hold days of events)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                d = orjson.loads(line)
                yield SimEvent(d["topic"], d["key"], d["value"])


def write_ground_truth(sim: Simulator, path: str | Path) -> None:
    """One JSON line per incident of ``sim`` (what benchmarks and drills score against)."""
    with open(path, "wb") as f:
        for rec in sim.ground_truth():
            f.write(orjson.dumps(rec) + b"\n")
