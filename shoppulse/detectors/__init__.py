"""Online anomaly detectors for metric series: one model per series, plain code.

Every detector has the same shape: ``update(ts, value, *, numerator=None,
denominator=None) -> Verdict`` scores the point first, then learns from it. Build one with
:func:`make_detector`; the kinds are listed in :data:`DETECTOR_KINDS`:

``default``
    seasonal forecast judged under the metric's family (counts quasi-Poisson, ratios
    quasi-binomial, sums, averages, robust real values), minimum effect, likelihood-ratio
    CUSUM, alarm episodes with a cool-down, protected learning — what the pipeline uses.
``forecast``
    the same seasonal forecast with the robust real-valued residual (value only).
``quantile``
    rolling median and inter-quantile range of the last hour (no seasonality).
``gaussian``, ``hst``
    River's ``GaussianScorer`` and ``HalfSpaceTrees`` on the value alone, kept as the
    benchmark baselines.
``river.anomaly.<Name>``
    any River anomaly detector (:data:`RIVER_KINDS`) with time-of-day features, built
    from its dotted name and ``params`` (:mod:`~shoppulse.detectors.riverwrap`).

Every detector is a River ``AnomalyDetector`` (``learn_one`` / ``score_one``), with the
ratio-aware one-pass ``update`` on top.

Shared rules (see :mod:`~shoppulse.detectors.base`): ``ts`` is the window start;
a point with a missing/NaN/inf ``ts`` or value is not judged and not learned (score 0,
not anomalous, no band, ``warming_up`` unchanged); the first ``warmup`` seconds of valid
points (default 1 800 s, at least 8 points; the cadence is read from the timestamps) are
``warming_up=True`` and never anomalous. The seasonal kinds forecast from the recent
level until each slot of the day has 0.8 day of data, then from the daily profile: they
are usable after the warm-up and sharper after a day, at any cadence.

Models are pickled (plain attributes). Store :data:`FORMAT_VERSION` beside the bytes, or
use :func:`dump_detector` / :func:`load_detector`, and rebuild on mismatch.

>>> det = make_detector("default", window=60)
>>> v = det.update(0.0, 12.0)
>>> v.warming_up, v.anomalous, v.detector
(True, False, 'default')
>>> load_detector(dump_detector(det)).update(60.0, 11.0) == det.update(60.0, 11.0)
True
"""

from __future__ import annotations

import pickle
from typing import Any

from shoppulse.detectors.base import Detector
from shoppulse.detectors.default import DefaultDetector
from shoppulse.detectors.forecast import ForecastDetector
from shoppulse.detectors.gaussian import GaussianDetector
from shoppulse.detectors.hst import HSTDetector
from shoppulse.detectors.quantile import QuantileDetector
from shoppulse.detectors.riverwrap import PREFIX, RiverDetector, river_anomaly_names

__all__ = [
    "DETECTOR_KINDS",
    "FORMAT_VERSION",
    "RIVER_KINDS",
    "DefaultDetector",
    "Detector",
    "ForecastDetector",
    "GaussianDetector",
    "HSTDetector",
    "ModelFormatError",
    "QuantileDetector",
    "RiverDetector",
    "dump_detector",
    "load_detector",
    "make_detector",
]

FORMAT_VERSION = 5
"""Version of the pickled-model format; bump on any change to a detector's attributes."""

DETECTOR_KINDS: dict[str, type[Detector]] = {
    "default": DefaultDetector,
    "forecast": ForecastDetector,
    "quantile": QuantileDetector,
    "gaussian": GaussianDetector,
    "hst": HSTDetector,
}
"""The built-in kinds."""

RIVER_KINDS: list[str] = river_anomaly_names()
"""Dotted names of the River anomaly detectors ``make_detector`` accepts as ``kind``."""


class ModelFormatError(ValueError):
    """Stored model bytes that cannot be used: wrong version or unreadable. Rebuild."""


def make_detector(kind: str = "default", **params: Any) -> Detector:
    """A fresh detector of ``kind`` with ``params`` (see each class for its parameters).

    ``kind`` is a built-in name or ``river.anomaly.<Name>`` (then ``params`` may hold the
    River model's own ``params`` dict). Unknown kinds raise ``ValueError``.
    """
    if kind.startswith("river."):
        if not kind.startswith(PREFIX):
            raise ValueError(f"detector kind {kind!r}: only river.anomaly.* models are allowed")
        return RiverDetector(model=kind, **params)
    try:
        cls = DETECTOR_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown detector kind {kind!r}; expected one of {sorted(DETECTOR_KINDS)} "
            "or river.anomaly.<Name>"
        ) from None
    return cls(**params)


_MAGIC = b"SPD"


def dump_detector(detector: Detector) -> bytes:
    """Pickle ``detector`` behind a 4-byte header carrying :data:`FORMAT_VERSION`."""
    return _MAGIC + bytes([FORMAT_VERSION]) + pickle.dumps(detector, protocol=5)


def load_detector(data: bytes) -> Detector:
    """Inverse of :func:`dump_detector`; raises :class:`ModelFormatError` if unusable."""
    if len(data) < 4 or data[:3] != _MAGIC:
        raise ModelFormatError("not a shoppulse detector model")
    if data[3] != FORMAT_VERSION:
        raise ModelFormatError(f"model format {data[3]}, expected {FORMAT_VERSION}")
    try:
        obj = pickle.loads(data[4:])
    except Exception as exc:  # any unpickling failure means "rebuild"
        raise ModelFormatError(f"cannot unpickle model: {exc}") from exc
    if not isinstance(obj, Detector):
        raise ModelFormatError(f"not a detector: {type(obj).__name__}")
    return obj
