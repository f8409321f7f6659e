"""The topic catalog: input topics from config plus shoppulse's internal topics.

Topics are created up front (Tansu and most production clusters do not
auto-create), with the partition counts the pipeline relies on: the global
stage needs to know every source partition to close a window.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shoppulse.streams.config import Config, TopicSpec

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


def ensure_topics(config: Config, bootstrap: str) -> Config:
    """Create missing topics; return the config with the real input partition counts."""
    wanted = {t: spec.partitions for t, spec in config.topics.items()}
    wanted |= {config.topic_name(role): n for role, n in INTERNAL_PARTITIONS.items()}
    actual = asyncio.run(_ensure(bootstrap, wanted, config.kafka.client_options()))
    topics = {
        t: TopicSpec.model_validate(
            {**spec.model_dump(), "partitions": actual.get(t, spec.partitions)})
        for t, spec in config.topics.items()
    }
    return config.model_copy(update={"topics": topics})
