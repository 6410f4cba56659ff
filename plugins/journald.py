"""The `journald` executor: journal entries for units, parsed from `journalctl -o json`.

Read-only by nature, so a dry-run may run it (with the host's own journalctl).
It is written on top of a transport like shell and systemd: the same step reads
this machine's journal, one host's or a fleet's. Every option is passed as
`--name=value`, so a rendered value can never become another option
(`--unit=--file=/etc/shadow` stays a unit name). journalctl's output is read as
a stream, line by line, locally and over SSH: every matching entry is counted
whatever the volume, and only the newest `max_entries` are kept for `entries`
(the result says how many were left out). `file`/`directory` read exported or
copied journal files, which is also how the tests read real journals made by
systemd-journal-remote. How we differ from journalctl is in docs/peers.md.
"""

from __future__ import annotations

import inspect
import json
from collections import deque
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
    prop,
    run_command,
)

from .unit_commands import ONE_OR_MORE_STRINGS, planned_command

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
DEFAULT_MAX_ENTRIES = 1000
LINE_LIMIT = 16 * 1024 * 1024
"""Longest JSON line held (journalctl's `-o json` prints no field over 4096 bytes)."""
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
        "lines": {
            "type": ["integer", "string"],
            "description": "Only the newest N matching entries (journalctl -n); "
            "counts then cover those N.",
        },
        "max_entries": prop(
            "integer",
            f"Most entries kept in `entries`/`text` (the newest; default {DEFAULT_MAX_ENTRIES}). "
            "Counts "
            "always cover every matching entry; `entries_omitted` says how many were left out.",
            minimum=0,
        ),
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
    "entries": "the newest `max_entries` matching entries, oldest first: "
    "{time, priority, unit, identifier, pid, message}",
    "count": "number of matching entries (all of them, never capped)",
    "count_errors": "matching entries with priority err or worse (<= 3)",
    "by_priority": "priority name -> number of matching entries ('none': no PRIORITY)",
    "entries_omitted": "older matching entries counted but not kept in `entries` (0: none)",
    "text": "the kept entries as `time identifier[pid]: message` lines, after a "
    "`[... N older entries counted but not kept ...]` line when some were left out",
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


def _values(value: Any) -> list[Any]:
    """A field's values: journalctl prints a field the entry repeats as a JSON array.

    Each value is a string, an array of byte numbers (not valid or not printable
    UTF-8), or null (over 4096 bytes, which `-o json` leaves out), so an array
    is one binary value when it holds only numbers, else the repeated values.
    """
    if isinstance(value, list) and not all(isinstance(v, int) for v in value):
        return value
    return [] if value is None else [value]


def _text(value: Any) -> str:
    """One value as text: bytes decode as UTF-8, an invalid byte becoming U+FFFD."""
    if isinstance(value, list):
        return bytes(int(b) & 0xFF for b in value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _first(raw: Mapping[str, Any], *names: str) -> str:
    for name in names:
        values = _values(raw.get(name))
        if values and values[0] is not None:
            return _text(values[0])
    return ""


def _priority(value: Any) -> int | None:
    """The most severe of the entry's PRIORITY values (`-p` keeps it if any matches)."""
    levels = [int(v) for v in _values(value) if isinstance(v, str) and v.isdigit()]
    return min(levels) if levels else None


OMITTED = "[over 4096 bytes: journalctl -o json leaves it out]"
"""What `message` shows for a MESSAGE value that `journalctl -o json` prints as null."""


def _message(raw: Mapping[str, Any]) -> str:
    """Every MESSAGE value in journal order, one per line (a field may be repeated)."""
    if "MESSAGE" not in raw:
        return ""
    value = raw["MESSAGE"]
    return "\n".join(OMITTED if v is None else _text(v) for v in _values(value) or [None])


def parse_entry(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of `journalctl -o json`, as the `entries` of a result show it."""
    stamp = str(raw.get("__REALTIME_TIMESTAMP") or "")
    when = None
    if stamp.isdigit():
        seconds, micros = divmod(int(stamp), 1_000_000)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
        when = moment.isoformat().replace("+00:00", "Z")
    pid = _first(raw, "_PID")
    return {
        "time": when,
        "priority": _priority(raw.get("PRIORITY")),
        "unit": _first(raw, "_SYSTEMD_UNIT", "UNIT"),
        "identifier": _first(raw, "SYSLOG_IDENTIFIER"),
        "pid": int(pid) if pid.isdigit() else None,
        "message": _message(raw),
    }


def entry_line(entry: Mapping[str, Any]) -> str:
    """`time identifier[pid]: message`, as `text` shows an entry."""
    pid = f"[{entry['pid']}]" if entry["pid"] else ""
    return f"{entry['time']} {entry['identifier'] or entry['unit']}{pid}: {entry['message']}\n"


class JournalStream:
    """Reads journalctl's JSON lines as they arrive: counts every entry, keeps the newest.

    Counts (`count`, `count_errors`, `by_priority`) cover every entry whatever
    the volume; only the newest `keep` lines are held for `entries`, so memory
    stays bounded however many entries match. A line that is not a JSON
    object is not an entry we can count: it is counted as `bad` instead.
    """

    def __init__(self, keep: int) -> None:
        self.count = 0
        self.count_errors = 0
        self.by_priority: dict[str, int] = {}
        self.bad = 0
        self.first_bad = ""
        self._kept: deque[bytes] = deque(maxlen=max(keep, 0))
        self._pending = bytearray()
        self._overlong = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of stdout (any split: a line may span chunks)."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._hold(chunk[start:])
                return
            if self._pending or self._overlong:
                self._hold(chunk[start:end])
                line, self._pending = bytes(self._pending), bytearray()
                overlong, self._overlong = self._overlong, False
                self._line(line, overlong)
            else:
                self._line(chunk[start:end], False)
            start = end + 1

    def close(self) -> None:
        """End of stdout: a last line without its newline still counts."""
        if self._pending or self._overlong:
            line, self._pending = bytes(self._pending), bytearray()
            self._line(line, self._overlong)
            self._overlong = False

    def _hold(self, part: bytes) -> None:
        if self._overlong:
            return
        if len(self._pending) + len(part) > LINE_LIMIT:  # never hold an endless line
            self._pending = bytearray(self._pending[:200])
            self._overlong = True
            return
        self._pending += part

    def _line(self, line: bytes, overlong: bool) -> None:
        if not line.strip():
            return
        raw = None
        if not overlong:
            try:
                raw = json.loads(line)
            except ValueError:
                raw = None
        if not isinstance(raw, dict):
            self.bad += 1
            if not self.first_bad:
                shown = line[:200].decode("utf-8", errors="replace")
                self.first_bad = shown + (" ..." if overlong or len(line) > 200 else "")
            return
        self.count += 1
        priority = _priority(raw.get("PRIORITY"))
        name = "none" if priority is None else PRIORITIES[min(max(priority, 0), 7)]
        self.by_priority[name] = self.by_priority.get(name, 0) + 1
        if priority is not None and priority <= 3:
            self.count_errors += 1
        self._kept.append(line)

    def fields(self) -> dict[str, Any]:
        """The result fields: every count, the kept entries oldest first, their text."""
        entries = [parse_entry(json.loads(line)) for line in self._kept]
        omitted = self.count - len(entries)
        note = ""
        if omitted:
            note = (
                f"[... {omitted} older entries counted but not kept: showing the newest "
                f"{len(entries)} of {self.count} (max_entries {self._kept.maxlen}) ...]\n"
            )
        return {
            "entries": entries,
            "count": self.count,
            "count_errors": self.count_errors,
            "by_priority": self.by_priority,
            "entries_omitted": omitted,
            "text": note + "".join(entry_line(e) for e in entries),
        }


def _streams(conn: Any) -> bool:
    """Whether this connection can hand stdout over as it comes (`on_stdout`)."""
    try:
        params = inspect.signature(conn.run).parameters
    except (TypeError, ValueError):
        return False
    return "on_stdout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _host_result(config: Mapping[str, Any], ctx: ExecContext, conn: Any) -> StepResult:
    call = plan(config, PlanContext(ctx.step_id, ctx.target)).detail
    argv = journal_argv(config)
    stream = JournalStream(int(config.get("max_entries", DEFAULT_MAX_ENTRIES)))
    if _streams(conn):
        result = run_command(
            conn, argv, ctx, call=call, program_required=True, on_stdout=stream.feed
        )
    else:  # a transport that cannot stream: its (capped) output is parsed, and a cut
        # line shows up as a bad line below instead of as a silently low count
        result = run_command(conn, argv, ctx, call=call, program_required=True)
        stream.feed(str(result.fields.get("stdout", "")).encode("utf-8", errors="replace"))
    stream.close()
    if not result.ok:
        return result
    where = f" on {conn.host.name}" if conn.host.name != "localhost" else ""
    code = result.fields["exit_code"]
    stderr = str(result.fields["stderr"]).strip()
    if stream.bad:
        return StepResult.failure(
            f"journalctl printed {stream.bad} line(s){where} that are not JSON entries, so "
            f"its entries cannot all be counted; the first: {stream.first_bad!r}"
            + (f" (stderr: {stderr})" if stderr else ""),
            call=call,
        )
    if code != 0 and not stream.count and (stderr or "grep" not in config):
        # journalctl --grep exits 1 when nothing matched: that is zero entries, not a failure
        return StepResult.failure(f"journalctl failed{where} (exit {code}): {stderr}", call=call)
    fields = stream.fields()
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
