"""The playbook format: a contingency plan as YAML, validated up front.

A playbook names the alerts it handles (``trigger``), its risk category and
severity, and the four stages of the operations plan: ``identify`` (what to
gather), ``decide`` (automatic or a human approval with a timeout), ``act``
(ordered actions, each with its own timeout, retry and compensation policy) and
``evaluate`` (the metric back inside its band for N windows). Errors name the
file, the line and the key path, like the main config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoppulse.alerting.playbooks.matchers import Matcher, parse_matcher
from shoppulse.streams.config import ConfigError, Seconds, read_yaml, validation_problems

LIBRARY = Path(__file__).resolve().parent / "library"
"""The eleven built-in playbooks, one per scenario of the operations plan."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def snake_case(v: str) -> str:
    """Names become run ids, claim keys and metric labels: keep them plain."""
    if not _NAME.match(v):
        raise ValueError("expected lower_snake_case")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identify(_Model):
    """What the run gathers before deciding: enough for a responder to act without digging."""

    recent_windows: int = Field(default=10, ge=0, le=1000)
    related_alerts: bool = True


class Decide(_Model):
    """``auto`` acts at once; ``approval`` waits for a human and never acts unanswered."""

    mode: Literal["auto", "approval"] = "auto"
    timeout: Seconds = 900.0
    escalate_to: str = "stdout"


class Action(_Model):
    """One step of ``act``. Retries only where the side effect is declared idempotent."""

    name: str
    type: Literal["webhook", "kafka", "notify", "wait", "shell"]
    url: str | None = None
    topic: str | None = None
    receiver: str | None = None
    command: list[str] | None = None
    message: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Seconds = 10.0
    retries: int = Field(default=0, ge=0, le=10)
    idempotent: bool = False
    rate_limit: Seconds = 0.0
    """At most one call of this action per ``rate_limit`` seconds across runs."""
    duration: Seconds = 0.0
    compensate: Action | None = None

    _name = field_validator("name")(snake_case)

    @model_validator(mode="after")
    def _fields_of_type(self) -> Action:
        need = {"webhook": "url", "kafka": "topic", "shell": "command"}.get(self.type)
        if need and not getattr(self, need):
            raise ValueError(f"a {self.type} action needs {need!r}")
        if self.retries and not self.idempotent:
            raise ValueError("retries need idempotent: true (a retry must not repeat a side "
                             "effect the target cannot recognise)")
        if self.type == "wait" and self.duration <= 0:
            raise ValueError("a wait action needs a positive duration")
        return self


class Evaluate(_Model):
    """Recovered when the protected series is inside its band for ``windows`` windows."""

    windows: int = Field(default=3, ge=1, le=1000)
    timeout: Seconds = 3600.0
    """Event time after acting without recovery before the run escalates."""
    escalate_to: str = "stdout"


class Playbook(_Model):
    name: str
    title: str
    scenario: str
    description: str = ""
    risk: Literal["strategic", "operational", "financial", "compliance"]
    severity: Literal["page", "ticket", "info"] = "page"
    trigger: list[Matcher]
    identify: Identify = Identify()
    decide: Decide = Decide()
    act: list[Action] = Field(default_factory=list)
    evaluate: Evaluate = Evaluate()
    inhibited_by: list[str] = Field(default_factory=list)
    """Playbooks whose open run explains this one's trigger (bots raise the bounce): while
    such a run is open on an alert naming no other value of this alert's dimensions, the
    alert is recorded on that run instead of starting a run of this playbook."""

    _m = field_validator("trigger", mode="before")(
        lambda v: [parse_matcher(m) if isinstance(m, str) else m for m in v]
        if isinstance(v, list) else v
    )

    _name = field_validator("name")(snake_case)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, v: list[Matcher]) -> list[Matcher]:
        if not v:
            raise ValueError("a playbook needs at least one matcher")
        return v

    @model_validator(mode="after")
    def _unique_steps(self) -> Playbook:
        names = [a.name for a in self.act]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate action names: {', '.join(dupes)}")
        if self.name in self.inhibited_by:
            raise ValueError("inhibited_by: a playbook cannot inhibit itself")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """All matchers hold on the alert's labels (``alertname`` is the rule)."""
        return all(m.holds(labels) for m in self.trigger)


def load_playbook(path: str | os.PathLike[str]) -> Playbook:
    """One playbook file; :class:`ConfigError` with file:line: key path on any problem."""
    data, root = read_yaml(path)
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), validation_problems(exc, root)) from None


def load_library(folder: str | os.PathLike[str] | None = None) -> dict[str, Playbook]:
    """Every ``*.yaml`` of ``folder`` (default: the built-in library), all errors at once."""
    root = Path(folder) if folder is not None else LIBRARY
    books: dict[str, Playbook] = {}
    paths: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(root.glob("*.yaml")):
        try:
            book = load_playbook(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if book.name in books:
            problems.append(f"{path}:1: name: duplicate playbook name {book.name!r}")
        books[book.name] = book
        paths[book.name] = path
    for book in books.values():
        unknown = sorted(set(book.inhibited_by) - set(books))
        if unknown:
            problems.append(f"{paths[book.name]}:1: inhibited_by: unknown playbook(s) "
                            f"{', '.join(unknown)}")
    if problems:
        raise ConfigError(str(root), [(None, "", "\n".join(problems))])
    return books
