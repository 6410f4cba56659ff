"""The `journald` executor: journal entries for units, parsed from `journalctl -o json`.

Read-only by nature, so a dry-run may run it (with the host's own journalctl).
It is written on top of a transport like shell and systemd: the same step reads
this machine's journal, one host's or a fleet's. Every option is passed as
`--name=value`, so a rendered value can never become another option
(`--unit=--file=/etc/shadow` stays a unit name). `file`/`directory` read
exported or copied journal files, which is also how the tests read real
journals made by systemd-journal-remote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    on_target,
    run_command,
)

from .unit_commands import ONE_OR_MORE_STRINGS, planned_command

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "journald",
    "description": "Read journal entries with `journalctl -o json`: filter by unit, time, "
    "priority and pattern; here or on a target's hosts.",
    "type": "object",
    "properties": {
        "unit": {**ONE_OR_MORE_STRINGS, "description": "Unit(s) whose entries to read (-u)."},
        "since": {
            "type": "string",
            "description": "Start time, journalctl syntax: '-30min', '2024-05-01 10:00', 'today'.",
        },
        "until": {"type": "string", "description": "End time, same syntax as `since`."},
        "priority": {
            "type": ["string", "integer"],
            "description": "Highest priority kept: "
            "a name (err, warning, ...), a number 0-7, or a range 'err..warning'.",
        },
        "grep": {
            "type": "string",
            "description": "Only entries whose MESSAGE matches this "
            "regular expression (journalctl --grep).",
        },
        "lines": {"type": ["integer", "string"], "description": "Only the last N entries."},
        "file": {
            **ONE_OR_MORE_STRINGS,
            "description": "Read these journal files instead of the system journal (--file).",
        },
        "directory": {
            "type": "string",
            "description": "Read the journal files in this directory (--directory).",
        },
        "sudo": {"type": "boolean", "default": False, "description": "Run with `sudo -n`."},
        "journalctl": {
            "type": "string",
            "minLength": 1,
            "default": "journalctl",
            "description": "The journalctl program on the host.",
        },
        "target": {"type": "string", "minLength": 1, "description": "Target to run on."},
    },
    "additionalProperties": False,
}
RESULT_FIELDS: Mapping[str, str] = {
    "entries": "list of {time, priority, unit, identifier, pid, message}, oldest first",
    "count": "number of entries",
    "count_errors": "entries with priority err or worse (<= 3)",
    "by_priority": "priority name -> number of entries",
    "text": "the entries as `time identifier[pid]: message` lines",
    "exit_code": "journalctl's exit status",
    "stderr": "journalctl's standard error",
}
_OPTIONS = ("since", "until", "priority", "grep", "lines")


def _listed(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]


def journal_argv(config: Mapping[str, Any]) -> list[str]:
    """The exact journalctl argv: every value attached with `=`, never a separate item."""
    argv = [str(config.get("journalctl", "journalctl")), "--output=json", "--no-pager"]
    argv += [f"--file={f}" for f in _listed(config.get("file"))]
    if "directory" in config:
        argv.append(f"--directory={config['directory']}")
    argv += [f"--unit={u}" for u in _listed(config.get("unit"))]
    argv += [f"--{key}={config[key]}" for key in _OPTIONS if key in config]
    return ["sudo", "-n", "--", *argv] if config.get("sudo") else argv


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    return planned_command(journal_argv(config), config)


def _text(value: Any) -> str:
    """MESSAGE is a string, or a byte array when it is not valid UTF-8."""
    if isinstance(value, list):
        return bytes(int(b) & 0xFF for b in value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def parse_entry(raw: Mapping[str, Any]) -> dict[str, Any]:
    stamp = str(raw.get("__REALTIME_TIMESTAMP") or "")
    when = (
        datetime.fromtimestamp(int(stamp) / 1e6, UTC).isoformat().replace("+00:00", "Z")
        if stamp.isdigit()
        else None
    )
    priority = str(raw.get("PRIORITY", "6"))
    pid = str(raw.get("_PID", ""))
    return {
        "time": when,
        "priority": int(priority) if priority.isdigit() else 6,
        "unit": _text(raw.get("_SYSTEMD_UNIT") or raw.get("UNIT")),
        "identifier": _text(raw.get("SYSLOG_IDENTIFIER")),
        "pid": int(pid) if pid.isdigit() else None,
        "message": _text(raw.get("MESSAGE")),
    }


def summarise(stdout: str) -> dict[str, Any]:
    """Fields from journalctl's JSON lines; lines that are not JSON are skipped."""
    entries = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                entries.append(parse_entry(json.loads(line)))
            except ValueError:
                continue
    by_priority: dict[str, int] = {}
    for entry in entries:
        name = PRIORITIES[min(max(entry["priority"], 0), 7)]
        by_priority[name] = by_priority.get(name, 0) + 1
    text = "".join(
        f"{e['time']} {e['identifier'] or e['unit']}"
        f"{'[' + str(e['pid']) + ']' if e['pid'] else ''}: {e['message']}\n"
        for e in entries
    )
    return {
        "entries": entries,
        "count": len(entries),
        "count_errors": sum(1 for e in entries if e["priority"] <= 3),
        "by_priority": by_priority,
        "text": text,
    }


def _host_result(config: Mapping[str, Any], ctx: ExecContext, conn: Any) -> StepResult:
    call = plan(config, PlanContext(ctx.step_id, ctx.target)).detail
    result = run_command(conn, journal_argv(config), ctx, call=call, program_required=True)
    if not result.ok:
        return result
    fields = summarise(str(result.fields["stdout"]))
    code = result.fields["exit_code"]
    stderr = str(result.fields["stderr"]).strip()
    if code != 0 and not fields["count"] and (stderr or "grep" not in config):
        # journalctl --grep exits 1 when nothing matched: that is zero entries, not a failure
        where = f" on {conn.host.name}" if conn.host.name != "localhost" else ""
        return StepResult.failure(f"journalctl failed{where} (exit {code}): {stderr}", call=call)
    fields.update(exit_code=code, stderr=result.fields["stderr"])
    return StepResult(ok=True, fields=fields, output=fields["text"], call=call)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Read the entries on every host of the target."""
    return on_target(ctx, config.get("target"), lambda conn, host: _host_result(config, ctx, conn))


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """Every read: the host's own `journalctl` with fixed `--name=value` read options
    (no option that vacuums, rotates or flushes can be formed). Not a step that names
    another `journalctl` program (that could be any program)."""
    return bool(config.get("journalctl", "journalctl") == "journalctl")


SPEC = ExecutorSpec(
    name="journald",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=True,
    side_effect_free_when=side_effect_free,
    description="Journal entries (journalctl -o json) for units, time ranges, priorities and "
    "patterns; counts by priority; local or over a target's transport.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The journald executor."""
    return [SPEC]
