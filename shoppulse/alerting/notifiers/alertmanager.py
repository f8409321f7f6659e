"""The Alertmanager receiver: ``POST /api/v2/alerts``, so its routing, silences,
inhibitions and on-call integrations keep working on shoppulse's alerts.

Labels carry ``alertname`` (the rule) and ``severity``; a resolve is the same labels with
``endsAt`` in the past. Alertmanager forgets a firing alert that is not re-posted within
its ``resolve_timeout`` (5 m), so the receiver's repeat interval defaults to 1 m: every
minute the alerts still firing are posted again, as Prometheus does.
"""

from __future__ import annotations

import time

import aiohttp
import orjson

from shoppulse.alerting.notifiers.delivery import DeliveryError
from shoppulse.alerting.notifiers.payload import Notification, alertmanager_alerts

API_PATH = "/api/v2/alerts"


class AlertmanagerSender:
    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url.rstrip("/") + API_PATH
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, n: Notification) -> None:
        body = orjson.dumps(alertmanager_alerts(n, time.time()))
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.post(self.url, data=body,
                                      headers={"Content-Type": "application/json"}) as resp:
            text = await resp.text()
            if resp.status // 100 != 2:
                raise DeliveryError(f"HTTP {resp.status}: {text[:200]}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
