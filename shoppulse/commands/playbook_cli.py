"""``shoppulse playbook …``: the library on the terminal, and answers to approvals.

``list``, ``show`` and ``validate`` read playbook files and need no worker; ``runs``,
``approve`` and ``reject`` talk to a worker's web server (``--worker``), the last two with
the bearer token from ``SHOPPULSE_API_TOKEN``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from shoppulse.streams.config import ConfigError

WORKER_HELP = "worker web address (default http://127.0.0.1:6066); env SHOPPULSE_WORKER_URL"


def _library(folder: str | None) -> dict[str, Any]:
    from shoppulse.alerting.playbooks.spec import load_library

    try:
        return load_library(folder)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _worker(url: str | None) -> str:
    return (url or os.environ.get("SHOPPULSE_WORKER_URL") or "http://127.0.0.1:6066").rstrip("/")


def _call(url: str, *, method: str = "GET", token: str | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("X-Shoppulse-User", os.environ.get("USER", "cli"))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise click.ClickException(f"{url}: {exc.code} {detail}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"{url}: worker not reachable ({exc.reason})") from None


@click.group()
def playbook() -> None:
    """Contingency-plan playbooks: list, show, validate; runs and approvals on a worker."""


@playbook.command("list")
@click.option("--folder", type=click.Path(exists=True, file_okay=False),
              help="playbook folder (default: the built-in library)")
def list_(folder: str | None) -> None:
    """One line per playbook: name, risk, severity, decision, trigger."""
    for book in _library(folder).values():
        trig = ", ".join(str(m) for m in book.trigger)
        click.echo(f"{book.name:<26} {book.risk:<12} {book.severity:<7} "
                   f"{book.decide.mode:<9} {trig}")


@playbook.command()
@click.argument("name")
@click.option("--folder", type=click.Path(exists=True, file_okay=False))
def show(name: str, folder: str | None) -> None:
    """Every stage of playbook NAME."""
    books = _library(folder)
    if name not in books:
        raise click.ClickException(f"no playbook {name!r}; known: {', '.join(books)}")
    b = books[name]
    click.echo(f"{b.name}: {b.title}  [{b.risk}, {b.severity}]\n  {b.description}")
    click.echo(f"trigger   {' AND '.join(str(m) for m in b.trigger)}")
    click.echo(f"identify  last {b.identify.recent_windows} windows"
               f"{', related alerts' if b.identify.related_alerts else ''}")
    decide = ("automatic" if b.decide.mode == "auto" else
              f"approval within {b.decide.timeout:g}s, else escalate to {b.decide.escalate_to}")
    click.echo(f"decide    {decide}")
    for i, a in enumerate(b.act, 1):
        extra = " idempotent" if a.idempotent else ""
        extra += f" retries={a.retries}" if a.retries else ""
        extra += f" compensate={a.compensate.name}" if a.compensate else ""
        click.echo(f"act {i}.    {a.name} ({a.type}, timeout {a.timeout:g}s{extra}) {a.message}")
    click.echo(f"evaluate  inside the band for {b.evaluate.windows} windows within "
               f"{b.evaluate.timeout:g}s of event time, else escalate to {b.evaluate.escalate_to}")


@playbook.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
def validate(paths: tuple[str, ...]) -> None:
    """Validate playbook files or folders (default: the built-in library); exit 1 on errors."""
    from shoppulse.alerting.playbooks.spec import load_playbook

    targets = list(paths) or [None]
    count, problems = 0, []
    for target in targets:
        if target is not None and Path(target).is_file():
            try:
                load_playbook(target)
                count += 1
            except ConfigError as exc:
                problems.append(str(exc))
            continue
        try:
            from shoppulse.alerting.playbooks.spec import load_library

            count += len(load_library(target))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise click.ClickException("\n".join(problems))
    click.echo(f"ok: {count} playbooks")


@playbook.command()
@click.option("--worker", "url", help=WORKER_HELP)
@click.option("--json", "as_json", is_flag=True)
def runs(url: str | None, as_json: bool) -> None:
    """Runs known to a worker: playbook, stage, outcome."""
    data = _call(f"{_worker(url)}/playbooks/runs")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for r in data["runs"]:
        state = "awaiting approval" if r["awaiting_approval"] else (r["outcome"] or r["stage"])
        click.echo(f"{r['run_id']:<40} {r['series']:<40} {state}")


def _answer(run_id: str, verb: str, url: str | None) -> None:
    token = os.environ.get("SHOPPULSE_API_TOKEN")
    if not token:
        raise click.ClickException("set SHOPPULSE_API_TOKEN to the worker's API token")
    _call(f"{_worker(url)}/playbooks/runs/{run_id}/{verb}", method="POST", token=token)
    click.echo(f"{verb}: {run_id} (see `shoppulse playbook runs`)")


@playbook.command()
@click.argument("run_id")
@click.option("--worker", "url", help=WORKER_HELP)
def approve(run_id: str, url: str | None) -> None:
    """Approve RUN_ID's actions."""
    _answer(run_id, "approve", url)


@playbook.command()
@click.argument("run_id")
@click.option("--worker", "url", help=WORKER_HELP)
def reject(run_id: str, url: str | None) -> None:
    """Reject RUN_ID: it closes without acting."""
    _answer(run_id, "reject", url)
