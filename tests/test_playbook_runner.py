"""The runner against a real HTTP server on loopback: signed calls, once each, dry runs silent."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from shoppulse.alerting.notifiers.signing import HEADER, verify
from shoppulse.alerting.playbooks.actions import Executors
from shoppulse.alerting.playbooks.engine import Engine
from shoppulse.alerting.playbooks.runner import Runner
from shoppulse.alerting.playbooks.spec import Playbook
from tests.test_playbook_engine import alert

SECRET = "s3cret-playbook-key"


class Target:
    """A webhook receiver that records what it got and can fail the first N calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_first = fail_first

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(body, request.headers.get(HEADER), [SECRET])  # raises if unsigned
        self.calls.append({"key": request.headers["Idempotency-Key"], "body": body})
        if len(self.calls) <= self.fail_first:
            return web.Response(status=503)
        return web.Response(status=200)


async def serve(target: Target) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook?token=do-not-log"


def hook_book(url: str, *, idempotent: bool = False) -> Playbook:
    return Playbook.model_validate({
        "name": "pay", "title": "t", "scenario": "payment_outage", "risk": "financial",
        "trigger": ['metric="payment_success"'],
        "act": [{"name": "call_ops", "type": "webhook", "url": url, "timeout": "2s",
                 "idempotent": idempotent, "retries": 2 if idempotent else 0},
                {"name": "tell", "type": "notify", "message": "done"}],
    })


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_webhook_action_is_signed_carries_its_claim_key_and_runs_once() -> None:
    async def main() -> tuple[Target, list[Any], dict[str, Any]]:
        target = Target()
        http, url = await serve(target)
        records: list[Any] = []

        async def emit(step: Any) -> None:
            records.append(step)

        claims: dict[str, Any] = {}
        engine = Engine({"pay": hook_book(url)})
        runner = Runner(engine, Executors(secrets=[SECRET]), emit, claims=claims)
        await runner.handle(*engine.on_alert(alert(), now=1.0))
        await runner.idle()
        # the same alert replayed and the run resumed: nothing is called again
        await runner.handle(*engine.on_alert(alert(), now=2.0))
        await runner.resume()
        await runner.idle()
        await http.cleanup()
        return target, records, claims

    target, records, claims = run(main())
    assert len(target.calls) == 1
    run_id = records[0].run_id
    assert target.calls[0]["key"] == f"{run_id}:act:call_ops"
    assert all(c["state"] == "done" and c["ok"] for c in claims.values())
    assert ("act", "call_ops", "succeeded") in [(r.stage, r.step, r.status) for r in records]
    assert records[-1].stage == "evaluate"
    assert not any("do-not-log" in str(r) for r in records)  # the token never reaches the audit


def test_interrupted_non_idempotent_call_is_not_repeated_but_escalated() -> None:
    async def main() -> tuple[Target, list[Any]]:
        target = Target()
        http, url = await serve(target)
        records: list[Any] = []

        async def emit(step: Any) -> None:
            records.append(step)

        engine = Engine({"pay": hook_book(url)})
        claims: dict[str, Any] = {}
        _steps, calls = engine.on_alert(alert(), now=1.0)
        # a crash right after the claim: claimed, never marked done
        claims[calls[0].key] = {"state": "claimed", "at": 1.0}
        runner = Runner(engine, Executors(secrets=[SECRET]), emit, claims=claims)
        await runner.resume()
        await runner.idle()
        await http.cleanup()
        return target, records

    target, records = run(main())
    assert target.calls == []
    assert [r.status for r in records if r.stage in ("act", "escalate")][:2] == [
        "unknown", "failed"]
    assert any(r.status == "escalated" for r in records)


def test_idempotent_call_retries_through_failures_with_the_same_key() -> None:
    async def main() -> Target:
        target = Target(fail_first=2)
        http, url = await serve(target)

        async def emit(step: Any) -> None:
            return None

        engine = Engine({"pay": hook_book(url, idempotent=True)})
        runner = Runner(engine, Executors(secrets=[SECRET]), emit)
        await runner.handle(*engine.on_alert(alert(), now=1.0))
        await runner.idle()
        await http.cleanup()
        return target

    target = run(main())
    assert len(target.calls) == 3 and len({c["key"] for c in target.calls}) == 1


def test_dry_run_makes_no_outbound_call_and_says_what_it_would_have_done() -> None:
    async def main() -> tuple[Target, list[Any]]:
        target = Target()
        http, url = await serve(target)
        records: list[Any] = []

        async def emit(step: Any) -> None:
            records.append(step)

        engine = Engine({"pay": hook_book(url)}, dry_run=True)
        runner = Runner(engine, Executors(secrets=[SECRET]), emit)
        await runner.handle(*engine.on_alert(alert(), now=1.0))
        await runner.idle()
        await http.cleanup()
        return target, records

    target, records = run(main())
    assert target.calls == []
    done = [r for r in records if r.stage == "act"]
    assert [r.status for r in done] == ["dry_run", "dry_run"]
    assert done[0].result["would_have"].startswith("POST http://127.0.0.1:")
    assert "token" not in done[0].result["would_have"]
    assert done[0].result["audit"].startswith("would have called webhook: POST http://127.0.0.1:")
    assert "token" not in done[0].result["audit"]
