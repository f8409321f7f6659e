"""Incident scenarios the simulator can inject, and the CLI syntax that names them.

Why: detectors, alert rules, playbooks and drills are only testable against a stream whose
truth is known. An :class:`Incident` says *what* breaks (a scenario from :data:`SCENARIOS`),
*when* (event time), *how badly* (magnitude) and *where* (``affected`` dimensions); the
simulator turns it into events and reports it back as ground truth.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Scenario:
    """What one scenario does and which magnitudes make sense for it.

    ``dims`` are the dimensions ``affected`` may name; ``pick`` the dimension(s) the simulator
    chooses one value from (deterministically from its seed) when ``affected`` is empty, so a
    scenario such as a channel traffic drop always hits one concrete channel.
    """

    name: str
    default_magnitude: float
    min_magnitude: float
    max_magnitude: float
    dims: tuple[str, ...]
    pick: tuple[str, ...]
    doc: str


_SESSION_DIMS = ("channel", "platform", "device", "category")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "payment_outage", 0.6, 0.3, 1.0, (*_SESSION_DIMS, "payment_method"), (),
            "Payment provider failing: magnitude = fraction of otherwise successful payments "
            "that fail (success rate 97 % -> ~39 % at 0.6). Global unless affected narrows it.",
        ),
        Scenario(
            "checkout_conversion_drop", 0.7, 0.4, 1.0, _SESSION_DIMS, (),
            "Broken checkout: checkout -> purchase probability falls by magnitude fraction "
            "(decided at the checkout event's time). Global unless affected narrows it.",
        ),
        Scenario(
            "landing_bounce_spike", 0.5, 0.25, 1.0, ("channel", "platform", "device"),
            ("channel", "platform"),
            "Broken landing page: bounce rate of one channel or platform rises by magnitude "
            "(0.5 = +50 points), capped at 98 %.",
        ),
        Scenario(
            "channel_traffic_drop", 0.8, 0.5, 1.0, ("channel", "platform", "device"),
            ("channel",),
            "Campaign paused / tracking lost: sessions (and their impressions) of one channel "
            "drop by magnitude fraction.",
        ),
        Scenario(
            "bot_traffic", 3.0, 1.0, 50.0, ("channel", "platform"), ("channel",),
            "Invalid traffic: extra sessions from one channel at magnitude x its normal rate, "
            "clicking ads and bouncing ~100 %, never converting.",
        ),
        Scenario(
            "logistics_delay", 0.6, 0.3, 1.0, ("carrier", "warehouse", "region"), ("carrier",),
            "Carrier strike / hub jam: fraction magnitude of one carrier's otherwise on-time "
            "deliveries that fall due in the interval turn into delays (late deliveries).",
        ),
        Scenario(
            "order_spike", 3.0, 1.5, 50.0, ("channel", "platform", "device", "category"), (),
            "Fraud / order flood: extra orders at magnitude x the normal order rate from a small "
            "pool of visitors, without click sessions, high amounts, weaker payment success.",
        ),
        Scenario(
            "price_error", 0.9, 0.5, 0.99, ("category",), ("category",),
            "Mispriced catalogue: one category's amounts cut by magnitude fraction, and its "
            "add-to-cart rate multiplied by (1 + 3 x magnitude).",
        ),
        Scenario(
            "stock_out", 0.9, 0.6, 1.0, ("category",), ("category",),
            "Out of stock: one category's add-to-cart rate falls by magnitude fraction.",
        ),
        Scenario(
            "platform_policy_change", 0.7, 0.4, 1.0, ("platform", "channel"), ("platform",),
            "App-store or marketplace policy change (delisting, tracking consent): sessions "
            "from one platform drop by magnitude fraction.",
        ),
        Scenario(
            "pipeline_stall", 1.0, 0.5, 1.0, ("topic",), ("topic",),
            "A producer or its pipeline stalls: magnitude fraction of one topic's events in "
            "the interval never arrive.",
        ),
    )
}

#: The smallest magnitude per scenario that the detector benchmark claims to catch.
MIN_MAGNITUDE: dict[str, float] = {name: s.min_magnitude for name, s in SCENARIOS.items()}

SPEC_SYNTAX = "NAME@START+DURATION[:MAGNITUDE][/DIM=VALUE[,DIM=VALUE...]]"


@dataclass(frozen=True)
class Incident:
    """One injected failure: scenario ``name`` active in event time [start, start+duration).

    ``magnitude`` defaults to the scenario's default; ``affected`` may be left empty for the
    simulator to fill (see :attr:`Scenario.pick`).
    """

    name: str
    start: float
    duration: float
    magnitude: float | None = None
    affected: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scenario = SCENARIOS.get(self.name)
        if scenario is None:
            raise ValueError(
                f"unknown incident scenario {self.name!r}; known: {', '.join(SCENARIOS)}"
            )
        if not (math.isfinite(self.start) and math.isfinite(self.duration)):
            raise ValueError(f"{self.name}: start and duration must be finite numbers")
        if self.duration <= 0:
            raise ValueError(f"{self.name}: duration must be > 0, got {self.duration}")
        magnitude = scenario.default_magnitude if self.magnitude is None else self.magnitude
        if not (0 < magnitude <= scenario.max_magnitude):
            raise ValueError(
                f"{self.name}: magnitude {magnitude} out of range (0, {scenario.max_magnitude}]"
            )
        object.__setattr__(self, "magnitude", float(magnitude))
        bad = [k for k in self.affected if k not in scenario.dims]
        if bad:
            raise ValueError(
                f"{self.name}: cannot affect dimension(s) {', '.join(bad)}; "
                f"allowed: {', '.join(scenario.dims)}"
            )
        object.__setattr__(self, "affected", {str(k): str(v) for k, v in self.affected.items()})

    @property
    def end(self) -> float:
        return self.start + self.duration

    def ground_truth(self) -> dict[str, Any]:
        """The record a benchmark or drill compares detections against."""
        return {
            "scenario": self.name,
            "start": self.start,
            "end": self.end,
            "magnitude": self.magnitude,
            "affected": dict(self.affected),
        }


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in ``60s``, ``5m``, ``2h``, ``1h30m``, ``1.5d`` or a bare number of seconds."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        value = float(s)
    except ValueError:
        pos, value = 0, 0.0
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s):
            raise ValueError(f"bad duration {text!r}: expected e.g. 60s, 5m, 2h, 1h30m") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad duration {text!r}: must be a finite number >= 0")
    return value


def parse_incident(spec: str, *, origin: float) -> Incident:
    """Parse ``NAME@START+DURATION[:MAGNITUDE][/DIM=VALUE,...]`` relative to ``origin``.

    START and DURATION are durations (``60s``, ``5m``, ``2h``) after the simulation start.
    """

    def fail(what: str) -> ValueError:
        return ValueError(f"bad incident spec {spec!r}: {what} (expected {SPEC_SYNTAX})")

    text = spec.strip()
    name, at, rest = text.partition("@")
    name = name.strip()
    if not at:
        raise fail("missing '@START'")
    if not name:
        raise fail("missing NAME before '@'")
    if name not in SCENARIOS:
        raise fail(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    rest, slash, dims_text = rest.partition("/")
    affected: dict[str, str] = {}
    if slash:
        for item in dims_text.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise fail(f"bad DIM=VALUE {item!r}")
            affected[key.strip()] = value.strip()
    rest, colon, mag_text = rest.partition(":")
    start_text, plus, dur_text = rest.partition("+")
    if not plus:
        raise fail("missing '+DURATION' after START")
    try:
        start = parse_duration(start_text)
    except ValueError as exc:
        raise fail(f"START {start_text!r}: {exc}") from None
    try:
        duration = parse_duration(dur_text)
    except ValueError as exc:
        raise fail(f"DURATION {dur_text!r}: {exc}") from None
    if duration <= 0:
        raise fail(f"DURATION {dur_text!r} must be > 0")
    magnitude: float | None = None
    if colon:
        try:
            magnitude = float(mag_text)
        except ValueError:
            raise fail(f"MAGNITUDE {mag_text!r} is not a number") from None
        if not math.isfinite(magnitude):
            raise fail(f"MAGNITUDE {mag_text!r} is not a finite number")
    try:
        return Incident(name, origin + start, duration, magnitude, affected)
    except ValueError as exc:
        raise fail(str(exc)) from None
