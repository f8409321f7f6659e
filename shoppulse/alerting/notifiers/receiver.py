"""A minimal verifying webhook receiver: what a consumer of shoppulse's webhooks runs.

It checks every request with :func:`~.signing.verify` (401 if that fails) and hands the
payload with its receipt time to a callback. Runs its own event loop in a thread so that
synchronous code (benchmarks, a demo's log) can use it; stopped by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from shoppulse.alerting.notifiers.signing import HEADER, SignatureError, verify


class WebhookReceiver:
    def __init__(self, port: int, secrets: list[str],
                 on_receive: Callable[[dict[str, Any], float], None]) -> None:
        self.port = port
        self.secrets = secrets
        self.on_receive = on_receive
        self.rejected = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        try:
            verify(body, request.headers.get(HEADER), self.secrets)
        except SignatureError as exc:
            self.rejected += 1
            return web.Response(status=401, text=str(exc))
        self.on_receive(orjson.loads(body), at)
        return web.Response(status=200)

    def start(self) -> WebhookReceiver:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"webhook receiver did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
