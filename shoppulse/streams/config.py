"""The one configuration file: topics, schemas, windows, sessions, metrics.

Loaded and validated up front into typed objects, so a worker never starts on
a config it would choke on later. Every error names the file, the line, the
key path and what was expected::

    shoppulse.yaml:42: metrics[3].numerator.topic: unknown topic 'clickz' (known: clicks, orders)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shoppulse.streams.notifiers_config import ReceiverSpec, check_receiver_names
from shoppulse.streams.playbooks_config import PlaybooksSpec
from shoppulse.streams.rules_config import RuleSpec, check_rules
from shoppulse.streams.security import KafkaSecurity

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "shoppulse.yaml"
ENV_PREFIX = "SHOPPULSE_"
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_SECRETS")
"""``SHOPPULSE_*`` variables with these endings hold secrets read by name (the API token,
webhook keys), never config keys. (``SHOPPULSE_KAFKA__SASL_PASSWORD`` is a config key.)"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds.

    >>> parse_duration("5m"), parse_duration(30), parse_duration("1.5h")
    (300.0, 30.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like 30s, 5m, 2h, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Duration = float
Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration field that accepts ``30s``, ``5m``, ``2h`` or a number of seconds."""


class FieldSpec(_Model):
    """One payload field: the field-spec language shared by built-in and declared topics."""

    type: Literal["string", "number", "integer", "boolean", "timestamp"]
    required: bool = True
    enum: list[str | int] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(default=None, gt=0)
    doc: str = ""


class TopicSpec(_Model):
    partitions: int = Field(default=4, ge=1, le=1024)
    key: str
    time: str = "ts"
    fields: dict[str, FieldSpec]

    @model_validator(mode="after")
    def _key_and_time_declared(self) -> TopicSpec:
        for role in ("key", "time"):
            name = getattr(self, role)
            if name not in self.fields:
                raise ValueError(f"{role} field {name!r} is not among the declared fields")
        if self.fields[self.time].type != "timestamp":
            raise ValueError(f"time field {self.time!r} must have type timestamp")
        return self


FilterValue = Any


class Component(_Model):
    """What one side of a metric counts: events of a topic, or session transitions."""

    topic: str | None = None
    filter: dict[str, FilterValue] = Field(default_factory=dict)
    field: str | None = None  # sum of this field (minus `minus`) instead of a count
    minus: str | None = None
    distinct: str | None = None  # number of distinct values of this field
    session: Literal["started", "bounced", "engaged"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Component:
        if (self.topic is None) == (self.session is None):
            raise ValueError("give exactly one of 'topic' or 'session'")
        if self.session is not None and (self.filter or self.field or self.distinct):
            raise ValueError("a session component takes no filter, field or distinct")
        if self.field is not None and self.distinct is not None:
            raise ValueError("give at most one of 'field' and 'distinct'")
        if self.minus is not None and self.field is None:
            raise ValueError("'minus' needs 'field'")
        return self


MetricKind = Literal["count", "sum", "distinct", "quantile", "session", "ratio"]
Unit = Literal["ratio", "total", "seconds", "currency", "none"]
_SUFFIX = {"ratio": "_ratio", "total": "_total", "seconds": "_seconds", "currency": "", "none": ""}


def check_detector(value: dict[str, Any]) -> dict[str, Any]:
    """A ``detector:`` mapping: ``kind`` a name (built-in kinds are checked when the
    detector stage starts) or ``river.anomaly.<Name>`` of a River anomaly detector (looked
    up in that module, never imported by name); ``params`` a mapping (River kinds only)."""
    kind = value.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValueError("detector kind must be a string")
    if isinstance(kind, str) and kind.startswith("river."):
        from river import anomaly
        from river.base import AnomalyDetector, SupervisedAnomalyDetector

        name = kind.removeprefix("river.anomaly.")
        obj = getattr(anomaly, name, None) if kind.startswith("river.anomaly.") else None
        if not (isinstance(obj, type)
                and issubclass(obj, AnomalyDetector | SupervisedAnomalyDetector)):
            raise ValueError(
                f"detector kind {kind!r}: only River anomaly detectors "
                "(river.anomaly.<Name>, e.g. river.anomaly.HalfSpaceTrees) are allowed"
            )
    elif "params" in value:
        raise ValueError("'params' is for river.anomaly.* kinds; give built-in parameters "
                         "directly under detector")
    if "params" in value and not isinstance(value["params"], dict):
        raise ValueError("detector params must be a mapping")
    return value


class MetricSpec(_Model):
    name: str
    kind: MetricKind
    help: str = ""
    unit: Unit | None = None
    dimensions: list[str] = Field(default_factory=list)
    window: Duration | None = None
    # single-component kinds
    topic: str | None = None
    filter: dict[str, FilterValue] = Field(default_factory=dict)
    field: str | None = None
    minus: str | None = None
    distinct: str | None = None
    session: Literal["started", "bounced", "engaged"] | None = None
    q: float | None = Field(default=None, gt=0, le=1)
    # ratio
    numerator: Component | None = None
    denominator: Component | None = None
    detector: dict[str, Any] = Field(default_factory=dict)

    _window = field_validator("window", mode="before")(
        lambda v: None if v is None else parse_duration(v)
    )
    _detector = field_validator("detector")(check_detector)

    @field_validator("name")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("expected snake_case: lowercase letters, digits and _")
        return v

    @model_validator(mode="after")
    def _shape(self) -> MetricSpec:
        single = (self.topic, self.session)
        if self.kind == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("a ratio needs 'numerator' and 'denominator'")
            if any(single):
                raise ValueError("a ratio takes its topic/session inside numerator and denominator")
        elif self.numerator is not None or self.denominator is not None:
            raise ValueError(f"a {self.kind} metric takes no numerator/denominator")
        elif self.kind == "session":
            if self.session is None:
                raise ValueError("a session metric needs 'session': started|bounced|engaged")
        elif self.topic is None:
            raise ValueError(f"a {self.kind} metric needs 'topic'")
        if self.kind in ("sum", "quantile") and self.field is None:
            raise ValueError(f"a {self.kind} metric needs 'field'")
        if self.kind == "distinct" and self.distinct is None:
            raise ValueError("a distinct metric needs 'distinct': the field whose values count")
        if self.kind == "quantile" and self.q is None:
            raise ValueError("a quantile metric needs 'q' in (0, 1]")
        suffix = _SUFFIX[self.prometheus_unit]
        if suffix and self.name.endswith(suffix):
            raise ValueError(f"leave the {suffix!r} suffix out of the name; unit adds it")
        return self

    @property
    def prometheus_unit(self) -> Unit:
        if self.unit is not None:
            return self.unit
        return {"ratio": "ratio", "quantile": "none", "sum": "none"}.get(self.kind, "total")

    @property
    def prometheus_name(self) -> str:
        """``shoppulse_<name><suffix>``: the suffix follows Prometheus' unit conventions."""
        return f"shoppulse_{self.name}{_SUFFIX[self.prometheus_unit]}"

    def components(self) -> list[Component]:
        """The metric as components: one for single kinds, two for a ratio."""
        if self.kind == "ratio":
            return [self.numerator, self.denominator]  # type: ignore[list-item]
        return [
            Component(
                topic=self.topic,
                filter=self.filter,
                field=self.field,
                minus=self.minus,
                distinct=self.distinct,
                session=self.session,
            )
        ]


class WindowsSpec(_Model):
    size: Duration = 60.0
    grace: Duration = 30.0
    idle_timeout: Duration = 5.0

    _d = field_validator("size", "grace", "idle_timeout", mode="before")(parse_duration)

    @field_validator("size")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("the window size must be positive")
        return v


class SessionsSpec(_Model):
    topic: str = "clicks"
    key: str = "session_id"
    start: dict[str, FilterValue] = Field(default_factory=lambda: {"event_type": "landing_view"})
    bounce_timeout: Duration = 30.0
    window: Duration | None = None

    _d = field_validator("bounce_timeout", "window", mode="before")(
        lambda v: None if v is None else parse_duration(v)
    )


class Config(_Model):
    app: str = "shoppulse"
    broker: str = "embedded"
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_bind: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    kafka: KafkaSecurity = KafkaSecurity()  # SASL / TLS of an existing cluster
    windows: WindowsSpec = WindowsSpec()
    sessions: SessionsSpec = SessionsSpec()
    cardinality_cap: int = Field(default=50, ge=1)
    cardinality_period: Duration = 86400.0  # the kept values are ranked over one of these
    dimensions_keep: dict[str, list[str]] = Field(default_factory=dict)  # always kept
    max_event_bytes: int = Field(default=65536, ge=64)
    max_event_depth: int = Field(default=64, ge=1, le=512)
    topics: dict[str, TopicSpec]
    metrics: list[MetricSpec] = Field(default_factory=list)
    detectors: dict[str, Any] = Field(default_factory=dict)
    playbooks: PlaybooksSpec = PlaybooksSpec()
    notifiers: dict[str, ReceiverSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)
    hierarchy: dict[str, str] = Field(default_factory=dict)
    """Child metric -> parent metric whose evidence pools the child's (``conversion:
    conversion_overall``); a ratio child's numerators and denominators sum to the parent's."""
    drill: bool = False
    """This stack runs drills: alerts carry ``drill="true"`` and reach only receivers that
    match ``drill: "true"``."""

    _receivers = field_validator("notifiers")(check_receiver_names)
    _detectors = field_validator("detectors")(check_detector)

    _period = field_validator("cardinality_period", mode="before")(parse_duration)

    @field_validator("cardinality_period")
    @classmethod
    def _period_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("the cardinality period must be positive")
        return v

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        if v != "embedded" and not re.match(r"^kafka://[^:/]+:\d+(,[^:/]+:\d+)*$", v):
            raise ValueError("expected 'embedded' or kafka://host:port[,host:port]")
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        errors: list[tuple[tuple[Any, ...], str]] = []
        s = self.sessions
        uses_sessions = any(c.session for m in self.metrics for c in m.components())
        if s.topic not in self.topics:
            if uses_sessions:
                errors.append((("sessions", "topic"), f"unknown topic {s.topic!r}"))
        elif s.key not in self.topics[s.topic].fields:
            errors.append((("sessions", "key"), f"{s.key!r} is not a field of {s.topic!r}"))
        if uses_sessions and s.bounce_timeout > self.windows.grace:
            errors.append(
                (("sessions", "bounce_timeout"), "must not exceed windows.grace")
            )
        names: set[str] = set()
        for i, m in enumerate(self.metrics):
            if m.name in names:
                errors.append((("metrics", i, "name"), f"duplicate metric name {m.name!r}"))
            names.add(m.name)
            parts = ["numerator", "denominator"] if m.kind == "ratio" else [None]
            for part, comp in zip(parts, m.components(), strict=True):
                base: tuple[Any, ...] = ("metrics", i) if part is None else ("metrics", i, part)
                errors.extend(self._check_component(base, comp, m.dimensions))
        errors.extend(check_rules(self))
        dims = {d for m in self.metrics for d in m.dimensions}
        for d in self.dimensions_keep:
            if d not in dims:
                errors.append((("dimensions_keep", d), f"{d!r} is not a dimension of any metric"))
        for child, parent in self.hierarchy.items():
            for key, name in ((child, child), (child, parent)):
                if name not in names:
                    errors.append((("hierarchy", key), f"unknown metric {name!r}"))
            if child in names and parent in names:
                c = next(m for m in self.metrics if m.name == child)
                p = next(m for m in self.metrics if m.name == parent)
                if c.kind != p.kind or not set(p.dimensions) < set(c.dimensions):
                    errors.append((("hierarchy", child), f"{child!r} cannot pool into {parent!r}: "
                                   "same kind and a subset of the dimensions are needed"))
        if errors:
            raise _ReferenceErrors(list(dict.fromkeys(errors)))  # each problem once
        return self

    def _check_component(
        self, base: tuple[Any, ...], comp: Component, dims: list[str]
    ) -> list[tuple[tuple[Any, ...], str]]:
        topic = self.sessions.topic if comp.session else comp.topic
        if topic not in self.topics:
            known = ", ".join(self.topics)
            return [((*base, "topic"), f"unknown topic {topic!r} (known: {known})")]
        fields = self.topics[topic].fields
        out = []
        for key in ("field", "minus", "distinct"):
            name = getattr(comp, key)
            if name is not None and name not in fields:
                out.append(((*base, key), f"{name!r} is not a field of topic {topic!r}"))
        for key in ("field", "minus"):
            name = getattr(comp, key)
            if name in fields and fields[name].type not in ("number", "integer", "timestamp"):
                out.append(((*base, key), f"{name!r} is not numeric"))
        for name in comp.filter:
            if name not in fields:
                out.append(((*base, "filter", name), f"{name!r} is not a field of {topic!r}"))
        for j, d in enumerate(dims):
            if d not in fields:
                out.append(
                    (
                        (*base[:2], "dimensions", j),
                        f"dimension {d!r} is not a field of topic {topic!r}",
                    )
                )
        return out

    # -- derived -----------------------------------------------------------------
    def window_of(self, metric: MetricSpec) -> float:
        return metric.window or self.windows.size

    @property
    def session_window(self) -> float:
        return self.sessions.window or self.windows.size

    def topic_name(self, role: str) -> str:
        """Internal topic names: ``<app>.<role>`` (metrics, anomalies, deadletter, ...)."""
        return f"{self.app}.{role}"


class _ReferenceErrors(ValueError):
    def __init__(self, errors: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(msg for _, msg in errors))
        self.errors = errors


class ConfigError(Exception):
    """Bad configuration: every problem with file, line, key path and expectation."""

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [
            f"{path}:{line if line is not None else '?'}: {key or '<top>'}: {msg}"
            for line, key, msg in problems
        ]
        super().__init__("\n".join(lines))


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node the key path reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    """``SHOPPULSE_BROKER``, ``SHOPPULSE_WEB_PORT``, ``SHOPPULSE_WINDOWS__GRACE`` override keys."""
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ("SHOPPULSE_CONFIG", "SHOPPULSE_TANSU_BIN"):
            continue
        if name.endswith(SECRET_SUFFIXES):  # secrets are read by name, never config keys
            continue
        if value == "":  # set but empty: as if unset
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:  # a password stays the string it is ("0123", "yes", "a: b" are not YAML)
            key = path[-1]
            target[key] = value if key.endswith("password") else yaml.safe_load(value)


def read_yaml(path: str | os.PathLike[str]) -> tuple[dict[str, Any], yaml.Node | None]:
    """A YAML mapping and its node tree (for line numbers); :class:`ConfigError` if unusable."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(shown, [(None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(shown, [(line, "", f"invalid YAML: {exc}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(shown, [(1, "", "expected a mapping at the top level")])
    return data, root


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Read, apply ``SHOPPULSE_*`` env vars and explicit overrides, validate."""
    env = dict(os.environ) if env is None else env
    if path is None:
        path = env.get("SHOPPULSE_CONFIG") or (
            "shoppulse.yaml" if Path("shoppulse.yaml").is_file() else DEFAULT_PATH
        )
    shown = str(path)
    data, root = read_yaml(path)
    _apply_env(data, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(shown, validation_problems(exc, root)) from None


def validation_problems(
    exc: ValidationError, root: yaml.Node | None
) -> list[tuple[int | None, str, str]]:
    """pydantic errors as (line, key path, message), for any YAML document we validate."""
    problems: list[tuple[int | None, str, str]] = []
    for err in exc.errors():
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _ReferenceErrors):
            for loc, msg in ctx_err.errors:
                problems.append((_line_of(root, loc), _key_path(loc), msg))
            continue
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append((_line_of(root, loc), _key_path(loc), msg))
    return problems
