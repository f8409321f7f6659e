"""From alert transitions to deliveries: routing, dedupe, one task per receiver.

:meth:`Dispatcher.handle` is all the stream does (the ``notify`` agent calls it per record
of ``<app>.alerts``): it records the transition in the alert's row and queues it with every
receiver whose ``match`` it meets, in memory. Each receiver has its own task that sends
what its :class:`~.grouping.Grouper` says is due, so a dead or slow target delays only
itself, never the stream or the other receivers.

Dedupe by (fingerprint, episode, state) per receiver: the row of a fingerprint (a Faust
table in the worker, keyed and partitioned like the alerts topic) holds its recent
transitions and, per receiver, the last transition delivered. A transition at or below
that mark (a replay of the topic, a restarted worker re-reading uncommitted records) or
already queued is counted ``deduplicated``, never sent. The mark is written right after
the receiver's 2xx (not awaited: the next notification does not wait for the changelog), so
only a crash within that write's round trip (milliseconds) can repeat a notification;
receivers can drop such a repeat by its ``notificationId``. After a restart
:meth:`restore` re-queues from the rows whatever was recorded but not delivered.

While a receiver fails ``down_after`` attempts in a row, a ``NotifierDown`` alert
(label ``receiver``) fires on the other receivers; its first success resolves it (or,
after a restart, finding nothing left to deliver).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry

from shoppulse.alerting.fingerprint import fingerprint
from shoppulse.alerting.notifiers.alertmanager import AlertmanagerSender
from shoppulse.alerting.notifiers.delivery import DeliveryError, Sender, backoff_delay
from shoppulse.alerting.notifiers.grouping import Grouper, transition_key
from shoppulse.alerting.notifiers.metrics import NotifierMetrics
from shoppulse.alerting.notifiers.payload import Notification, alert_labels
from shoppulse.alerting.notifiers.stdout import StdoutSender
from shoppulse.alerting.notifiers.webhook import WebhookSender
from shoppulse.streams.notifiers_config import ReceiverSpec
from shoppulse.streams.records import Alert

log = logging.getLogger(__name__)

NOTIFIER_DOWN = "NotifierDown"
KEEP_TRANSITIONS = 4
NOTHING = (0, 0)


class RowStore(Protocol):
    """Where rows live: a Faust table in the worker, a dict in tests."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, partition: int, key: str, value: bytes) -> None: ...

    def items(self) -> Iterable[tuple[str, bytes]]: ...


class MemoryRows:
    """A :class:`RowStore` in a dict (tests, benchmarks, offline runs)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, partition: int, key: str, value: bytes) -> None:
        self.data[key] = value

    def items(self) -> Iterable[tuple[str, bytes]]:
        return list(self.data.items())


def build_sender(spec: ReceiverSpec, env: dict[str, str] | None = None) -> Sender:
    if spec.type == "webhook":
        return WebhookSender(spec.url or "", spec.secret_values(env), timeout=spec.timeout)
    if spec.type == "alertmanager":
        return AlertmanagerSender(spec.url or "", timeout=spec.timeout)
    return StdoutSender()


@dataclass
class Receiver:
    name: str
    spec: ReceiverSpec
    sender: Sender
    grouper: Grouper
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0
    """Consecutive failed attempts."""
    down: Alert | None = None
    task: asyncio.Task | None = None

    def routes(self, alert: Alert) -> bool:
        return routes(self.name, self.spec, alert)


def routes(name: str, spec: ReceiverSpec, alert: Alert) -> bool:
    """Does receiver ``name`` (its ``match``) take this alert?"""
    if alert.rule == NOTIFIER_DOWN and alert.labels.get("receiver") == name:
        return False  # a receiver cannot be told that it is down
    labels = alert_labels(alert)
    if labels.get("drill") == "true" and spec.match.get("drill") != "true":
        return False  # drill alerts never reach a production receiver
    for key, want in spec.match.items():
        allowed = [want] if isinstance(want, str) else want
        if labels.get(key) not in allowed:
            return False
    return True


class Dispatcher:
    def __init__(self, receivers: dict[str, tuple[ReceiverSpec, Sender]], store: RowStore,
                 registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 emit: Callable[[Alert], Awaitable[None] | None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.metrics = NotifierMetrics(registry)
        self.clock = clock
        self.emit = emit or self.handle
        self.rng = rng or random.Random()
        self.receivers: dict[str, Receiver] = {}
        for name, (spec, sender) in receivers.items():
            grouper = Grouper(name, group_by=spec.group_by, group_wait=spec.group_wait,
                              group_interval=spec.group_interval,
                              repeat_interval=spec.repeat, queue_size=spec.queue_size,
                              external_url=spec.external_url)
            self.receivers[name] = Receiver(name, spec, sender, grouper)
            self.metrics.declare(name)

    @classmethod
    def from_config(cls, specs: dict[str, ReceiverSpec], store: RowStore,
                    registry: CollectorRegistry, *, env: dict[str, str] | None = None,
                    **kwargs: Any) -> Dispatcher:
        return cls({n: (s, build_sender(s, env)) for n, s in specs.items()}, store, registry,
                   **kwargs)

    # -- rows -------------------------------------------------------------------------
    def _row(self, fp: str) -> dict[str, Any]:
        raw = self.store.get(fp)
        return orjson.loads(raw) if raw else {"p": 0, "t": [], "sent": {}}

    def _put(self, fp: str, row: dict[str, Any]) -> None:
        self.store.put(row["p"], fp, orjson.dumps(row))

    @staticmethod
    def _sent(row: dict[str, Any], receiver: str) -> tuple[int, int]:
        mark = row["sent"].get(receiver)
        return (mark[0], mark[1]) if mark else NOTHING

    def _mark(self, alert: Alert, receiver: str, key: tuple[int, int]) -> None:
        row = self._row(alert.fingerprint)
        if key > self._sent(row, receiver):
            row["sent"][receiver] = list(key)
            self._put(alert.fingerprint, row)

    # -- input (the stream) -----------------------------------------------------------
    def handle(self, alert: Alert, partition: int | None = None) -> None:
        """Record one transition from the alerts topic and queue it; never blocks."""
        if alert.state not in ("firing", "resolved"):
            return  # pending alerts are not notified (as in Prometheus)
        now = self.clock()
        row = self._row(alert.fingerprint)
        if partition is not None:
            row["p"] = partition
        if all((t["episode"], t["state"]) != (alert.episode, alert.state) for t in row["t"]):
            row["t"].append(orjson.loads(orjson.dumps(alert)))  # orjson reads dataclasses
            # natively, several times faster than dataclasses.asdict
            row["t"].sort(key=lambda t: (t["episode"], t["state"] == "resolved"))
            del row["t"][:-KEEP_TRANSITIONS]
        self._put(alert.fingerprint, row)
        for r in self.receivers.values():
            if r.routes(alert):
                self._offer(r, alert, row, now)

    def _offer(self, r: Receiver, alert: Alert, row: dict[str, Any], now: float) -> None:
        key = transition_key(alert)
        sent = self._sent(row, r.name)
        if key <= sent or r.grouper.holds(alert):
            self.metrics.notifications.labels(r.name, "deduplicated").inc()
            return
        if alert.state == "resolved" and not r.spec.send_resolved:
            r.grouper.settle(alert)
            self._mark(alert, r.name, key)
            return
        must = alert.state == "resolved" and sent == (alert.episode, 1)
        added = r.grouper.add(alert, now, must=must)
        for gone in added.dropped:
            self.metrics.notifications.labels(r.name, "dropped").inc()
            self._mark(gone, r.name, (gone.episode, 2))  # done with that episode here
        self.metrics.queue.labels(r.name).set(r.grouper.size)
        r.wake.set()

    def restore(self) -> None:
        """Re-queue, from the rows, every transition recorded but not delivered."""
        now = self.clock()
        for _fp, raw in self.store.items():
            row = orjson.loads(raw)
            transitions = [Alert.loads(t) for t in row["t"]]
            if not transitions:
                continue
            latest = transitions[-1]
            for r in self.receivers.values():
                sent = self._sent(row, r.name)
                for a in transitions:
                    if not r.routes(a):
                        continue
                    key = transition_key(a)
                    if key <= sent:
                        if a is latest and a.state == "firing" and key == sent:
                            r.grouper.restore_firing(a, now)
                        continue
                    if not r.grouper.holds(a):
                        self._offer(r, a, row, now)
            if latest.rule == NOTIFIER_DOWN and latest.state == "firing":
                r_down = self.receivers.get(latest.labels.get("receiver", ""))
                if r_down is not None and r_down.down is None:
                    r_down.down = latest
                    self.metrics.down.labels(r_down.name).set(1)
        for r in self.receivers.values():
            self.metrics.queue.labels(r.name).set(r.grouper.size)
            r.wake.set()
        log.info("notifiers restored: %s", ", ".join(
            f"{r.name} {r.grouper.size} queued{' (down)' if r.down else ''}"
            for r in self.receivers.values()))

    def forget(self, fingerprints: set[str]) -> None:
        for r in self.receivers.values():
            r.grouper.forget(fingerprints)
            self.metrics.queue.labels(r.name).set(r.grouper.size)

    def fingerprints_of(self, partitions: set[int]) -> set[str]:
        return {fp for fp, raw in self.store.items() if orjson.loads(raw)["p"] in partitions}

    # -- output (one task per receiver) -----------------------------------------------
    def start(self) -> None:
        for r in self.receivers.values():
            if r.task is None or r.task.done():
                r.task = asyncio.ensure_future(self._run(r))

    async def stop(self) -> None:
        for r in self.receivers.values():
            if r.task is not None:
                r.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await r.task
                r.task = None
            await r.sender.close()

    async def _run(self, r: Receiver) -> None:
        while True:
            try:
                await self._step(r)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the receiver's deliveries for good
                log.exception("receiver %s: delivery loop error", r.name)
                await asyncio.sleep(1.0)

    async def _step(self, r: Receiver) -> None:
        r.wake.clear()
        due = r.grouper.due(self.clock())
        for i in range(0, len(due), r.spec.max_in_flight):  # different groups at once
            await asyncio.gather(*(self._deliver(r, n) for n in due[i:i + r.spec.max_in_flight]))
        self.metrics.queue.labels(r.name).set(r.grouper.size)
        if r.down is not None and r.failures == 0 and r.grouper.size == 0:
            # marked down by a previous process (restore) with nothing left that fails
            await self._up(r, self.clock())
        nxt = r.grouper.next_due()
        wait = None if nxt is None else nxt - self.clock()
        if wait is not None and wait <= 0:
            await asyncio.sleep(0)  # let the stream run between bursts
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(r.wake.wait(), wait)

    async def _deliver(self, r: Receiver, n: Notification) -> None:
        try:
            # the sender has its own timeout; this one also bounds a sender that ignores it
            await asyncio.wait_for(r.sender.send(n), r.spec.timeout + 1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the target: count, back off, retry later
            await self._failed(r, n, exc)
            return
        now = self.clock()
        r.grouper.delivered(n, now)
        self.metrics.notifications.labels(r.name, "sent").inc()
        if not n.repeat:
            for a in n.alerts:  # the marks' writes are not awaited: a crash within the
                self._mark(a, r.name, transition_key(a))  # round trip may send it again
        r.failures = 0
        if r.down is not None:
            await self._up(r, now)

    async def _failed(self, r: Receiver, n: Notification, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__
        now = self.clock()
        attempts = r.grouper.groups[n.group_key].attempts + 1
        delay = backoff_delay(attempts, r.spec.backoff, r.spec.max_backoff, self.rng)
        r.grouper.failed(n, now, delay)
        r.failures += 1
        self.metrics.notifications.labels(r.name, "failed").inc()
        self.metrics.failures.labels(r.name).inc()
        log.warning("receiver %s: delivery failed (%s), attempt %d; retry in %.1fs",
                    r.name, reason, attempts, delay)
        if r.failures >= r.spec.down_after and r.down is None:
            await self._down(r, now, reason)

    async def _down(self, r: Receiver, now: float, reason: str) -> None:
        labels = {"receiver": r.name}
        alert = Alert(
            fingerprint=fingerprint(NOTIFIER_DOWN, labels), episode=int(now * 1000),
            state="firing", rule=NOTIFIER_DOWN, severity="critical", labels=labels,
            starts_at=now, at=now,
            annotations={"summary": f"Notifications to receiver {r.name} are failing",
                         "description": f"{r.failures} delivery attempts in a row failed "
                                        f"(last: {reason}); {r.grouper.size} transitions wait."})
        log.error("receiver %s is down: %s", r.name, alert.annotations["description"])
        if await self._emit(alert):
            r.down = alert
            self.metrics.down.labels(r.name).set(1)

    async def _up(self, r: Receiver, now: float) -> None:
        alert = r.down
        if alert is None:
            return
        if await self._emit(replace(alert, state="resolved", ends_at=now, at=now)):
            r.down = None
            self.metrics.down.labels(r.name).set(0)
            log.warning("receiver %s delivers again", r.name)

    async def _emit(self, alert: Alert) -> bool:
        """Hand a self-alert over (to the alerts topic in the worker); False if that failed,
        so the caller tries again at the next occasion."""
        try:
            result = self.emit(alert)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("could not emit %s %s: %s", alert.rule, alert.state, exc)
            return False
        return True
