"""`tcp_port`: an example third-party executor for runbook.

Checks that a TCP port on a host accepts connections, the way a responder runs
`nc -z db.internal 5432` before blaming the application. The whole plugin is
this module plus one entry point in pyproject.toml:

    [project.entry-points.runbook]
    tcp_port = "runbook_tcp_port"

A runbook then says:

    check: {tcp_port: {host: db.internal, port: 5432, timeout: 3}}
    expect: ["open", "elapsed < 0.5"]
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    prop,
)

# `runbook.contract` is the whole plugin contract; import nothing else from runbook.
# `prop()` describes a key; an integer or number may also be one `{{ ... }}` template
# (`port: "{{ params.port }}"`), which the runner renders before plan() and run().
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tcp_port",
    "description": "Connect to host:port over TCP and report whether the port accepts connections.",
    "type": "object",
    "required": ["host", "port"],
    "additionalProperties": False,
    "properties": {
        "host": prop("string", "Host name or IP address to connect to.", minLength=1),
        "port": prop("integer", "TCP port, 1-65535.", minimum=1, maximum=65535),
        "timeout": {
            **prop(
                "number",
                "Seconds allowed for the connection; the step's own timeout "
                "still applies when it is shorter.",
                exclusiveMinimum=0,
            ),
            "default": 3,
        },
    },
}

RESULT_FIELDS = {
    "open": "True when the connection was accepted",
    "address": "the address actually connected to, 'ip:port'",
    "elapsed": "seconds the connection took (or until it failed)",
    "error": "why the port is not open ('connection refused', 'timed out', ...), else ''",
}


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """Pure: say what would be done, from the config alone (no DNS, no socket)."""
    host, port = str(config["host"]), int(config["port"])
    timeout = float(config.get("timeout", 3))
    return PlannedCall(
        summary=f"tcp connect {host}:{port} (timeout {timeout:g}s)",
        detail={"host": host, "port": port, "timeout": timeout},
    )


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Connect once. A closed port is an answer (ok, `open` false); an unknown host is not."""
    call = plan(config, PlanContext(ctx.step_id)).detail
    host, port, timeout = call["host"], call["port"], call["timeout"]
    if ctx.timeout is not None:
        timeout = min(timeout, ctx.timeout)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return StepResult.failure(f"cannot resolve {host!r}: {exc.strerror}", call=call)
    family, kind, proto, _, sockaddr = infos[0]
    started = time.monotonic()
    error = ""
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except TimeoutError:
            error = f"timed out after {timeout:g}s"
        except OSError as exc:
            error = (exc.strerror or str(exc)).lower()
    elapsed = time.monotonic() - started
    fields = {
        "open": not error,
        "address": f"{sockaddr[0]}:{sockaddr[1]}",
        "elapsed": round(elapsed, 4),
        "error": error,
    }
    summary = f"{host}:{port} " + ("open" if not error else f"not open: {error}")
    return StepResult(ok=True, fields=fields, output=summary, elapsed=elapsed, call=call)


def connect_only(config: Mapping[str, Any]) -> bool:
    """Every call: a TCP connect, closed at once without sending a byte."""
    return True


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    return [
        ExecutorSpec(
            name="tcp_port",
            schema=SCHEMA,
            plan=plan,
            run=run,
            read_only=True,  # a check
            side_effect_free_when=connect_only,  # guaranteed harmless: a dry-run may run it
            default_expect=("open",),
            description="Check that a TCP port on a host accepts connections (like nc -z).",
            result_fields=RESULT_FIELDS,
        )
    ]
