"""Show incident logs to humans: `runbook log list` and `runbook log show`.

The log records everything; a post-mortem needs the story: which phase the
responders were in, what ran, what failed and why, who confirmed what, and how
the run ended. So this keeps the events that carry that story (a passing
expectation or a first attempt is noise) and prints one line per event. It is
tolerant by design: it renders whatever a log holds, old or partial, with
missing keys left out rather than failing. Times are shown in UTC, as stored,
so timelines from responders in different time zones line up.

Listing reads only each log's first and last lines (the header, and the record
that says how the run ended), so a directory of large logs lists quickly; it
does not verify. This module reads files as plain JSON Lines and does not
import the journal, which re-exports `list_logs` as part of its API.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from runbook.log.records import RecordType, StepStatus
from runbook.text import escape_controls

_BACK_BLOCK = 64 * 1024
_MAX_TEXT = 300
_GREEN, _RED, _YELLOW = "\x1b[32m", "\x1b[31m", "\x1b[33m"
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_STATUS_COLORS: dict[str, str] = {
    **dict.fromkeys((StepStatus.PASSED, StepStatus.PLANNED, "accepted"), _GREEN),
    **dict.fromkeys(
        (StepStatus.FAILED, StepStatus.ERROR, StepStatus.TIMEOUT, StepStatus.DECLINED), _RED
    ),
    **dict.fromkeys(
        (StepStatus.SKIPPED, StepStatus.INTERRUPTED, StepStatus.INCOMPLETE, StepStatus.UNKNOWN),
        _YELLOW,
    ),
}


class _Style:
    """ANSI colour when asked for (the CLI decides: TTY and NO_COLOR), plain otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and code else text

    def status(self, status: str) -> str:
        return self.paint(_text(status), _STATUS_COLORS.get(status, ""))


def _text(value: Any) -> str:
    """One safe line: control characters (newlines, ANSI escapes from command
    output) shown escaped, as the live console shows them, so a log cannot rewrite
    the operator's terminal. Lone surrogates (kept from undecodable output) are shown
    as `\\udXXX` too: no terminal encoding can write them."""
    text = escape_controls(str(value))
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    if not math.isfinite(seconds) or seconds > 1e12:  # JSON from elsewhere: Infinity, 1e308
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def _clock(ts: Any) -> str:
    """HH:MM:SS.mmm out of the stored `YYYY-mm-ddTHH:MM:SS.ffffffZ`."""
    text = str(ts or "")
    return _text(text[11:23] if len(text) >= 23 else text.ljust(12))


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else empty: logs from other versions may differ."""
    return value if isinstance(value, Mapping) else {}


def _header_lines(data: Mapping[str, Any], style: _Style) -> list[str]:
    book = _mapping(data.get("runbook"))
    title = f" — {_text(book['title'])}" if book.get("title") else ""
    severity = f" ({_text(book['severity'])})" if book.get("severity") else ""
    rows = [
        ("runbook", f"{_text(book.get('name', '?'))}{title}{severity}"),
        ("run id", _text(data.get("run_id", "?"))),
        ("operator", f"{_text(data.get('operator', '?'))} on {_text(data.get('host', '?'))}"),
        ("os user", _os_user(data.get("identity"))),
        ("started", f"{_text(data.get('started', '?'))} (times below are UTC)"),
        ("dry-run", "yes: nothing was changed" if data.get("dry_run") else "no"),
        ("signed", _signing(data.get("signing"))),
    ]
    return [f"{style.paint((label + ':').ljust(9), _BOLD)} {value}" for label, value in rows]


def _os_user(value: Any) -> str:
    """Who the kernel said ran it, beside the claimed operator name (and where that came from)."""
    identity = _mapping(value)
    if "os_user" not in identity:
        return "not recorded (the operator name above is only claimed)"
    text = f"{_text(identity['os_user'])} (uid {_text(identity.get('os_uid', '?'))})"
    if "os_euid" in identity:
        text += f", effective {_text(identity.get('os_euser', '?'))} ({_text(identity['os_euid'])})"
    if identity.get("sudo_user"):
        text += f", via sudo from {_text(identity['sudo_user'])}"
    if identity.get("ssh_client"):
        text += f", over SSH from {_text(identity['ssh_client'])}"
    claimed = identity.get("claimed_from")
    return text + (f"; the operator name is claimed ({_text(claimed)})" if claimed else "")


def _signing(value: Any) -> str:
    info = _mapping(value)
    if not info:
        return "no (integrity only: `runbook log verify --expect HASH` pins it)"
    return f"{_text(info.get('alg', '?'))} {_text(info.get('fingerprint', '?'))}"


def _step_started(d: Mapping[str, Any], s: _Style) -> str:
    title = f": {_text(d['title'])}" if d.get("title") else ""
    via = f" ({_text(d['executor'])})" if d.get("executor") else ""
    return f"{_text(d.get('kind', 'step'))} started{via}{title}"


def _step_attempt(d: Mapping[str, Any], s: _Style) -> str | None:
    attempt, call = d.get("attempt", 1), _mapping(d.get("call"))
    if not isinstance(attempt, int) or attempt <= 1 or "summary" not in call:
        return None  # the first attempt is implied by "started", a bare retry by step.retry
    return f"attempt {attempt}: {_text(call['summary'])}"


def _step_hosts_started(d: Mapping[str, Any], s: _Style) -> str:
    hosts = d.get("hosts")
    names = ", ".join(_text(h) for h in hosts) if isinstance(hosts, list) else "?"
    return f"hosts started: {names}"


def _step_host_finished(d: Mapping[str, Any], s: _Style) -> str:
    fields = _mapping(d.get("fields"))
    if not d.get("ok", True):
        how = s.paint("error", _RED) + f": {_text(d.get('error', ''))}"
    elif "exit_code" in fields:
        how = f"exit {_text(fields['exit_code'])}"
    else:
        how = "done"
    took = f" ({_duration(d['elapsed'])})" if _duration(d.get("elapsed")) else ""
    carried = (
        s.paint(f" (finished in run {_text(d['restored_from'])}; not run again)", _DIM)
        if d.get("restored_from")
        else ""
    )
    return f"host {_text(d.get('host', '?'))} finished: {how}{took}{carried}"


def _step_retry(d: Mapping[str, Any], s: _Style) -> str:
    reason = _text(d.get("reason") or StepStatus.FAILED)
    wait = f" in {_duration(d['delay'])}" if _duration(d.get("delay")) else ""
    total = f" of {_text(d['attempts'])}" if d.get("attempts") else ""
    upcoming = f" (attempt {_text(d['next_attempt'])}{total})" if d.get("next_attempt") else ""
    return s.paint(f"{reason}, retrying{wait}", _YELLOW) + upcoming


def _step_output(d: Mapping[str, Any], s: _Style) -> str:
    lines = str(d.get("text", "")).rstrip("\n").split("\n")
    more = s.paint(f" (+{len(lines) - 1} more lines)", _DIM) if len(lines) > 1 else ""
    return f"output: {_text(lines[0])}{more}"


def _step_result(d: Mapping[str, Any], s: _Style) -> str | None:
    if d.get("ok", True):
        return None  # judged by expectations; step.finished tells the outcome
    took = f" after {_duration(d['elapsed'])}" if _duration(d.get("elapsed")) else ""
    return (
        s.paint(f"attempt {_text(d.get('attempt', '?'))} error", _RED)
        + f"{took}: {_text(d.get('error', ''))}"
    )


def _step_expectation(d: Mapping[str, Any], s: _Style) -> str | None:
    if d.get("passed", True):
        return None
    message = f": {_text(d['message'])}" if d.get("message") else ""
    return s.paint("expectation failed", _RED) + f" `{_text(d.get('expr', '?'))}`{message}"


def _step_confirmation(d: Mapping[str, Any], s: _Style) -> str:
    verdict = s.status("accepted" if d.get("accepted") else "declined")
    who = _text(d.get("operator") or "?")
    identity = _mapping(d.get("identity"))
    if "os_user" in identity:
        who += f" (claimed; OS {_text(identity['os_user'])}, uid {_text(identity.get('os_uid'))})"
    via = f" via {_text(d['method'])}" if d.get("method") else ""
    answer = f" answered {_text(d['answer'])!r}" if d.get("answer") is not None else ""
    return f"confirmation {verdict} by {who}{via}{answer}: {_text(d.get('prompt', ''))}"


def _step_finished(d: Mapping[str, Any], s: _Style) -> str:
    status = str(d.get("status", "finished"))
    took = f" ({_duration(d['elapsed'])})" if _duration(d.get("elapsed")) else ""
    attempts = d.get("attempts")
    tries = f" after {attempts} attempts" if isinstance(attempts, int) and attempts > 1 else ""
    passed = status == StepStatus.PASSED
    message = f": {_text(d['message'])}" if d.get("message") and not passed else ""
    return f"{_text(d.get('kind', 'step'))} {s.status(status)}{took}{tries}{message}"


def _step_skipped(d: Mapping[str, Any], s: _Style) -> str:
    return s.status(StepStatus.SKIPPED) + (f": {_text(d['reason'])}" if d.get("reason") else "")


def _step_restored(d: Mapping[str, Any], s: _Style) -> str:
    status = str(d.get("status", "finished"))
    run = f" in run {_text(d['from_run'])}" if d.get("from_run") else ""
    return f"{_text(d.get('kind', 'step'))} {s.status(status)}{run}: restored, not run again"


def _incident_mark(d: Mapping[str, Any], s: _Style) -> str:
    by = f" (step {_text(d['step'])})" if d.get("step") else ""
    return s.paint(f"incident {_text(d.get('mark', '?'))}", _BOLD) + by


def _step_planned(d: Mapping[str, Any], s: _Style) -> str:
    unknown = d.get("unknown")
    note = s.paint(" (depends on earlier output: unknown until run)", _DIM) if unknown else ""
    return f"would run: {_text(d.get('summary', '?'))}{note}"


def _run_finished(d: Mapping[str, Any], s: _Style) -> str:
    status = str(d.get("status", "finished"))
    parts = [f"exit {_text(d['exit_code'])}"] if "exit_code" in d else []
    if _duration(d.get("elapsed")):
        parts.append(_duration(d["elapsed"]))
    counts = d.get("counts")
    if isinstance(counts, Mapping):
        parts.extend(f"{_text(n)} {_text(name)}" for name, n in counts.items() if n)
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"run finished: {s.status(status)}{detail}"


def _run_interrupted(d: Mapping[str, Any], s: _Style) -> str:
    during = f" during step {_text(d['step'])}" if d.get("step") else ""
    reason = f": {_text(d['reason'])}" if d.get("reason") else ""
    return f"run {s.status(StepStatus.INTERRUPTED)}{during}{reason}"


def _observer_error(d: Mapping[str, Any], s: _Style) -> str:
    return s.paint("observer error", _RED) + f": {_text(d.get('message', ''))}"


_Describe = Callable[[Mapping[str, Any], _Style], "str | None"]
_EVENTS: dict[str, _Describe] = {
    RecordType.STEP_STARTED: _step_started,
    RecordType.STEP_ATTEMPT: _step_attempt,
    RecordType.STEP_HOSTS_STARTED: _step_hosts_started,
    RecordType.STEP_HOST_FINISHED: _step_host_finished,
    RecordType.STEP_RETRY: _step_retry,
    RecordType.STEP_RESULT: _step_result,
    RecordType.STEP_OUTPUT: _step_output,
    RecordType.STEP_EXPECTATION: _step_expectation,
    RecordType.STEP_CONFIRMATION: _step_confirmation,
    RecordType.STEP_FINISHED: _step_finished,
    RecordType.STEP_SKIPPED: _step_skipped,
    RecordType.STEP_PLANNED: _step_planned,
    RecordType.STEP_RESTORED: _step_restored,
    RecordType.INCIDENT_MARK: _incident_mark,
    RecordType.RUN_FINISHED: _run_finished,
    RecordType.RUN_INTERRUPTED: _run_interrupted,
    RecordType.OBSERVER_ERROR: _observer_error,
}


class _Timeline:
    """Accumulates lines, remembering each step's phase to mark phase changes."""

    def __init__(self, style: _Style, seq_width: int) -> None:
        self.style, self.seq_width = style, seq_width
        self.lines: list[str] = []
        self.phase_of: dict[str, str] = {}
        self.phase = ""

    def add(self, record: Mapping[str, Any]) -> None:
        kind = str(record.get("type", "?"))
        data = _mapping(record.get("data"))
        describe = _EVENTS.get(kind)
        text = describe(data, self.style) if describe else _text(kind)
        if text is None:
            return
        step = str(data.get("step", "")) if kind.startswith("step.") else ""
        if step:
            text = self._step_prefix(step, data) + text
        seq = self.style.paint(f"seq {_text(record.get('seq', '?')):>{self.seq_width}}", _DIM)
        self.lines.append(f"{_clock(record.get('ts'))}  {seq}  {text}")

    def _step_prefix(self, step: str, data: Mapping[str, Any]) -> str:
        phase = str(data.get("phase") or self.phase_of.get(step, ""))
        self.phase_of.setdefault(step, phase)
        if phase and phase != self.phase:
            self.phase = phase
            self.lines.append(self.style.paint(f"── {_text(phase)} ──", _BOLD))
        return f"[{_text(phase)}] {_text(step)}  " if phase else f"{_text(step)}  "


def format_timeline(records: list[dict[str, Any]], *, color: bool = False) -> str:
    """The header summary, then one line per meaningful event, oldest first.

    `records` is what `journal.read_log` returns. Phase changes get a rule of
    their own; step lines read `HH:MM:SS.mmm  seq 12  [mitigate] restart
    action passed (1.2s)`.
    """
    style = _Style(color)
    lines: list[str] = []
    body = records
    if records and records[0].get("type") == RecordType.HEADER:
        lines.extend(_header_lines(_mapping(records[0].get("data")), style))
        lines.append("")
        body = records[1:]
    widest = max((len(str(r.get("seq", ""))) for r in body), default=1)
    timeline = _Timeline(style, widest)
    for record in body:
        timeline.add(record)
    lines.extend(timeline.lines)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LogSummary:
    """One line of `runbook log list`, read from a log's first and last lines only."""

    path: Path
    runbook: str
    run_id: str
    started: str
    status: str
    dry_run: bool
    records: int


def _last_complete_line(file: BinaryIO) -> bytes:
    """The last newline-terminated line, read backwards from the end of the file."""
    pos = file.seek(0, os.SEEK_END)
    buf = b""
    while pos > 0:
        step = min(_BACK_BLOCK, pos)
        pos -= step
        file.seek(pos)
        buf = file.read(step) + buf
        end = buf.rfind(b"\n")
        start = buf.rfind(b"\n", 0, end) if end >= 0 else -1
        if start >= 0 or (end >= 0 and pos == 0):
            return buf[start + 1 : end]
    return b""


def _json_object(line: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested past what json can parse
        return None
    return value if isinstance(value, Mapping) else None


def _status(last: Mapping[str, Any] | None) -> str:
    kind = last.get("type") if last else None
    if last and kind == RecordType.RUN_FINISHED:
        return str(_mapping(last.get("data")).get("status", "finished"))
    return StepStatus.INTERRUPTED if kind == RecordType.RUN_INTERRUPTED else StepStatus.INCOMPLETE


def _summary(path: Path) -> LogSummary:
    """A log's summary from its header and last complete line (a crash can cut the rest)."""
    with open(path, "rb") as file:
        header = _json_object(file.readline())
        last = _json_object(_last_complete_line(file))
    if header is None or header.get("type") != RecordType.HEADER:
        return LogSummary(path, "", "", "", "unreadable", False, 0)
    data = _mapping(header.get("data"))
    seq = last.get("seq") if last else None
    return LogSummary(
        path=path,
        runbook=_text(_mapping(data.get("runbook")).get("name", "")),
        run_id=_text(data.get("run_id", "")),
        started=_text(data.get("started") or header.get("ts", "")),
        status=_text(_status(last)),
        dry_run=bool(data.get("dry_run", False)),
        records=seq + 1 if isinstance(seq, int) else 1,
    )


def list_logs(log_dir: Path | str) -> list[LogSummary]:
    """Every `*.jsonl` log in `log_dir`, oldest first; unreadable ones are listed as such.

    Only the header and the last line of each file are read (not verified),
    so a directory of large logs lists quickly. A missing directory is empty.
    """
    directory = Path(log_dir)
    if not directory.is_dir():
        return []
    summaries = [_summary(path) for path in directory.glob("*.jsonl") if path.is_file()]
    return sorted(summaries, key=lambda s: (s.started, s.path.name))
