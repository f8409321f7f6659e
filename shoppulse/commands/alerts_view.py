"""``shoppulse alerts``: the worker's ``GET /alerts`` as a terminal table (also in the demo)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click
from rich.console import Console
from rich.table import Table

_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green"}


def fetch(url: str, path: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as r:
        return json.loads(r.read())


def _num(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _band(row: dict[str, Any]) -> str:
    lo, hi, exp = row.get("lower"), row.get("upper"), row.get("expected")
    if lo is not None or hi is not None:
        return f"{_num(lo)}..{_num(hi)}"
    return f"exp {_num(exp)}" if exp is not None else "-"


def _contributors(row: dict[str, Any]) -> str:
    parts = []
    for c in row.get("contributors") or []:
        labels = ",".join(f"{k}={v}" for k, v in sorted((c.get("labels") or {}).items()))
        share = c.get("share")
        parts.append(f"{labels} {share * 100:.0f}%" if share is not None else labels)
    return "; ".join(parts) or "-"


def _series(labels: dict[str, str]) -> str:
    metric = labels.get("metric", "")
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "metric")
    return f"{metric}{{{rest}}}" if rest else metric


def alerts_table(rows: list[dict[str, Any]], *, title: str = "Alerts", limit: int = 12) -> Table:
    t = Table(title=title, expand=True)
    for col in ("state", "sev", "rule", "series", "value", "band", "score", "peak",
                "since (event)", "top contributors / summary"):
        t.add_column(col, justify="right" if col in ("value", "score", "peak") else "left",
                     overflow="fold")
    for row in rows[:limit]:
        state = row["state"]
        since = row.get("ends_at") if state == "resolved" else row.get("starts_at")
        when = time.strftime("%H:%M:%S", time.gmtime(since)) if since else "-"
        why = _contributors(row)
        if why == "-":
            why = (row.get("annotations") or {}).get("summary", "-")
        t.add_row(f"[{_STYLE.get(state, '')}]{state}[/]", row.get("severity", ""),
                  row["rule"], _series(row.get("labels") or {}), _num(row.get("value")),
                  _band(row), _num(row.get("score")), _num(row.get("peak")), when, why)
    if not rows:
        t.add_row("-", "", "no alerts", "", "", "", "", "", "", "")
    return t


def show_alerts(url: str, *, show_all: bool, as_json: bool, fingerprint: str | None) -> None:
    path = f"/alerts/{fingerprint}/timeline" if fingerprint else \
        f"/alerts?resolved={'1' if show_all else '0'}"
    try:
        data = fetch(url, path)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{url}{path}: HTTP {exc.code}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach a worker at {url}: {exc}") from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    if fingerprint:
        console.print(alerts_table(data["transitions"], limit=1000,
                                   title=f"{data['rule']} {_series(data['labels'])} "
                                         f"({fingerprint})"))
        for name, items in data.items():
            if isinstance(items, list) and name != "transitions":
                console.print(f"{name}: {json.dumps(items)}")
        return
    console.print(alerts_table(data["alerts"], limit=1000))
