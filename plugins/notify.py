"""The `notify` executor: tell people, on the console and optionally through a webhook.

The webhook speaks the Slack incoming-webhook dialect (`{"text": ...}`), which
Mattermost, Rocket.Chat, Teams connectors and most chat bridges also accept.
A notification is a courtesy, not part of the fix: a chat outage must not stop
a mitigation, so delivery failures are recorded in the fields and the step
still passes, unless the runbook says `fail_on_error: true`. Webhook URLs
carry their credential in the path, so error messages show only scheme and host.

A notify step runs inside the run, so its message cannot carry the incident log's
final hash: the step's own records, and the run's end, are written after it is sent.
The anchor for the whole log is the run-finished notification (the `notify-observer`
plugin, `RUNBOOK_NOTIFY_WEBHOOK`), sent once the final record is durable, and the
final hash `runbook run` prints.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
)

DEFAULT_TIMEOUT = 5.0

SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "notify",
    "description": "Print a message and optionally POST it to a Slack-compatible webhook.",
    "type": "object",
    "properties": {
        "message": {
            "description": "The message text (a template, rendered before sending).",
            "type": "string",
        },
        "title": {
            "description": "Short headline, sent in bold above the message.",
            "type": "string",
        },
        "webhook": {
            "description": "Slack-compatible incoming-webhook URL; keep it in a "
            "secret param, it is a credential.",
            "type": "string",
            "minLength": 1,
        },
        "channel": {
            "description": "Channel override sent with the webhook payload (e.g. '#incidents').",
            "type": "string",
            "minLength": 1,
        },
        "stdout": {
            "description": "Also print the message on the console. Default true.",
            "type": "boolean",
            "default": True,
        },
        "fail_on_error": {
            "description": "Fail the step when the webhook cannot deliver; "
            "by default a delivery failure is only recorded.",
            "type": "boolean",
            "default": False,
        },
        "timeout": {
            "description": "Seconds allowed for the whole webhook call (connecting, "
            "sending and the answer), in total. Default 5.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": DEFAULT_TIMEOUT,
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "message": "the message text",
    "title": "the title, or None",
    "delivered": "True when the webhook accepted the message (2xx); False without a "
    "webhook or when delivery failed",
    "webhook_status": "HTTP status the webhook answered, or None",
    "webhook_error": "why delivery failed, or None",
    "stdout": "whether the runner prints the message on the console",
}


def _call(config: Mapping[str, Any]) -> dict[str, Any]:
    call = {
        "message": config["message"],
        "webhook": config.get("webhook"),
        "channel": config.get("channel"),
    }
    if "title" in config:
        call["title"] = config["title"]
    return call


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`notify: <first line> + POST <webhook>`; no I/O."""
    lines = str(config["message"]).splitlines()
    summary = f"notify: {lines[0] if lines else ''}"
    if config.get("webhook"):
        summary += f" + POST {config['webhook']}"
    return PlannedCall(summary=summary, detail=_call(config))


def payload(config: Mapping[str, Any]) -> dict[str, str]:
    """The Slack-compatible JSON body: `text`, plus `channel` when given."""
    text = str(config["message"])
    if config.get("title"):
        text = f"*{config['title']}*\n{text}"
    body = {"text": text}
    if config.get("channel"):
        body["channel"] = str(config["channel"])
    return body


def prints_message(config: Mapping[str, Any]) -> bool:
    """Whether the console shows the message (`stdout`, default true)."""
    return bool(config.get("stdout", True))


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Deliver to the webhook (if any); the runner prints the message when `stdout`."""
    call = _call(config)
    fields: dict[str, Any] = {
        "message": config["message"],
        "title": config.get("title"),
        "delivered": False,
        "webhook_status": None,
        "webhook_error": None,
        "stdout": prints_message(config),
    }
    start = time.monotonic()
    timed_out = False
    if config.get("webhook"):
        timed_out = _deliver(config, ctx, fields)
    elapsed = time.monotonic() - start
    error = fields["webhook_error"]
    ok = error is None or not config.get("fail_on_error", False)
    return StepResult(
        ok=ok,
        fields=fields,
        output=str(config["message"]),
        error=None if ok else error,
        timed_out=timed_out and not ok,
        elapsed=elapsed,
        call=call,
    )


def _deliver(config: Mapping[str, Any], ctx: ExecContext, fields: dict[str, Any]) -> bool:
    """POST the payload; fill delivered/webhook_status/webhook_error. True on a timeout."""
    import httpx

    from .http import RequestStopped, describe_error, effective_timeout, exchange, json_post

    url = str(config["webhook"])
    where = f"POST {_redacted(url)}"
    if ctx.cancel.is_set():
        fields["webhook_error"] = f"cancelled: {where}"
        return False
    timeout = effective_timeout(float(config.get("timeout", DEFAULT_TIMEOUT)), ctx.timeout)
    try:  # the timeout bounds the whole delivery, however slowly the receiver answers
        response, body, _ = exchange(json_post(url, payload(config)), timeout, ctx.cancel)
    except RequestStopped as stop:
        fields["webhook_error"] = f"{stop.reason}: {where}"
        return stop.timed_out
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        fields["webhook_error"] = f"{describe_error(exc, timeout)}: {where}"
        return isinstance(exc, httpx.TimeoutException)
    fields["webhook_status"] = response.status_code
    if response.is_success:
        fields["delivered"] = True
    else:
        reply = " ".join(body[:800].decode("utf-8", "replace")[:200].split())
        fields["webhook_error"] = (
            f"webhook answered {response.status_code} {response.reason_phrase}: {where}"
            + (f" ({reply})" if reply else "")
        )
    return False


def _redacted(url: str) -> str:
    """scheme://host[:port]/… — the path of a webhook URL is its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<webhook>"
    if not parts.scheme or not parts.netloc:
        return "<webhook>"
    host = parts.netloc.rpartition("@")[2]  # never echo user:password@
    return (
        f"{parts.scheme}://{host}/…" if parts.path not in ("", "/") else f"{parts.scheme}://{host}/"
    )


SPEC = ExecutorSpec(
    name="notify",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    needs_confirmation=False,  # telling people is not a change to confirm
    talks_to_person=True,
    shows_output=prints_message,
    url_fields=("webhook",),
    description="Print a message and optionally POST it to a Slack-compatible webhook; a "
    "failed delivery is recorded, and fails the step only with fail_on_error.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The notify executor."""
    return [SPEC]
