"""The topic catalog: input topics from config plus shoppulse's internal topics.

Topics are created up front (Tansu and most production clusters do not
auto-create), with the partition counts the pipeline relies on: the global
stage needs to know every source partition to close a window. A worker may
start before its broker (containers, reboots): :func:`ensure_topics` can wait
for it, retrying with backoff and one line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)

from shoppulse.streams.broker import BrokerError
from shoppulse.streams.config import Config, TopicSpec

log = logging.getLogger(__name__)

#: Errors that mean "no broker answering there (yet)", worth waiting for.
UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError,
               OSError, asyncio.TimeoutError)
BACKOFF_MAX = 30.0

#: Internal topics (``<app>.<role>``) and their partition counts.
INTERNAL_PARTITIONS = {"partials": 4, "metrics": 4, "anomalies": 4, "deadletter": 1,
                       "checkpoints": 1, "alerts": 4, "playbook-runs": 1,
                       "commands": 1, "playbook-input": 1}
#: Topics where only the latest record per key matters.
COMPACTED = {"checkpoints"}


async def _ensure(bootstrap: str, wanted: dict[str, int],
                  client_options: dict[str, Any]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                **client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, n, 1, topic_configs={"cleanup.policy": "compact"} if
                        t.rsplit(".", 1)[-1] in COMPACTED else {})
               for t, n in wanted.items() if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        meta = await admin.describe_topics(list(wanted))
        return {m["topic"]: len(m["partitions"]) for m in meta if m.get("partitions")}
    finally:
        await admin.close()


def ensure_topics(
    config: Config,
    bootstrap: str,
    *,
    wait: float = 0.0,
    notify: Callable[[str], None] | None = None,
) -> Config:
    """Create missing topics; return the config with the real input partition counts.

    While no broker answers at ``bootstrap``, retry with backoff (1 s doubling to
    30 s, never past the deadline) for up to ``wait`` seconds (``math.inf``:
    forever), reporting one line per attempt through ``notify`` (default: the log);
    then raise :class:`BrokerError` with one line. Other errors are raised at once.
    """
    say = notify or log.warning
    wanted = {t: spec.partitions for t, spec in config.topics.items()}
    wanted |= {config.topic_name(role): n for role, n in INTERNAL_PARTITIONS.items()}
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        reason = _unreachable(bootstrap)  # aiokafka logs every refused connection as an error
        if reason is None:
            try:
                actual = asyncio.run(_ensure(bootstrap, wanted,
                                             config.kafka.client_options()))
                break
            except UNREACHABLE as exc:
                reason = str(exc) or type(exc).__name__
        left = deadline - time.monotonic()
        if left <= 0:
            waited = f" after waiting {wait:g}s" if wait > 0 else ""
            raise BrokerError(f"broker {bootstrap} not reachable{waited}: {reason}")
        pause = min(delay, left)
        shown = f"{pause:.0f}" if pause >= 1 else f"{pause:.1f}"
        say(f"broker {bootstrap} not reachable ({reason}), retrying in {shown}s")
        time.sleep(pause)
        delay = min(delay * 2, BACKOFF_MAX)
    topics = {
        t: TopicSpec.model_validate(
            {**spec.model_dump(), "partitions": actual.get(t, spec.partitions)})
        for t, spec in config.topics.items()
    }
    return config.model_copy(update={"topics": topics})


def _unreachable(bootstrap: str) -> str | None:
    """Why no bootstrap server accepts a TCP connection, or None if one does."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2.0).close()
            return None
        except (OSError, ValueError) as exc:
            errors.append(exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc))
    return "; ".join(dict.fromkeys(errors))


#: ``wait`` meaning "until the broker answers".
FOREVER = math.inf
