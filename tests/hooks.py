"""A real webhook receiver on loopback (aiohttp, in its own thread) that tests can make
fail, hang and recover. It verifies each request's signature with the package's
:func:`verify`, as a receiver would, and records what it got."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from shoppulse.alerting.notifiers import HEADER, SignatureError, verify
from shoppulse.streams.broker import free_port


@dataclass
class Received:
    at: float
    path: str
    body: Any
    signature: str | None
    verified: bool


class HookServer:
    """``mode``: ``ok`` (200), ``fail`` (500), ``hang`` (sleeps ``hang_for`` seconds)."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.port = free_port()
        self.secrets = secrets or []
        self.mode = "ok"
        self.hang_for = 30.0
        self.received: list[Received] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.attempts += 1
            mode = self.mode
        if mode == "hang":
            await asyncio.sleep(self.hang_for)
        if mode == "fail":
            return web.Response(status=500, text="down")
        sig = request.headers.get(HEADER)
        ok = True
        if self.secrets:
            try:
                verify(body, sig, self.secrets)
            except SignatureError:
                ok = False
        with self._lock:
            self.received.append(Received(time.time(), request.path, orjson.loads(body), sig,
                                          ok))
        return web.Response(status=200 if ok else 401)

    def start(self) -> HookServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    def transitions(self) -> list[tuple[str, int, str]]:
        """(fingerprint, episode, status) of every alert in every non-repeat body."""
        return [(a["fingerprint"], a["shoppulse"]["episode"], a["status"])
                for b in self.bodies() if not b.get("repeat") for a in b["alerts"]]

    def __enter__(self) -> HookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
