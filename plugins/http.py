"""The `http` executor: one HTTP request, judged by status, headers, JSON and latency.

It is a check by default (GET/HEAD/OPTIONS only read, so a dry-run may run
them for real) and an action for methods that change things. Redirects are
not followed unless asked, because a health endpoint that redirects to a login
page is exactly the kind of failure a runbook must see. Connection problems are
reported as one line naming the request, in the words an operator searches for
("connection refused", "timed out after 2.0s", "TLS certificate verify failed").
httpx is imported inside `run()` so loading the plugin costs nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from runbook import hookimpl
from runbook.contract import ExecContext, ExecutorSpec, PlanContext, PlannedCall, StepResult

if TYPE_CHECKING:
    import httpx

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_TIMEOUT = 10.0
MAX_BODY = 1024 * 1024
"""Response bytes kept; a bigger body is cut here and `truncated` is set."""

# What OpenSSL reports when an https:// URL reaches a server speaking plain HTTP.
_PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)

_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "http",
    "description": "Send one HTTP request and expose status, headers, JSON body and latency.",
    "type": "object",
    "properties": {
        "url": {
            "description": "Absolute http:// or https:// URL.",
            "type": "string",
            "minLength": 1,
        },
        "method": {
            "description": "HTTP method; GET, HEAD and OPTIONS count as read-only.",
            "enum": list(METHODS),
            "default": "GET",
        },
        "headers": {"description": "Request headers, name -> value.", **_STRINGS},
        "json": {
            "description": "Request body sent as JSON (sets Content-Type); "
            "not together with `body`."
        },
        "body": {
            "description": "Raw request body text (UTF-8); not together with `json`.",
            "type": "string",
        },
        "params": {
            "description": "Query parameters appended to the URL, name -> value.",
            **_STRINGS,
        },
        "timeout": {
            "description": "Seconds allowed for connecting and for each read; "
            "the step's own timeout still applies when shorter. Default 10.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": DEFAULT_TIMEOUT,
        },
        "verify": {
            "description": "Verify the server's TLS certificate. Turn off only for "
            "a known self-signed endpoint.",
            "type": "boolean",
            "default": True,
        },
        "follow_redirects": {
            "description": "Follow 3xx redirects; off by default so a "
            "redirect is visible as its status.",
            "type": "boolean",
            "default": False,
        },
        "target": {
            "description": "Name of the target the request is made from; only "
            "targets with transport 'local' are supported so far.",
            "type": "string",
            "minLength": 1,
        },
    },
    "required": ["url"],
    "not": {"required": ["json", "body"]},
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "status": "HTTP status code (int)",
    "reason": "reason phrase, e.g. 'Service Unavailable'",
    "headers": "response headers, lower-case names (repeated headers joined with ', ')",
    "json": "the body parsed as JSON, or None when it is not JSON",
    "text": "the body decoded as text (charset from Content-Type, else UTF-8), bounded",
    "url": "final URL (differs from the request URL after followed redirects)",
    "elapsed": "seconds from sending the request to the end of the body, monotonic clock",
    "truncated": f"True when the body was longer than {MAX_BODY} bytes and was cut",
}


class _Stopped(Exception):
    """The request was abandoned on our side: cannot be built, cancelled, or over budget."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


def method_of(config: Mapping[str, Any]) -> str:
    return str(config.get("method", "GET")).upper()


def is_read_only(config: Mapping[str, Any]) -> bool:
    """GET, HEAD and OPTIONS only read, so a dry-run may send them for real."""
    return method_of(config) in READ_ONLY_METHODS


def _call(config: Mapping[str, Any]) -> dict[str, Any]:
    """The exact request, JSON-serialisable; shared by plan() and the result's `call`."""
    call: dict[str, Any] = {
        "method": method_of(config),
        "url": str(config["url"]),
        "headers": dict(config.get("headers", {})),
        "params": dict(config.get("params", {})),
        "timeout": float(config.get("timeout", DEFAULT_TIMEOUT)),
        "verify": bool(config.get("verify", True)),
        "follow_redirects": bool(config.get("follow_redirects", False)),
    }
    for key in ("json", "body", "target"):
        if key in config:
            call[key] = config[key]
    return call


def request_url(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` merged into its query (a param replaces a same-named one).

    Done here rather than by httpx, which drops a URL's own query whenever
    `params` is passed, so the plan shows exactly the URL that is requested.
    """
    if not params:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # left for httpx to reject with its own message
        return url + ("&" if "?" in url else "?") + urlencode(dict(params))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`GET https://host/path?query` and the exact request; no I/O."""
    call = _call(config)
    summary = f"{call['method']} {request_url(call['url'], call['params'])}"
    return PlannedCall(summary=summary, detail=call)


def effective_timeout(configured: float, step_timeout: float | None) -> float:
    """The request may not outlive the attempt: the shorter of the two budgets wins."""
    return configured if step_timeout is None else min(configured, step_timeout)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Send the request once and describe the response (or why there is none)."""
    from .process import transport_problem

    call = _call(config)
    problem = transport_problem("http", config.get("target"), ctx.target)
    if problem is not None:
        return StepResult.failure(problem, call=call)
    if ctx.cancel.is_set():
        return StepResult.failure("cancelled", call=call)
    return _send(call, effective_timeout(call["timeout"], ctx.timeout), ctx.cancel)


def _send(call: dict[str, Any], timeout: float, cancel: threading.Event) -> StepResult:
    import httpx

    start = time.monotonic()
    request_line = f"{call['method']} {request_url(call['url'], call['params'])}"
    try:
        with httpx.Client(
            verify=call["verify"], timeout=timeout, follow_redirects=call["follow_redirects"]
        ) as client:
            response = client.send(_build_request(client, call), stream=True)
            try:
                body, truncated = _read_body(response, start + timeout, timeout, cancel)
            finally:
                response.close()
    except _Stopped as stop:
        return StepResult.failure(
            f"{stop.reason}: {request_line}",
            timed_out=stop.timed_out,
            elapsed=time.monotonic() - start,
            call=call,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return StepResult.failure(
            f"{describe_error(exc, timeout)}: {request_line}",
            timed_out=isinstance(exc, httpx.TimeoutException),
            elapsed=time.monotonic() - start,
            call=call,
        )
    elapsed = time.monotonic() - start
    fields = _fields(response, body, truncated, elapsed)
    return StepResult(ok=True, fields=fields, output=fields["text"], elapsed=elapsed, call=call)


def _build_request(client: httpx.Client, call: Mapping[str, Any]) -> httpx.Request:
    """The httpx request; a value httpx cannot encode is the runbook's error, said plainly."""
    kwargs: dict[str, Any] = {"headers": call["headers"]}
    if "json" in call:
        kwargs["json"] = call["json"]
    elif "body" in call:
        kwargs["content"] = str(call["body"]).encode("utf-8")
    try:
        return client.build_request(
            call["method"], request_url(call["url"], call["params"]), **kwargs
        )
    except (UnicodeError, ValueError, TypeError) as exc:  # e.g. a non-ASCII header value
        raise _Stopped(f"invalid request ({_one_line(str(exc))})", timed_out=False) from exc


def _read_body(
    response: httpx.Response, deadline: float, timeout: float, cancel: threading.Event
) -> tuple[bytes, bool]:
    """Read at most MAX_BODY bytes, giving up on cancel or when the whole budget is spent.

    httpx's timeout bounds each read; a server trickling bytes could still hold
    the step forever without the overall deadline checked here.
    """
    body = bytearray()
    for chunk in response.iter_bytes():
        if cancel.is_set():
            raise _Stopped("cancelled", timed_out=False)
        if time.monotonic() > deadline:
            raise _Stopped(f"timed out after {float(timeout)}s", timed_out=True)
        room = MAX_BODY - len(body)
        body += chunk[:room]
        if len(chunk) > room:
            return bytes(body), True
    return bytes(body), False


def _fields(
    response: httpx.Response, body: bytes, truncated: bool, elapsed: float
) -> dict[str, Any]:
    try:
        text = body.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": {name.lower(): value for name, value in response.headers.items()},
        "json": None if truncated else _parse_json(body),
        "text": text,
        "url": str(response.url),
        "elapsed": elapsed,
        "truncated": truncated,
    }


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def describe_error(exc: Exception, timeout: float) -> str:
    """A short, greppable reason for a failed request, from the innermost cause."""
    import socket
    import ssl

    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {float(timeout)}s"
    cause = _root_cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve host ({cause.strerror})"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed ({cause.verify_message})"
    if isinstance(cause, ssl.SSLError):
        hint = "; is it plain HTTP?" if cause.reason in _PLAIN_HTTP_REASONS else ""
        return f"TLS error ({cause.reason or _one_line(str(cause))}{hint})"
    kinds: list[tuple[type[Exception], str]] = [
        (httpx.ConnectError, "cannot connect"),
        (httpx.UnsupportedProtocol, "unsupported URL"),
        (httpx.InvalidURL, "invalid URL"),
        (httpx.TooManyRedirects, "too many redirects"),
        (httpx.RemoteProtocolError, "bad response"),
        (httpx.LocalProtocolError, "invalid request"),
        (httpx.NetworkError, "connection broken"),
    ]
    kind = next((label for cls, label in kinds if isinstance(exc, cls)), type(exc).__name__)
    return f"{kind} ({_one_line(str(cause) or str(exc))})"


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _one_line(text: str) -> str:
    return " ".join(text.split())


SPEC = ExecutorSpec(
    name="http",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    read_only_when=is_read_only,
    default_expect=("200 <= status < 300",),
    description="Send one HTTP request (TLS verified, redirects not followed by default) and "
    "expose status, headers, JSON body, text and latency; GET/HEAD/OPTIONS are read-only.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The http executor."""
    return [SPEC]
