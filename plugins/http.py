"""The `http` executor: one HTTP request, judged by status, headers, JSON and latency.

It is a check by default (GET/HEAD/OPTIONS are meant only to read) and an
action for methods that change things. A dry-run sends nothing, not even a
GET: what a request does is up to the server. Redirects are
not followed unless asked, because a health endpoint that redirects to a login
page is exactly the kind of failure a runbook must see. Connection problems are
reported as one line naming the request, in the words an operator searches for
("connection refused", "timed out after 2.0s", "TLS certificate verify failed").
`timeout` bounds the whole request, headers and body included, not each read:
a server that answers a byte a second is cut off at the deadline (`exchange`,
which the notify executor and observer use too).
`url` is a URL field: a value rendered into it is percent-encoded for the part
it lands in (see `ExecutorSpec.url_fields`); the URL that results, or one taken
whole from a value, must be http(s) with a host, and no header may hold a line
break, or nothing is sent.
httpx is imported inside `run()` so loading the plugin costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from runbook.contract import (
    ExecContext,
    ExecutorError,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
)

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
            "description": "Absolute http:// or https:// URL. A `{{ }}` value inside it is "
            "percent-encoded for where it lands: one path segment, one query value (it cannot "
            "add a path, query or fragment). To take the whole URL from a param, make the "
            "field exactly `{{ params.url }}`; it must still be an http(s) URL with a host.",
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
            "description": "Seconds allowed for the whole request: connecting, sending, "
            "and reading the status, headers and body, in total (a server sending a byte "
            "at a time cannot stretch it); the attempt's own timeout still applies when "
            "shorter. Default 10.",
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
    "status_code": "HTTP status code (int), the same in `expect`, `when` and later steps "
    "(`steps.ID.status_code`)",
    "status": "the HTTP status code too, for `expect` only: in `steps.ID` and `register: "
    "{x: ''}` `status` is the step's outcome (passed, failed...), so read `status_code` there",
    "reason": "reason phrase, e.g. 'Service Unavailable'",
    "headers": "response headers, lower-case names (repeated headers joined with ', ')",
    "json": "the body parsed as JSON, or None when it is not JSON",
    "text": "the body decoded as text (charset from Content-Type, else UTF-8), bounded",
    "url": "final URL (differs from the request URL after followed redirects)",
    "elapsed": "seconds from sending the request to the end of the body, monotonic clock",
    "truncated": f"True when the body was longer than {MAX_BODY} bytes and was cut",
}


class RequestStopped(ExecutorError):
    """The request was given up on our side: it cannot be built, was cancelled, or ran
    past its deadline (`timed_out`). `reason` is the one-line why, without the URL."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


def method_of(config: Mapping[str, Any]) -> str:
    return str(config.get("method", "GET")).upper()


def is_read_only(config: Mapping[str, Any]) -> bool:
    """GET, HEAD and OPTIONS are meant only to read. Not guaranteed: a server may act on
    any request (a webhook, an admin endpoint), so a dry-run never sends one."""
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
        response, body, truncated = exchange(call, timeout, cancel)
    except (RequestStopped, httpx.HTTPError, httpx.InvalidURL) as exc:
        return unfinished_exchange(exc, request_line, timeout, start, call)
    elapsed = time.monotonic() - start
    fields = _fields(response, body, truncated, elapsed)
    return StepResult(ok=True, fields=fields, output=fields["text"], elapsed=elapsed, call=call)


_POLL_SECONDS = 0.05
_SETTLE_SECONDS = 0.5


def exchange(
    call: Mapping[str, Any], timeout: float, cancel: threading.Event
) -> tuple[httpx.Response, bytes, bool]:
    """Send `call` and read its response within `timeout` seconds in total: connecting,
    sending, the status line and headers, and the body (at most MAX_BODY bytes).

    httpx's timeouts bound each network operation, not their sum, so a server
    sending a byte a second would hold a request for ever. The request runs on
    a thread of its own while this one watches the clock and `cancel`; when
    either fires, the sockets it opened are shut down (which wakes a read or
    write blocked on them) and RequestStopped is raised without waiting for
    more than a moment. Returns the (closed) response, its body and whether the
    body was cut; httpx's own errors are raised as they come. `call` is the
    shape `plan()` shows (method, url, params, headers, json/body, verify,
    follow_redirects).
    """
    deadline = time.monotonic() + timeout
    watch = _Watch()
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_exchange(call, timeout, deadline, watch))
        except BaseException as exc:  # handed over to the waiting thread
            outcome.append(exc)
        finally:
            watch.close()
            done.set()

    threading.Thread(target=work, name="http-request", daemon=True).start()
    while not done.wait(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0.0))):
        if cancel.is_set() or time.monotonic() >= deadline:
            watch.abandon()
            done.wait(_SETTLE_SECONDS)  # a moment to close the connection cleanly
            if cancel.is_set():
                raise RequestStopped("cancelled", timed_out=False)
            raise RequestStopped(f"timed out after {float(timeout)}s", timed_out=True)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


def json_post(url: str, body: Any) -> dict[str, Any]:
    """The call for `exchange` that POSTs `body` as JSON to `url` (webhooks), TLS verified."""
    return {
        "method": "POST",
        "url": url,
        "params": {},
        "headers": {},
        "json": body,
        "verify": True,
        "follow_redirects": False,
    }


def _exchange(
    call: Mapping[str, Any], timeout: float, deadline: float, watch: _Watch
) -> tuple[httpx.Response, bytes, bool]:
    import httpx

    with httpx.Client(
        verify=call["verify"], timeout=timeout, follow_redirects=call["follow_redirects"]
    ) as client:
        request = _build_request(client, call)
        request.extensions["trace"] = watch.trace  # kept on redirects
        response = client.send(request, stream=True)
        try:
            body, truncated = _read_body(response, deadline, timeout, watch)
        finally:
            response.close()
    return response, body, truncated


class _Watch:
    """The sockets one request opened, so that another thread can cut them off.

    httpcore reports each new connection through the request's `trace`
    extension; a duplicate of its socket is kept (TLS takes the original
    over), and `shutdown` on it ends any read or write in progress at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self.abandoned = False

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):
                self._sockets.append(sock.dup())
                if self.abandoned:
                    _cut(self._sockets[-1])

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            for sock in self._sockets:
                _cut(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _build_request(client: httpx.Client, call: Mapping[str, Any]) -> httpx.Request:
    """The httpx request; a value httpx cannot encode is the runbook's error, said plainly."""
    kwargs: dict[str, Any] = {"headers": call["headers"]}
    if "json" in call:
        kwargs["json"] = call["json"]
    elif "body" in call:
        kwargs["content"] = str(call["body"]).encode("utf-8")
    problem = url_problem(call["url"]) or _header_problem(call["headers"])
    if problem is not None:
        raise RequestStopped(problem, timed_out=False)
    try:
        return client.build_request(
            call["method"], request_url(call["url"], call["params"]), **kwargs
        )
    except (UnicodeError, ValueError, TypeError) as exc:  # e.g. a non-ASCII header value
        raise RequestStopped(f"invalid request ({_one_line(str(exc))})", timed_out=False) from exc


def url_problem(url: str) -> str | None:
    """Why `url` is not an absolute http(s) URL this executor will request, or None."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "invalid URL (it holds a control character, e.g. a line break)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"invalid URL ({_one_line(str(exc))})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"unsupported URL (scheme {parts.scheme or 'missing'!r}: use http:// or https://)"
    if not host:
        return "invalid URL (no host)"
    return None


def _header_problem(headers: Mapping[str, str]) -> str | None:
    """A header that would split the request (CR, LF or NUL in its name or value)."""
    for name, value in headers.items():
        if any(ch in f"{name}{value}" for ch in "\r\n\0"):
            return f"invalid request (header {_one_line(name)!r} holds a line break or NUL)"
    return None


def _read_body(
    response: httpx.Response, deadline: float, timeout: float, watch: _Watch
) -> tuple[bytes, bool]:
    """Read at most MAX_BODY bytes, giving up when abandoned or the whole budget is spent."""
    body = bytearray()
    for chunk in response.iter_bytes():
        if watch.abandoned:
            raise RequestStopped("cancelled", timed_out=False)
        if time.monotonic() > deadline:
            raise RequestStopped(f"timed out after {float(timeout)}s", timed_out=True)
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
        "status_code": response.status_code,
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": {name.lower(): value for name, value in response.headers.items()},
        "json": None if truncated else _json_or_none(body),
        "text": text,
        "url": str(response.url),
        "elapsed": elapsed,
        "truncated": truncated,
    }


def parse_json(data: bytes | str) -> Any:
    """The one way a result's `json` field is made from text (an HTTP body here, a shell
    command's stdout with `parse: json`). Raises ValueError with a one-line reason
    (`Expecting value: line 1 column 1 (char 0)`) when `data` is not one JSON document."""
    if not data.strip():
        raise ValueError("empty, no JSON document")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def _json_or_none(body: bytes) -> Any:
    """An HTTP body's `json`: None when it is not JSON (an HTML error page is an answer)."""
    try:
        return parse_json(body)
    except ValueError:
        return None


def unfinished_exchange(
    exc: Exception, request_line: str, timeout: float, start: float, call: dict[str, Any]
) -> StepResult:
    """The failed result of an `exchange()` that did not complete: stopped by its deadline or
    the operator (`RequestStopped`), or an httpx error. Shared by every executor built on it."""
    import httpx

    if isinstance(exc, RequestStopped):
        reason, timed_out = exc.reason, exc.timed_out
    else:
        reason, timed_out = describe_error(exc, timeout), isinstance(exc, httpx.TimeoutException)
    return StepResult.failure(
        f"{reason}: {request_line}",
        timed_out=timed_out,
        elapsed=time.monotonic() - start,
        call=call,
    )


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
    url_fields=("url",),
    description="Send one HTTP request (TLS verified, redirects not followed by default) and "
    "expose status, headers, JSON body, text and latency; GET/HEAD/OPTIONS are read-only.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The http executor."""
    return [SPEC]
