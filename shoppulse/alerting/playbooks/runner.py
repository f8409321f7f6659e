"""Performs the engine's calls exactly once: claim, act, record, report back.

Why claims: a worker can die between starting a side effect and recording it. Each call
is claimed under its key (run, stage, step) in a durable mapping *before* it runs, and
marked done after. On resume a done claim is never run again (its stored outcome drives
the run on); a claim left open by a crash is run again only when the action is declared
idempotent (the target sees the same ``Idempotency-Key``) or is a ``wait``; otherwise its outcome is
``unknown`` and the run escalates to a human rather than risk a second side effect.
Calls run as tasks, so a slow target never stalls the stream that feeds the engine.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from shoppulse.alerting.playbooks.actions import ActionError, Executors, describe, would_have
from shoppulse.alerting.playbooks.engine import Call, Engine
from shoppulse.streams.records import PlaybookStep

log = logging.getLogger(__name__)

Emit = Callable[[PlaybookStep], Awaitable[None]]
Persist = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


Report = Callable[[str, bool, dict[str, Any], str], Awaitable[None]]


class Runner:
    """Drives an :class:`Engine` with real side effects (or, dry, with descriptions).

    State changes (claims, the engine's runs) happen only in :meth:`handle` and
    :meth:`complete`, which a Faust agent calls while it iterates its stream (tables
    refuse writes from anywhere else). The side effects run as tasks; each reports its
    outcome through ``report`` — by default straight back to :meth:`complete`; in the
    worker, as a message on the agent's own topic, so the outcome is applied in order
    and survives as a record.
    """

    def __init__(
        self,
        engine: Engine,
        executors: Executors,
        emit: Emit,
        *,
        claims: MutableMapping[str, dict[str, Any]] | None = None,
        persist: Persist = _nothing,
        report: Report | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.executors = executors
        self.emit = emit
        self.claims: MutableMapping[str, dict[str, Any]] = {} if claims is None else claims
        self.persist = persist
        self.report: Report = report or self.complete
        self.clock = clock
        self.event_now = 0.0
        """The verdicts' event time: a run's evaluation counts the windows after it."""
        self.inflight: dict[str, Call] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_call: dict[str, float] = {}

    async def handle(self, steps: list[PlaybookStep], calls: list[Call]) -> None:
        """Record the engine's steps, then claim and start its calls."""
        for step in steps:
            await self.emit(step)
        for call in calls:
            await self._start(call)

    async def resume(self) -> None:
        """After a restart: calls of runs that were mid-``act``."""
        await self.handle([], self.engine.pending())

    async def idle(self) -> None:
        """Wait until no call is running (tests, drills, replay)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def complete(self, key: str, ok: bool, result: dict[str, Any], error: str) -> None:
        """A started call finished: store its outcome, then let the engine go on."""
        call = self.inflight.pop(key, None)
        if call is None:
            return  # not started by this process (a replayed report): its claim decides
        await self._conclude(call, ok, result, error)

    async def _start(self, call: Call) -> None:
        claim = self.claims.get(call.key)
        if claim is not None and claim.get("state") == "done":
            # completed before a restart or a replay: drive the run on with that outcome
            if call.stage == "act":
                await self._advance(call, claim["ok"], claim.get("result") or {},
                                    claim.get("error", ""))
            return
        if claim is not None and not (call.action.idempotent or call.action.type == "wait"):
            run = self.engine.get(call.run_id)
            if run is not None:
                await self.emit(self.engine.record(
                    run, call.stage, "unknown", now=self.clock(), step=call.step,
                    inputs=call.inputs,
                    error="interrupted by a restart; not repeated (not idempotent)"))
            await self._conclude(call, False, {}, "outcome unknown after a restart")
            return
        self.claims[call.key] = {"state": "claimed", "at": self.clock()}
        await self.persist()
        self.inflight[call.key] = call
        task = asyncio.ensure_future(self._perform(call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _perform(self, call: Call) -> None:
        try:
            ok, result, error = await self._execute(call)
        except Exception as exc:  # an executor bug must fail the step, not the runner
            log.exception("playbook call %s crashed", call.key)
            ok, result, error = False, {}, f"internal error: {exc}"
        await self.report(call.key, ok, result, error)

    async def _execute(self, call: Call) -> tuple[bool, dict[str, Any], str]:
        a = call.action
        if self.engine.dry_run:
            return True, {"would_have": describe(call), "audit": would_have(call)}, ""
        limit_key = f"{call.run_id.rsplit('-', 1)[0]}:{a.name}"  # per playbook and action
        if a.rate_limit and self.clock() - self.last_call.get(limit_key, -1e18) < a.rate_limit:
            return True, {"skipped": f"rate limited (one per {a.rate_limit:g}s)"}, ""
        self.last_call[limit_key] = self.clock()
        attempts = 1 + (a.retries if a.idempotent else 0)
        error = ""
        for attempt in range(attempts):
            try:
                result = await asyncio.wait_for(self.executors.run(call), a.timeout)
                return True, {**result, "attempts": attempt + 1}, ""
            except TimeoutError:
                error = f"timed out after {a.timeout:g}s"
            except ActionError as exc:
                error = str(exc)
            if attempt + 1 < attempts:
                await asyncio.sleep(min(30.0, 0.2 * 2**attempt) * (0.5 + random.random()))
        return False, {"attempts": attempts}, error

    async def _conclude(self, call: Call, ok: bool, result: dict[str, Any], error: str) -> None:
        self.claims[call.key] = {"state": "done", "ok": ok, "result": result, "error": error}
        await self.persist()
        await self._advance(call, ok, result, error)

    async def _advance(self, call: Call, ok: bool, result: dict[str, Any], error: str) -> None:
        steps, calls = self.engine.finished(call, self.clock(), self.event_now, ok=ok,
                                            result=result, error=error)
        await self.handle(steps, calls)
