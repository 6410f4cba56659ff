"""The `shell` executor: run a command here or on a target's hosts, as argv or an sh string.

An argv list runs without a shell, so no rendered value can ever become a pipe
or a second command; a `command` string runs under `/bin/sh -c` and the runner
shell-quotes every value rendered into it (`shell_fields`). The command gets
its own process group so a timeout or Ctrl-C stops everything it started, and
its output is bounded so a chatty command cannot exhaust memory or the log.
With `parse: json` its stdout becomes the result's `json` (parsed as the http
executor parses a body), so `expect`, `when` and later steps read fields of it;
without it, output stays text: a command that happens to print `1` or `null`
is not silently turned into data.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from runbook.contract import (
    Connection,
    ExecContext,
    ExecutorSpec,
    Host,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    on_target,
    run_command,
)

SHELL = ("/bin/sh", "-c")
DEFAULT_MAX_OUTPUT = 1024 * 1024
# The note a bounded stream ends with (plugins/process.py): the output was cut.
TRUNCATED = re.compile(r"\n\[\.\.\. truncated \d+ bytes \(kept the first \d+\) \.\.\.\]$")

SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "shell",
    "description": "Run a command: `argv` (no shell, preferred) or `command` (an sh string).",
    "type": "object",
    "properties": {
        "argv": {
            "description": "Program and arguments, run without a shell; each item is one "
            "argument whatever it contains.",
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
        },
        "command": {
            "description": "A /bin/sh command line; every value rendered into it is "
            "shell-quoted, so a parameter cannot add an argument or a command.",
            "type": "string",
            "minLength": 1,
        },
        "env": {
            "description": "Environment variables added to (or replacing) the inherited ones.",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "cwd": {
            "description": "Working directory; it must exist.",
            "type": "string",
            "minLength": 1,
        },
        "target": {
            "description": "Name of the target to run on (see `targets:`); default: this "
            "machine. A target with hosts (or a group) runs on each host, over its transport.",
            "type": "string",
            "minLength": 1,
        },
        "stdin": {
            "description": "Text fed to the command's standard input; without it the "
            "command reads nothing (/dev/null).",
            "type": "string",
        },
        "parse": {
            "description": "`json`: parse stdout as one JSON document into the result's "
            '`json` (e.g. `expect: ["json.active == 0"]`, `steps.ID.json.items`). After '
            "exit status 0, stdout that is not JSON is an error saying why; after another "
            "status `json` is None and the exit status is judged as usual. Without it `json` "
            "is None.",
            "enum": ["json"],
        },
        "max_output": {
            "description": "Bytes of stdout and of stderr kept (each); the rest is "
            "dropped and a note says how much. Default 1 MiB.",
            "type": "integer",
            "minimum": 0,
            "default": DEFAULT_MAX_OUTPUT,
        },
    },
    "oneOf": [{"required": ["argv"]}, {"required": ["command"]}],
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "exit_code": "exit status (negative: killed by that signal number)",
    "stdout": "standard output, UTF-8 decoded (undecodable bytes replaced), bounded",
    "stderr": "standard error, decoded and bounded like stdout",
    "pid": "process id of the command (also its process group id)",
    "elapsed": "seconds from start to exit, monotonic clock",
    "json": "with `parse: json`, stdout parsed as JSON (None without it)",
}


def _argv(config: Mapping[str, Any]) -> list[str]:
    if "argv" in config:
        return [str(arg) for arg in config["argv"]]
    return [*SHELL, str(config["command"])]


def _call(config: Mapping[str, Any]) -> dict[str, Any]:
    """The exact call, JSON-serialisable, shared by plan() and the result's `call`."""
    call: dict[str, Any]
    if "argv" in config:
        call = {"argv": [str(arg) for arg in config["argv"]]}
    else:
        call = {"command": str(config["command"]), "shell": list(SHELL)}
    if "env" in config:
        call["env"] = dict(config["env"])
    for key in ("cwd", "stdin", "target", "parse"):
        if key in config:
            call[key] = config[key]
    return call


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`$ argv...` for humans and the exact argv/command for the plan file; no I/O."""
    shown = shlex.join(_argv(config)) if "argv" in config else str(config["command"])
    return PlannedCall(summary=f"$ {shown}", detail=_call(config))


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Run the command once per host of the step's target (here by default).

    The same argv runs through whichever transport the target uses; over SSH
    it is shlex-joined, so every item stays exactly one remote argument.
    """
    call = _call(config)
    if ctx.cancel.is_set():
        return StepResult.failure("cancelled", call=call)
    argv = _argv(config)
    stdin = config["stdin"].encode("utf-8") if "stdin" in config else None
    max_output = int(config.get("max_output", DEFAULT_MAX_OUTPUT))

    def on_host(conn: Connection, host: Host) -> StepResult:
        result = run_command(
            conn,
            argv,
            ctx,
            call=call,
            stdin=stdin,
            env=config.get("env"),
            cwd=config.get("cwd"),
            max_output=max_output,
        )
        return with_json(result, max_output) if config.get("parse") == "json" else result

    return on_target(ctx, config.get("target"), on_host)


def with_json(result: StepResult, max_output: int) -> StepResult:
    """`result` with stdout parsed into `json`; an error when exit 0 printed no JSON."""
    from .http import parse_json

    if not result.ok:
        return result
    stdout = str(result.fields.get("stdout", ""))
    try:
        return replace(result, fields={**result.fields, "json": parse_json(stdout)})
    except ValueError as exc:
        if result.fields.get("exit_code") != 0:  # the exit status says what went wrong
            return replace(result, fields={**result.fields, "json": None})
        if TRUNCATED.search(stdout):
            why = f"it was cut at max_output ({max_output} bytes); raise `max_output`"
        elif stdout.strip():
            why = f"{exc}; it begins {stdout.strip()[:60]!r}"
        else:
            why = str(exc)
        error = f"stdout is not JSON (`parse: json`): {why}"
        return replace(result, ok=False, error=error, fields={**result.fields, "json": None})


SPEC = ExecutorSpec(
    name="shell",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    default_expect=("exit_code == 0",),
    shell_fields=("command",),
    description="Run a command here or on a target's hosts (local or ssh): an argv list "
    "(no shell) or an sh string with every rendered value quoted; bounded output, timeout "
    "and Ctrl-C kill its whole process group.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The shell executor."""
    return [SPEC]
