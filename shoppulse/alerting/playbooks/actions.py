"""What a playbook action does to the world: webhook, Kafka command, notify, wait, shell.

Each executor takes the :class:`~shoppulse.alerting.playbooks.engine.Call` and returns a
small result dict, or raises :class:`ActionError`. The side effect carries the claim key
(``Idempotency-Key`` header, Kafka message key), so a target can recognise a repeat that
an idempotent retry sends. Shell actions exist only when the operator enabled them with an
allowlist of executables, and never go through a shell.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from shoppulse.alerting.notifiers.signing import HEADER, sign
from shoppulse.alerting.playbooks.engine import Call

SendKafka = Callable[[str, bytes, bytes], Awaitable[None]]
Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class ActionError(Exception):
    """The action did not achieve its side effect; the message says why."""


def public_url(url: str) -> str:
    """The URL without credentials or query string: safe for logs and the audit record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def describe(call: Call) -> str:
    """One line saying what the call does (the dry run's "would have called …")."""
    a = call.action
    if a.type == "webhook":
        return f"POST {public_url(a.url or '')}"
    if a.type == "kafka":
        return f"produce a command to topic {a.topic}"
    if a.type == "notify":
        return f"notify {a.receiver or 'stdout'}: {a.message}"
    if a.type == "wait":
        return f"wait {a.duration:g}s"
    return f"run {' '.join(a.command or [])}"


def would_have(call: Call) -> str:
    """The dry run's audit line: "would have called <action type>: <what>"."""
    what = describe(call)
    kind = call.action.type
    return f"would have called {what if what.startswith(kind) else f'{kind}: {what}'}"


@dataclass
class Executors:
    """The outside world, injected: tests and drills pass their own ``send``/``notify``."""

    send_kafka: SendKafka | None = None
    notify: Notify | None = None
    secrets: Sequence[str] = ()
    """HMAC secrets for webhook actions (current first); from the environment, never logged."""
    shell_allow: Sequence[str] = ()
    """Executables shell actions may run; empty means shell actions are refused."""
    session: aiohttp.ClientSession | None = None
    calls: list[str] = field(default_factory=list)

    async def run(self, call: Call) -> dict[str, Any]:
        a = call.action
        self.calls.append(call.key)
        if a.type == "webhook":
            return await self._webhook(call)
        if a.type == "kafka":
            if self.send_kafka is None:
                raise ActionError("no Kafka producer configured")
            body = orjson.dumps({"command": a.name, "params": a.params, **call.inputs})
            await self.send_kafka(a.topic or "", call.key.encode(), body)
            return {"topic": a.topic}
        if a.type == "notify":
            if self.notify is None:
                print(f"[playbook] {a.message} ({call.inputs.get('run_id')})", flush=True)
            else:
                await self.notify(a.receiver or "stdout", a.message, call.inputs)
            return {"receiver": a.receiver or "stdout"}
        if a.type == "wait":
            await asyncio.sleep(a.duration)
            return {"waited_s": a.duration}
        return await self._shell(call)

    async def _webhook(self, call: Call) -> dict[str, Any]:
        a = call.action
        body = orjson.dumps({"action": a.name, "params": a.params, "idempotency_key": call.key,
                             **call.inputs})
        headers = {"Content-Type": "application/json", "Idempotency-Key": call.key}
        if self.secrets:
            headers[HEADER] = sign(body, list(self.secrets))
        session = self.session or aiohttp.ClientSession()
        try:
            async with session.post(a.url or "", data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=a.timeout)) as resp:
                if resp.status >= 300:
                    raise ActionError(f"POST {public_url(a.url or '')} answered {resp.status}")
                return {"status": resp.status}
        except aiohttp.ClientError as exc:
            raise ActionError(f"POST {public_url(a.url or '')} failed: {exc}") from None
        finally:
            if self.session is None:
                await session.close()

    async def _shell(self, call: Call) -> dict[str, Any]:
        argv = list(call.action.command or [])
        exe = shutil.which(argv[0]) if argv else None
        allowed = {shutil.which(x) or x for x in self.shell_allow}
        if not self.shell_allow or exe is None or exe not in allowed:
            raise ActionError(f"shell action {argv[:1]} refused: not in playbooks.shell_allow")
        proc = await asyncio.create_subprocess_exec(
            exe, *argv[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SHOPPULSE_RUN_ID": str(call.inputs.get("run_id", ""))})
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:  # the runner's timeout: the process must not outlive it
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            tail = out[-200:].decode(errors="replace")
            raise ActionError(f"{argv[0]} exited {proc.returncode}: {tail}")
        return {"exit_code": 0}
