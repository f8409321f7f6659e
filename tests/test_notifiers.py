"""Notifiers against real HTTP servers on loopback: signatures, payloads, retries, hangs,
dedupe across replays and restarts, bounded backlog, NotifierDown, stdout; and a worker
SIGKILLed while its webhook fails."""

from __future__ import annotations

import asyncio
import io
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from shoppulse.alerting.notifiers import SignatureError, sign, verify
from shoppulse.alerting.notifiers.dispatcher import Dispatcher, MemoryRows
from shoppulse.alerting.notifiers.grouping import Grouper
from shoppulse.alerting.notifiers.stdout import StdoutSender
from shoppulse.streams.config import ConfigError, load_config
from shoppulse.streams.notifiers_config import ReceiverSpec
from tests.hooks import HookServer
from tests.notify_helpers import alert, spec, until

SECRETS = ["s3cret-new", "s3cret-old"]


# -- signatures ---------------------------------------------------------------------------
def test_signature_verifies_across_a_rotation_and_refuses_stale_or_forged():
    body = b'{"status":"firing"}'
    now = 1_800_000_000
    header = sign(body, ["new", "old"], timestamp=now)
    assert header.startswith(f"t={now},v1=") and header.count("v1=") == 2
    assert verify(body, header, ["old"], now=now + 5) == now  # receiver not rotated yet
    assert verify(body, header, ["new"], now=now + 5) == now  # receiver rotated
    assert verify(body, sign(body, ["old"], timestamp=now), ["new", "old"], now=now) == now
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(body, header, ["other"], now=now)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(body + b" ", header, ["new"], now=now)  # body changed in transit
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify(body, header, ["new"], now=now + 301)
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify(body, header, ["new"], now=now - 301)  # from the future
    forged_t = header.replace(f"t={now}", f"t={now + 100}")  # fresh time, old signature
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(body, forged_t, ["new"], now=now + 100)
    for bad in (None, "", "v1=abc", f"t={now}", "t=x,v1=ab", "garbage"):
        with pytest.raises(SignatureError):
            verify(body, bad, ["new"], now=now)


# -- config -------------------------------------------------------------------------------
def test_config_secrets_never_shown_and_required(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    base = ("topics:\n  reviews:\n    key: id\n    fields:\n      id: {type: string}\n"
            "      ts: {type: timestamp}\n")
    path.write_text(base + "notifiers:\n  oncall:\n    type: webhook\n"
                    "    url: http://127.0.0.1:9/hook\n    secrets: [hunter2]\n"
                    "    secrets_env: [HOOK_OLD_SECRET]\n")
    cfg = load_config(path, env={})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    with pytest.raises(ValueError, match="HOOK_OLD_SECRET"):
        cfg.notifiers["oncall"].secret_values(env={})
    assert cfg.notifiers["oncall"].secret_values(env={"HOOK_OLD_SECRET": "x"}) == ["hunter2", "x"]
    path.write_text(base + "notifiers:\n  oncall:\n    type: webhook\n"
                    "    url: http://127.0.0.1:9/hook\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: notifiers.oncall: .*needs 'secrets'"):
        load_config(path, env={})
    path.write_text(base + "notifiers:\n  Bad-Name:\n    type: stdout\n")
    with pytest.raises(ConfigError, match="snake_case"):
        load_config(path, env={})
    path.write_text(base + "notifiers:\n  am:\n    type: alertmanager\n    url: http://x:9093\n"
                    "    group_interval: 5m\n    repeat_interval: 1m\n")
    with pytest.raises(ConfigError, match="repeat_interval"):
        load_config(path, env={})
    assert ReceiverSpec(type="alertmanager", url="http://x:9093").repeat == 60.0
    assert ReceiverSpec(type="stdout").repeat == 4 * 3600.0


# -- grouping as plain code on explicit times ------------------------------------------------
def test_grouping_follows_alertmanagers_timers():
    g = Grouper("r", group_by=["alertname"], group_wait=30, group_interval=300,
                repeat_interval=3600, queue_size=100)
    g.add(alert(1), 0.0)
    g.add(alert(2), 10.0)
    assert g.due(29.9) == []  # group_wait holds the first notification
    (n,) = g.due(30.0)
    assert {a.labels["series"] for a in n.alerts} == {"s1", "s2"} and n.counts["firing"] == 2
    g.delivered(n, 30.5)
    g.add(alert(3), 40.0)  # joins a notified group: waits for the group_interval tick
    assert g.due(329.9) == []
    (n,) = g.due(330.0)
    assert [a.labels["series"] for a in n.alerts] == ["s3"]
    g.delivered(n, 330.0)
    g.add(alert(1, "resolved"), 400.0)
    (n,) = g.due(630.0)
    assert n.counts == {"firing": 0, "resolved": 1} and n.status == "resolved"
    g.delivered(n, 630.0)
    assert g.due(4229.0) == []  # s2 and s3 still fire: repeated after repeat_interval
    (n,) = g.due(4230.0)
    assert n.repeat and {a.labels["series"] for a in n.alerts} == {"s2", "s3"}
    g.delivered(n, 4230.0)
    g.add(alert(2, "resolved"), 4300.0)  # news for a group waiting for its repeat:
    assert g.due(4529.0) == []  # the next group_interval tick, not the next repeat
    (n,) = g.due(4530.0)
    assert n.counts == {"firing": 0, "resolved": 1}
    # a FIRING still undelivered goes out before its RESOLVED, never merged away
    h = Grouper("r", group_by=["alertname"], group_wait=0, group_interval=1,
                repeat_interval=10, queue_size=100)
    h.add(alert(1), 0.0)
    h.add(alert(1, "resolved"), 0.1)
    (n,) = h.due(0.1)
    assert [a.state for a in n.alerts] == ["firing"]
    h.failed(n, 0.2, retry_in=0.5)
    assert h.due(0.5) == []
    (n,) = h.due(0.7)
    assert [a.state for a in n.alerts] == ["firing"]
    h.delivered(n, 0.7)
    (n,) = h.due(1.7)
    assert [a.state for a in n.alerts] == ["resolved"]


def test_backlog_is_bounded_but_keeps_every_resolve_of_a_delivered_firing():
    g = Grouper("r", group_by=["..."], group_wait=0, group_interval=1, repeat_interval=10,
                queue_size=3)
    for i in range(3):
        g.add(alert(i), 0.0)
    sent = g.due(0.0)
    for n in sent:
        g.delivered(n, 0.0)  # s0..s2 fired at the receiver
    for i in range(3, 6):
        assert g.add(alert(i), 1.0).queued
    res = g.add(alert(6), 1.0)  # full: the oldest pending FIRING (s3) makes room
    assert res.queued and [a.labels["series"] for a in res.dropped] == ["s3"]
    for i in range(3):  # resolves of delivered firings: queued whatever the bound
        assert g.add(alert(i, "resolved"), 2.0, must=True).queued
    assert g.size == 6
    res = g.add(alert(4, "resolved"), 2.0)  # full: its own FIRING is the oldest pending,
    assert not res.queued  # so both go: the receiver never saw that episode
    assert [(a.labels["series"], a.state) for a in res.dropped] == [
        ("s4", "firing"), ("s4", "resolved")]
    assert g.size == 5


# -- delivery against a real HTTP server ---------------------------------------------------
def run(coro):
    return asyncio.run(coro)


def test_webhook_sends_signed_alertmanager_v4_payload():
    async def main():
        with HookServer(SECRETS[1:]) as hook:  # the receiver still only knows the old key
            d = Dispatcher.from_config({"oncall": spec(url=hook.url)}, MemoryRows(),
                                       CollectorRegistry())
            d.start()
            d.handle(alert(1))
            d.handle(alert(2))
            await until(lambda: hook.received, what="a webhook")
            await d.stop()
            return hook.received
    (got,) = run(main())
    assert got.verified and got.signature.count("v1=") == 2
    b = got.body
    assert {k for k in b} >= {"version", "receiver", "status", "alerts", "groupLabels",
                              "commonLabels", "commonAnnotations", "externalURL", "groupKey",
                              "truncatedAlerts", "fingerprint", "counts"}
    assert b["version"] == "4" and b["receiver"] == "oncall" and b["status"] == "firing"
    assert b["counts"] == {"firing": 2, "resolved": 0}
    assert b["groupLabels"] == {"alertname": "payment_drop"}
    assert b["commonLabels"] == {"alertname": "payment_drop", "severity": "critical",
                                 "metric": "payment_success"}
    a = b["alerts"][0]
    assert set(a) >= {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                      "fingerprint"}
    assert a["endsAt"] == "0001-01-01T00:00:00Z" and a["startsAt"] == "2026-01-01T08:01:00.000Z"
    assert a["annotations"]["runbook_url"] == "https://runbooks.example/payments"
    assert a["shoppulse"]["value"] == 0.41 and a["shoppulse"]["lower"] == 0.88


def test_failing_target_retries_until_it_recovers_and_notifier_down_goes_to_the_others():
    async def main():
        out = io.StringIO()
        reg = CollectorRegistry()
        with HookServer(SECRETS) as hook:
            hook.mode = "fail"
            receivers = {"oncall": (spec(url=hook.url, down_after=3),
                                    Dispatcher.from_config({"x": spec(url=hook.url)}, MemoryRows(),
                                                           CollectorRegistry())
                                    .receivers["x"].sender),
                         "console": (spec("stdout"), StdoutSender(out))}
            d = Dispatcher(receivers, MemoryRows(), reg)
            d.start()
            d.handle(alert(1))
            await until(lambda: hook.attempts >= 5 and (reg.get_sample_value(
                "shoppulse_notification_failures_total", {"receiver": "oncall"}) or 0) >= 5,
                what="retries")
            fails = reg.get_sample_value("shoppulse_notification_failures_total",
                                         {"receiver": "oncall"})
            assert fails >= 5
            await until(lambda: "NotifierDown" in out.getvalue(), what="NotifierDown")
            assert "RESOLVED" not in out.getvalue()
            assert reg.get_sample_value("shoppulse_notifier_down", {"receiver": "oncall"}) == 1
            d.handle(alert(1, "resolved"))  # resolves while the target is down
            await asyncio.sleep(0.3)
            assert hook.received == []
            hook.mode = "ok"
            await until(lambda: len(hook.transitions()) >= 2, what="delivery after recovery")
            await until(lambda: "RESOLVED" in out.getvalue(), what="its resolve")
            await asyncio.sleep(0.5)  # nothing more may come
            await d.stop()
            return hook, out.getvalue(), reg
    hook, console, reg = run(main())
    fp = alert(1).fingerprint
    assert hook.transitions() == [(fp, 1, "firing"), (fp, 1, "resolved")]
    assert all(r.verified for r in hook.received)
    lines = console.splitlines()
    down = [ln for ln in lines if "NotifierDown" in ln]
    assert len(down) == 2 and "FIRING" in down[0] and "RESOLVED" in down[1]
    assert "receiver=\"oncall\"" in down[0]
    assert reg.get_sample_value("shoppulse_notifier_down", {"receiver": "oncall"}) == 0
    assert reg.get_sample_value("shoppulse_notifications_total",
                                {"receiver": "oncall", "result": "sent"}) == 2


def test_hanging_target_stalls_neither_the_stream_nor_other_receivers():
    TIMEOUT = 2.0

    async def main():
        with HookServer(SECRETS) as slow, HookServer(SECRETS) as fast:
            slow.mode, slow.hang_for = "hang", 5.0
            reg = CollectorRegistry()
            # a bound a stalled stream could not meet: the slow receiver's timeout, not a
            # speed (the machine may be loaded; speed is the benchmark's business)
            d = Dispatcher.from_config({"slow": spec(url=slow.url, timeout=TIMEOUT),
                                        "fast": spec(url=fast.url)}, MemoryRows(), reg)
            d.start()
            t0 = time.perf_counter()
            for i in range(200):
                d.handle(alert(i))
            handled = time.perf_counter() - t0
            await until(lambda: fast.received, timeout=2, what="the fast receiver")
            fast_at = time.perf_counter() - t0
            await until(lambda: (reg.get_sample_value("shoppulse_notification_failures_total",
                                                      {"receiver": "slow"}) or 0) >= 2,
                        timeout=15, what="timeouts of the slow receiver")
            slow.mode = "ok"
            await until(lambda: slow.received, timeout=5, what="the slow receiver recovering")

            def queue_now() -> float | None:
                return reg.get_sample_value("shoppulse_notification_queue", {"receiver": "slow"})

            # the receiver records the body before it answers; the queue shrinks on the answer
            await until(lambda: queue_now() == 0, timeout=5, what="the slow queue draining")
            queue = queue_now()
            await d.stop()
            return handled, fast_at, fast, slow, queue
    handled, fast_at, fast, slow, queue = run(main())
    assert handled < TIMEOUT, f"handling 200 transitions took {handled:.2f}s"
    assert fast_at < TIMEOUT, f"the fast receiver waited {fast_at:.2f}s behind the hanging one"
    assert fast.bodies()[0]["counts"]["firing"] == 200
    assert slow.bodies()[0]["counts"]["firing"] == 200 and queue == 0


def test_dedupe_survives_replays_and_a_restart():
    rows = MemoryRows()

    async def session(hook: HookServer, replay: list, *, mode: str = "ok") -> CollectorRegistry:
        reg = CollectorRegistry()
        d = Dispatcher.from_config({"oncall": spec(url=hook.url)}, rows, reg)
        d.restore()
        d.start()
        hook.mode = mode
        for a in replay:
            d.handle(a)
        await asyncio.sleep(0.6)
        await d.stop()
        return reg

    async def main():
        with HookServer(SECRETS) as hook:
            await session(hook, [alert(1), alert(2)])
            assert len(hook.transitions()) == 2
            # a replay of the topic (after a crash, or a reset consumer) sends nothing again
            reg = await session(hook, [alert(1), alert(2), alert(1)])
            assert reg.get_sample_value("shoppulse_notifications_total",
                                        {"receiver": "oncall", "result": "deduplicated"}) == 3
            assert len(hook.transitions()) == 2
            # recorded while the target fails, then the process is gone ...
            await session(hook, [alert(1, "resolved"), alert(3)], mode="fail")
            assert len(hook.transitions()) == 2
            # ... the next one re-queues from the rows alone, and the replay is deduplicated
            await session(hook, [alert(3)])
            return hook.transitions()
    got = run(main())
    fps = {alert(i).fingerprint: i for i in (1, 2, 3)}
    assert sorted((fps[f], s) for f, _, s in got) == [
        (1, "firing"), (1, "resolved"), (2, "firing"), (3, "firing")]


def test_stdout_prints_one_line_per_notification():
    async def main():
        out = io.StringIO()
        d = Dispatcher({"console": (spec("stdout"), StdoutSender(out))}, MemoryRows(),
                       CollectorRegistry())
        d.start()
        for i in range(5):
            d.handle(alert(i))
        await until(lambda: out.getvalue(), what="a line")
        await d.stop()
        return out.getvalue()
    text = run(main())
    assert text.count("\n") == 1
    assert "[console] FIRING firing=5 resolved=0 {alertname=\"payment_drop\"}" in text
    assert "value=0.41 band=[0.88,0.97]" in text and "+2 more" in text


# -- a worker SIGKILLed while a webhook fails ------------------------------------------------
def _worker_config(tmp_path, hooks: dict[str, HookServer]):
    from shoppulse.streams.config import DEFAULT_PATH

    text = DEFAULT_PATH.read_text() + "\nnotifiers:\n"
    for name, hook in hooks.items():
        text += (f"  {name}:\n    type: webhook\n    url: {hook.url}\n    secrets: [{SECRETS[0]}]\n"
                 "    group_wait: 0s\n    group_interval: 1s\n    backoff: 0.2s\n"
                 "    max_backoff: 1s\n    timeout: 2s\n    down_after: 3\n")
    path = tmp_path / "notify.yaml"
    path.write_text(text)
    return path


def _produce_alert(bootstrap: str, topic: str, a) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, key=a.fingerprint.encode(), value=a.dumps()).get(timeout=20)
    finally:
        producer.close()


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.broker
def test_worker_sigkilled_while_webhook_fails_delivers_one_firing_one_resolved(
        tmp_path, kafka, app_name, workers):
    from shoppulse.streams.config import DEFAULT_PATH
    from shoppulse.streams.topics import ensure_topics

    cfg = ensure_topics(load_config(DEFAULT_PATH, env={"SHOPPULSE_APP": app_name}),
                        kafka.bootstrap)
    topic = cfg.topic_name("alerts")
    with HookServer(SECRETS[:1]) as oncall, HookServer(SECRETS[:1]) as audit:
        path = _worker_config(tmp_path, {"oncall": oncall, "audit": audit})
        oncall.mode = "fail"
        w = workers(path)
        w.wait_web()
        fired = alert(7)
        _produce_alert(kafka.bootstrap, topic, fired)
        _wait(lambda: audit.transitions() and oncall.attempts >= 4, 90,
              f"audit firing and oncall failing ({oncall.attempts} attempts)")
        with urllib.request.urlopen(w.metrics_url, timeout=10) as r:
            text = r.read().decode()
        fails = [ln for ln in text.splitlines()
                 if ln.startswith('shoppulse_notification_failures_total{receiver="oncall"}')]
        assert fails and float(fails[0].split()[-1]) >= 3, fails
        w.kill()  # while the webhook fails
        _produce_alert(kafka.bootstrap, topic, alert(7, "resolved"))
        oncall.mode = "ok"
        w2 = workers(path)
        w2.wait_web()
        fp = fired.fingerprint
        want = [(fp, 1, "firing"), (fp, 1, "resolved")]
        _wait(lambda: [t for t in oncall.transitions() if t[0] == fp] == want and
              [t for t in audit.transitions() if t[0] == fp] == want, 120,
              f"both receivers: oncall {oncall.transitions()}, audit {audit.transitions()}")
        # NotifierDown about oncall fired on audit and resolved once oncall took deliveries
        _wait(lambda: [t[2] for t in audit.transitions() if t[0] != fp] == ["firing", "resolved"],
              60, f"NotifierDown on audit: {audit.transitions()}")
        time.sleep(4)  # anything duplicated would have come by now
        assert [t for t in oncall.transitions() if t[0] == fp] == want, oncall.transitions()
        assert [t for t in audit.transitions() if t[0] == fp] == want, audit.transitions()
        down = [a for b in audit.bodies() for a in b["alerts"] if a["fingerprint"] != fp]
        assert {a["labels"]["alertname"] for a in down} == {"NotifierDown"}
        assert all(a["labels"]["receiver"] == "oncall" for a in down)
        assert not [a for b in oncall.bodies() for a in b["alerts"]
                    if a["labels"]["alertname"] == "NotifierDown"]
        assert all(r.verified for r in oncall.received + audit.received)


def test_routes_match_labels_and_send_resolved_false_stops_at_firing():
    async def main():
        pages, chat = io.StringIO(), io.StringIO()
        d = Dispatcher({"pages": (spec("stdout", match={"severity": "critical"}),
                                  StdoutSender(pages)),
                        "chat": (spec("stdout", send_resolved=False, group_by=["..."]),
                                 StdoutSender(chat))}, MemoryRows(), CollectorRegistry())
        d.start()
        d.handle(alert(1, severity="warning"))
        d.handle(alert(2))
        await until(lambda: pages.getvalue() and chat.getvalue().count("\n") == 2)
        d.handle(alert(2, "resolved"))
        await until(lambda: "RESOLVED" in pages.getvalue(), what="the resolve on pages")
        await asyncio.sleep(0.5)
        await d.stop()
        return pages.getvalue(), chat.getvalue()
    pages, chat = run(main())
    assert 'series="s1"' not in pages and pages.count("\n") == 2  # firing s2, resolved s2
    assert chat.count("\n") == 2 and "RESOLVED" not in chat


def test_records_that_are_not_alerts_are_refused_naming_the_field():
    from dataclasses import replace

    from shoppulse.agents.notify import check_alert

    assert check_alert(alert(1)) == alert(1)
    with pytest.raises(ValueError, match=r"^state: 'exploded'"):
        check_alert(replace(alert(1), state="exploded"))
    with pytest.raises(ValueError, match=r"^fingerprint:"):
        check_alert(replace(alert(1), fingerprint=""))
    with pytest.raises(ValueError, match=r"^episode:"):
        check_alert(replace(alert(1), episode="1"))
