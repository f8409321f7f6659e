"""Config of the notifiers: ``notifiers:`` maps a receiver name to its spec.

Each receiver is its own route: ``match`` selects the alerts it gets, ``group_by`` and the
three timers (Alertmanager's ``group_wait``, ``group_interval``, ``repeat_interval``, same
meaning and defaults) shape how they are batched. Secrets are ``SecretStr`` (shown as
``**********`` in any repr or log) given literally or, better, by environment variable
name in ``secrets_env``; the first secret signs, every one listed is also signed with,
so receivers keep verifying during a rotation.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _duration(value: Any) -> float:
    from shoppulse.streams.config import parse_duration  # config imports this module

    return parse_duration(value)


class ReceiverSpec(BaseModel):
    """One receiver: where notifications go, which alerts, how grouped, how delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "alertmanager", "stdout"]
    url: str | None = None
    """webhook: the endpoint; alertmanager: its base URL (``/api/v2/alerts`` is appended)."""
    secrets: list[SecretStr] = Field(default_factory=list)
    secrets_env: list[str] = Field(default_factory=list)
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    """Label equality matchers (``alertname`` = rule, ``severity`` included); all must hold."""
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    """Labels that make a group; ``[...]`` groups by all labels (one alert per group)."""
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float | None = None
    """Default 4h; 1m for ``alertmanager``, which drops alerts not re-posted within its
    ``resolve_timeout``."""
    send_resolved: bool = True
    timeout: float = 5.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    queue_size: int = Field(default=10_000, ge=1)
    """Pending transitions this receiver may hold; beyond, the oldest firing is dropped."""
    max_in_flight: int = Field(default=8, ge=1)
    """Notifications of different groups sent at once (a group has one at a time)."""
    down_after: int = Field(default=3, ge=1)
    """Consecutive failed attempts before ``NotifierDown`` fires on the other receivers."""
    external_url: str = ""

    _d = field_validator("group_wait", "group_interval", "timeout", "backoff", "max_backoff",
                         mode="before")(_duration)
    _r = field_validator("repeat_interval", mode="before")(
        lambda v: None if v is None else _duration(v))

    @field_validator("secrets_env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @model_validator(mode="after")
    def _shape(self) -> ReceiverSpec:
        if self.type != "stdout":
            if not self.url or not re.match(r"^https?://[^/\s]+", self.url):
                raise ValueError(f"a {self.type} receiver needs 'url': http(s)://host[:port]/...")
        elif self.url:
            raise ValueError("a stdout receiver takes no 'url'")
        if self.type == "webhook" and not (self.secrets or self.secrets_env):
            raise ValueError("a webhook receiver needs 'secrets' or 'secrets_env' (it is signed)")
        if self.timeout <= 0:
            raise ValueError("'timeout' must be positive")
        if self.group_interval <= 0:
            raise ValueError("'group_interval' must be positive")
        if self.repeat_interval is not None and self.repeat_interval < self.group_interval:
            raise ValueError("'repeat_interval' must not be shorter than 'group_interval'")
        return self

    @property
    def repeat(self) -> float:
        if self.repeat_interval is not None:
            return self.repeat_interval
        return 60.0 if self.type == "alertmanager" else 4 * 3600.0

    def secret_values(self, env: dict[str, str] | None = None) -> list[str]:
        """The signing secrets, literal ones first; a named variable that is unset is an error
        that names it (never its value)."""
        env = dict(os.environ) if env is None else env
        out = [s.get_secret_value() for s in self.secrets]
        for name in self.secrets_env:
            value = env.get(name)
            if not value:
                raise ValueError(f"environment variable {name} (a webhook secret) is not set")
            out.append(value)
        return out


def check_receiver_names(value: dict[str, ReceiverSpec]) -> dict[str, ReceiverSpec]:
    """Receiver names label Prometheus series: snake_case, like metric names."""
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"receiver name {name!r}: expected snake_case")
    return value
