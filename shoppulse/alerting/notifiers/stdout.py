"""The stdout receiver: one line per notification, for terminals and log shippers."""

from __future__ import annotations

import sys
from typing import TextIO

from shoppulse.alerting.notifiers.payload import Notification, alert_labels, label_string, rfc3339

MAX_LISTED = 3


def render_line(n: Notification) -> str:
    """``<time> [receiver] FIRING firing=N resolved=M {group} | alert{labels} value=v ...``."""
    c = n.counts
    head = (f"{rfc3339(n.created)} [{n.receiver}] {n.status.upper()}"
            f"{' (repeat)' if n.repeat else ''} firing={c['firing']} resolved={c['resolved']}"
            f" {label_string(n.group_labels)}")
    parts = []
    for a in n.alerts[:MAX_LISTED]:
        labels = {k: v for k, v in alert_labels(a).items() if k not in ("alertname", "severity")}
        text = f"{a.rule}{label_string(labels)} {a.state}"
        if a.value is not None:
            text += f" value={a.value:.4g}"
        if a.lower is not None and a.upper is not None:
            text += f" band=[{a.lower:.4g},{a.upper:.4g}]"
        if a.state == "resolved" and a.peak is not None:
            text += f" peak={a.peak:.4g}"
        parts.append(text)
    if len(n.alerts) > MAX_LISTED:
        parts.append(f"+{len(n.alerts) - MAX_LISTED} more")
    return head + " | " + "; ".join(parts)


class StdoutSender:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(self, n: Notification) -> None:
        out = self.stream or sys.stdout
        out.write(render_line(n).replace("\n", " ") + "\n")
        out.flush()

    async def close(self) -> None:
        return None
