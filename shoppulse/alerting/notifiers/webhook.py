"""The webhook receiver: Alertmanager's webhook JSON, signed (see :mod:`.signing`)."""

from __future__ import annotations

import aiohttp

from shoppulse.alerting.notifiers.delivery import DeliveryError
from shoppulse.alerting.notifiers.payload import Notification, webhook_body
from shoppulse.alerting.notifiers.signing import HEADER, sign

USER_AGENT = "shoppulse-notifier/1"


class WebhookSender:
    """POSTs each notification; 2xx is success, anything else (or the timeout) a failure.

    The secrets stay in this object: never in logs, errors or ``repr``.
    """

    def __init__(self, url: str, secrets: list[str], *, timeout: float) -> None:
        if not secrets:
            raise ValueError("a webhook needs a signing secret")
        self.url = url
        self._secrets = list(secrets)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookSender({self.url!r}, secrets=<{len(self._secrets)} hidden>)"

    async def send(self, n: Notification) -> None:
        body = webhook_body(n)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   HEADER: sign(body, self._secrets)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.post(self.url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status // 100 != 2:
                raise DeliveryError(f"HTTP {resp.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
