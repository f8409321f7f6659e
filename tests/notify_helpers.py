"""Builders shared by the notifier tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.streams.notifiers_config import ReceiverSpec
from shoppulse.streams.records import Alert

T0 = 1_767_254_400.0


def alert(i: int = 0, state: str = "firing", *, episode: int = 1, rule: str = "payment_drop",
          severity: str = "critical", labels: dict[str, str] | None = None,
          value: float = 0.41) -> Alert:
    labels = labels if labels is not None else {"metric": "payment_success", "series": f"s{i}"}
    return Alert(fingerprint=fingerprint(rule, labels), episode=episode, state=state, rule=rule,
                 severity=severity, labels=labels, starts_at=T0 + 60,
                 ends_at=T0 + 600 if state == "resolved" else None,
                 at=T0 + (600 if state == "resolved" else 60), value=value, peak=0.2,
                 expected=0.93, lower=0.88, upper=0.97, score=0.99,
                 annotations={"summary": "payment success dropped",
                              "runbook_url": "https://runbooks.example/payments"})


def spec(type: str = "webhook", url: str | None = None, **kw: Any) -> ReceiverSpec:
    """Fast timers for tests (Alertmanager's defaults are 30 s / 5 m / 4 h)."""
    base: dict[str, Any] = {"type": type, "group_wait": 0.0, "group_interval": 0.2,
                            "backoff": 0.05, "max_backoff": 0.2, "timeout": 1.0}
    if url is not None:
        base["url"] = url
    if type == "webhook":
        base["secrets"] = ["s3cret-new", "s3cret-old"]
    return ReceiverSpec(**{**base, **kw})


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)
