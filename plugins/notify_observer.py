"""Post the seeds' Initial Alert, Status Update and Resolved messages as a run unfolds.

Stakeholders should hear about an incident when the runbook learns something,
not when a responder finds time to type. This observer (`runbook_step_finished`)
watches a run's steps and sends, at most once each per run:

- Initial Alert: the first detect-phase check that fails (status Investigating);
- Status Update: the first mitigate-phase action that passes (status Monitoring);
- Resolved: the first resolve-phase check that passes, if no resolve step failed.

Each message states severity, impact, status and when the next update is due
(the severity's update cadence, `runbook.contract.update_cadence`: seed 003's P0
every 15m unless the operator's SLA file says otherwise), and the incident log's
chain head at that moment: a copy of its seq and sha256 kept by the chat or the
pager pins the log up to there (`runbook log verify LOG --expect SEQ:HASH`).
Configure with `RUNBOOK_NOTIFY_WEBHOOK` (a Slack-compatible incoming webhook;
its URL is a credential, never printed: errors name only scheme and host)
and/or `RUNBOOK_NOTIFY_STDOUT=1` (one JSON line per message on stdout, safe
alongside `--format json`). Dry-runs send nothing. A delivery failure is
raised, which the runner records as `observer.error` without failing the run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.contract import StepEvent, StepStatus, format_duration, hookimpl, update_cadence

WEBHOOK_ENV = "RUNBOOK_NOTIFY_WEBHOOK"
STDOUT_ENV = "RUNBOOK_NOTIFY_STDOUT"
TIMEOUT = 5.0
_FAILING = frozenset({StepStatus.FAILED, StepStatus.ERROR, StepStatus.TIMEOUT})


def _next_update(severity: str, now: datetime) -> str:
    every = update_cadence(severity)
    if every is None:
        return "as soon as there is news"
    due = now + timedelta(seconds=every)
    return f"by {due:%H:%M} UTC (every {format_duration(every)} for {severity})"


def _which(event: StepEvent, sent: set[str]) -> str | None:
    """Which message (if any) this finished step calls for, given what was sent."""
    if event.phase == "detect" and event.kind == "check" and event.status in _FAILING:
        return "initial"
    if event.phase == "mitigate" and event.kind == "action" and event.status == StepStatus.PASSED:
        return "update"
    if event.phase == "resolve" and event.status in _FAILING:
        sent.add("resolve-failed")
    elif event.phase == "resolve" and event.kind == "check" and event.status == StepStatus.PASSED:
        return None if "resolve-failed" in sent else "resolved"
    return None


def message(kind: str, event: StepEvent, now: datetime) -> str:
    """The seed template (000/002) for `kind`, filled from the event."""
    what = f"{event.step_id} {event.status}" + (f": {event.message}" if event.message else "")
    clock = f"{now:%Y-%m-%d %H:%M} UTC"
    next_update = _next_update(event.severity, now)
    lines = {
        "initial": [
            f"\U0001f6a8 INCIDENT: {event.title}",
            f"Severity: {event.severity}",
            "Status: Investigating",
            f"Impact: {what}",
            f"Start Time: {clock}",
            f"Next update: {next_update}",
        ],
        "update": [
            f"\U0001f4e2 UPDATE: {event.title}",
            f"Severity: {event.severity}",
            "Status: Monitoring",
            "Current Impact: mitigation applied; verifying recovery",
            f"Actions Taken: {what}",
            f"Time: {clock}",
            f"Next update: {next_update}",
        ],
        "resolved": [
            f"\u2705 RESOLVED: {event.title}",
            f"Severity: {event.severity}",
            "Status: Resolved",
            "Impact: none ongoing",
            f"Resolution: {what}",
            f"Time: {clock}",
            "Next update: none; post-mortem: runbook report LOG --format postmortem",
        ],
    }[kind]
    return "\n".join([*lines, f"Run: {event.run_id} ({event.runbook})", *_log_head(event)])


def _log_head(event: StepEvent) -> list[str]:
    """The incident log's chain head when the step finished: sent out, it pins the log."""
    if not event.log_hash:
        return []
    return [
        f"Log head: seq {event.log_seq} sha256 {event.log_hash} "
        f"(runbook log verify LOG --expect {event.log_seq}:{event.log_hash})"
    ]


def payload(kind: str, event: StepEvent, now: datetime) -> dict[str, Any]:
    """Slack-compatible body: `text` for any client, plus fields for bots."""
    status = {"initial": "investigating", "update": "monitoring", "resolved": "resolved"}[kind]
    return {
        "text": message(kind, event, now),
        "runbook_notification": {
            "kind": kind,
            "severity": event.severity,
            "status": status,
            "run_id": event.run_id,
            "runbook": event.runbook,
            "step": event.step_id,
            "log_seq": event.log_seq,
            "log_sha256": event.log_hash,
        },
    }


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<webhook>"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/…" if parts.scheme and host else "<webhook>"


def post(url: str, body: Mapping[str, Any]) -> None:
    """POST `body`; raise RuntimeError naming only scheme://host when it fails."""
    import httpx

    from .http import RequestStopped, exchange, json_post

    where = _redacted(url)
    try:  # TIMEOUT bounds the whole delivery: a slow receiver cannot hold the run
        response = exchange(json_post(url, dict(body)), TIMEOUT, threading.Event())[0]
    except (httpx.HTTPError, httpx.InvalidURL, RequestStopped) as exc:
        reason = str(exc).replace(url, where) or type(exc).__name__
        raise RuntimeError(f"webhook {where} failed: {reason}") from None
    if not response.is_success:
        raise RuntimeError(f"webhook {where} answered {response.status_code}")


class NotifyObserver:
    """Remembers, per run id, which messages went out, so each is sent once."""

    def __init__(self) -> None:
        self._sent: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    @hookimpl
    def runbook_step_finished(self, event: StepEvent) -> None:
        """Send the message this step calls for, if configured and not sent yet."""
        webhook = os.environ.get(WEBHOOK_ENV, "")
        to_stdout = os.environ.get(STDOUT_ENV) == "1"
        if event.dry_run or not (webhook or to_stdout):
            return
        with self._lock:
            sent = self._sent.setdefault(event.run_id, set())
            kind = _which(event, sent)
            if kind is None or kind in sent:
                return
            sent.add(kind)
        body = payload(kind, event, datetime.now(UTC))
        if to_stdout:
            sys.stdout.write(json.dumps({"notification": body}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        if webhook:
            post(webhook, body)


observer = NotifyObserver()
