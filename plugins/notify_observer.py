"""Post the seeds' Initial Alert, Status Update and Resolved messages as a run unfolds,
and a Run Finished message carrying the log's final hash once the log is complete.

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

When the run ends (`runbook_run_finished`: after its final record is durable,
whether it finished, aborted, hit its deadline or was stopped by a signal) it
sends Run Finished: the verdict, the log's path, its final hash, and whether a key
signed it (with the key's fingerprint): the anchor for the whole log, kept where
whoever can edit the log cannot reach (`runbook log verify LOG [--key FP] --expect
HASH`). A `notify` step inside the run cannot carry that hash: records follow it.

Configure with `RUNBOOK_NOTIFY_WEBHOOK` (a Slack-compatible incoming webhook;
its URL is a credential, never printed: errors name only scheme and host)
and/or `RUNBOOK_NOTIFY_STDOUT=1` (one JSON line per message on stdout, safe
alongside `--format json`). Dry-runs send nothing. A delivery failure is
raised: the runner records a step message's as `observer.error` without failing
the run, and shows Run Finished's on the console (the log is closed by then).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.contract import (
    RunEvent,
    StepEvent,
    StepStatus,
    format_duration,
    hookimpl,
    update_cadence,
)

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


def finished_message(event: RunEvent) -> str:
    """Run Finished: the verdict and the anchor (final hash, signer) for the whole log."""
    key = f" --key {event.signer}" if event.signer else ""
    signed = (
        f"Signed: yes, key {event.signer}"
        if event.signed
        else "Signed: no (integrity only, not authenticity: this hash is what pins the log)"
    )
    verdict = f"{event.status} (exit {event.exit_code})" + (
        f": {event.reason}" if event.reason else ""
    )
    return "\n".join(
        [
            f"\U0001f3c1 RUN FINISHED: {event.title}",
            f"Severity: {event.severity}",
            f"Verdict: {verdict}",
            f"Run: {event.run_id} ({event.runbook})",
            f"Log: {event.log_path}",
            f"Log head: seq {event.log_seq} sha256 {event.final_hash} (final hash)",
            signed,
            f"Verify: runbook log verify {event.log_path}{key} --expect {event.final_hash}",
        ]
    )


def finished_payload(event: RunEvent) -> dict[str, Any]:
    """Slack-compatible body of Run Finished: `text`, plus the anchor's fields for bots."""
    return {
        "text": finished_message(event),
        "runbook_notification": {
            "kind": "finished",
            "severity": event.severity,
            "verdict": event.status,
            "exit_code": event.exit_code,
            "run_id": event.run_id,
            "runbook": event.runbook,
            "log_path": event.log_path,
            "log_seq": event.log_seq,
            "log_sha256": event.final_hash,
            "final_hash": event.final_hash,
            "signed": event.signed,
            "signer": event.signer or None,
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
        _send(payload(kind, event, datetime.now(UTC)), webhook, to_stdout)

    @hookimpl
    def runbook_run_finished(self, event: RunEvent) -> None:
        """Send Run Finished, with the log's final hash, if configured."""
        webhook = os.environ.get(WEBHOOK_ENV, "")
        to_stdout = os.environ.get(STDOUT_ENV) == "1"
        with self._lock:
            self._sent.pop(event.run_id, None)  # the run is over: forget it
        if event.dry_run or not (webhook or to_stdout):
            return
        _send(finished_payload(event), webhook, to_stdout)


def _send(body: Mapping[str, Any], webhook: str, to_stdout: bool) -> None:
    """To every configured channel: a JSON line on stdout, then the webhook."""
    if to_stdout:
        sys.stdout.write(json.dumps({"notification": body}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if webhook:
        post(webhook, body)


observer = NotifyObserver()
