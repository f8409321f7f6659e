"""Annotation templates: Jinja2 in the immutable sandbox, over plain values only.

Why a sandbox: rules come from config that many people edit; a template must not
reach Python internals (``''.__class__.__mro__``), mutate what it is given, or run
code. The context holds only str, float, None, and dicts/lists of them, so there is
nothing to reach; the sandbox refuses the attempt anyway. A template that fails
renders as ``<template error: ...>`` and is counted: an alert is never lost to a typo.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger(__name__)


def _pct(value: Any, digits: int = 1) -> str:
    """0.034 -> '3.4 %'."""
    return "-" if value is None else f"{float(value) * 100:.{digits}f} %"


def _num(value: Any, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separated."""
    if value is None:
        return "-"
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(pct=_pct, num=_num)
    return env


ENV = _environment()


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Any:
    return ENV.from_string(text)


def render(text: str, context: dict[str, Any]) -> str:
    """Render one template; errors (incl. sandbox refusals) become a visible marker."""
    try:
        return _compiled(text).render(context)
    except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        log.warning("annotation template failed (%s): %r", type(exc).__name__, text)
        return f"<template error: {type(exc).__name__}: {exc}>"


def render_all(templates: dict[str, str], context: dict[str, Any]) -> dict[str, str]:
    return {k: render(t, context) for k, t in templates.items()}
