"""Label matchers in Alertmanager's syntax, so operators write triggers the way they write routes.

>>> m = parse_matcher('metric=~"conversion.*"')
>>> m.holds({"metric": "conversion_overall"}), m.holds({"metric": "bounce"})
(True, False)
>>> parse_matcher('channel!="ads"').holds({})
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')

Op = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op "value"``; a missing label matches like the empty string (as in Alertmanager)."""

    name: str
    op: Op
    value: str

    def holds(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        full = re.fullmatch(self.value, actual) is not None
        return full if self.op == "=~" else not full

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """``'rule="ctr_low"'`` -> :class:`Matcher`; ValueError naming what was expected."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f'expected a matcher like name="value", name=~"re.*", got {text!r}')
    name, op, raw = match.groups()
    value = raw.replace('\\"', '"').replace("\\\\", "\\")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression {value!r}: {exc}") from None
    return Matcher(name, op, value)  # type: ignore[arg-type]
