"""The built-in config cut down to a few metrics, for tests that want a small worker."""

from __future__ import annotations

from typing import Any

import yaml

from shoppulse.streams.config import DEFAULT_PATH


def builtin_with_metrics(*names: str) -> dict[str, Any]:
    """The built-in config as data, keeping only ``names`` (and the hierarchy among them)."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["metrics"] = [m for m in data["metrics"] if m["name"] in names]
    data["hierarchy"] = {c: p for c, p in data.get("hierarchy", {}).items()
                         if c in names and p in names}
    return data
