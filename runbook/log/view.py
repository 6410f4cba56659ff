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
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_BACK_BLOCK = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_TEXT = 300
_GREEN, _RED, _YELLOW = "\x1b[32m", "\x1b[31m", "\x1b[33m"
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_STATUS_COLORS = {
    **dict.fromkeys(("passed", "ok", "accepted", "planned"), _GREEN),
    **dict.fromkeys(("failed", "error", "timeout", "declined", "aborted"), _RED),
    **dict.fromkeys(("skipped", "interrupted", "incomplete", "unknown"), _YELLOW),
}


class _Style:
    """ANSI colour when asked for (the CLI decides: TTY and NO_COLOR), plain otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and code else text

    def status(self, status: str) -> str:
        return self.paint(status, _STATUS_COLORS.get(status, ""))


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"


def _text(value: Any) -> str:
    """One safe line: control characters (newlines, ANSI escapes from command
    output) shown escaped so a log cannot rewrite the operator's terminal."""
    text = _CONTROL.sub(_escape, str(value))
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
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
    return text[11:23] if len(text) >= 23 else text.ljust(12)


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
        ("started", f"{_text(data.get('started', '?'))} (times below are UTC)"),
        ("dry-run", "yes: nothing was changed" if data.get("dry_run") else "no"),
    ]
    return [f"{style.paint((label + ':').ljust(9), _BOLD)} {value}" for label, value in rows]


def _step_started(d: Mapping[str, Any], s: _Style) -> str:
    title = f": {_text(d['title'])}" if d.get("title") else ""
    via = f" ({_text(d['executor'])})" if d.get("executor") else ""
    return f"{_text(d.get('kind', 'step'))} started{via}{title}"


def _step_attempt(d: Mapping[str, Any], s: _Style) -> str | None:
    attempt, call = d.get("attempt", 1), _mapping(d.get("call"))
    if not isinstance(attempt, int) or attempt <= 1 or "summary" not in call:
        return None  # the first attempt is implied by "started", a bare retry by step.retry
    return f"attempt {attempt}: {_text(call['summary'])}"


def _step_retry(d: Mapping[str, Any], s: _Style) -> str:
    reason = _text(d.get("reason") or "failed")
    wait = f" in {_duration(d['delay'])}" if _duration(d.get("delay")) else ""
    total = f" of {d['attempts']}" if d.get("attempts") else ""
    upcoming = f" (attempt {d['next_attempt']}{total})" if d.get("next_attempt") else ""
    return s.paint(f"{reason}, retrying{wait}", _YELLOW) + upcoming


def _step_output(d: Mapping[str, Any], s: _Style) -> str:
    lines = str(d.get("text", "")).splitlines() or [""]
    more = s.paint(f" (+{len(lines) - 1} more lines)", _DIM) if len(lines) > 1 else ""
    return f"output: {_text(lines[0])}{more}"


def _step_result(d: Mapping[str, Any], s: _Style) -> str | None:
    if d.get("ok", True):
        return None  # judged by expectations; step.finished tells the outcome
    took = f" after {_duration(d['elapsed'])}" if _duration(d.get("elapsed")) else ""
    return (
        s.paint(f"attempt {d.get('attempt', '?')} error", _RED)
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
    via = f" via {_text(d['method'])}" if d.get("method") else ""
    answer = f" answered {_text(d['answer'])!r}" if d.get("answer") is not None else ""
    return f"confirmation {verdict} by {who}{via}{answer}: {_text(d.get('prompt', ''))}"


def _step_finished(d: Mapping[str, Any], s: _Style) -> str:
    status = str(d.get("status", "finished"))
    took = f" ({_duration(d['elapsed'])})" if _duration(d.get("elapsed")) else ""
    attempts = d.get("attempts")
    tries = f" after {attempts} attempts" if isinstance(attempts, int) and attempts > 1 else ""
    message = f": {_text(d['message'])}" if d.get("message") and status != "passed" else ""
    return f"{_text(d.get('kind', 'step'))} {s.status(status)}{took}{tries}{message}"


def _step_skipped(d: Mapping[str, Any], s: _Style) -> str:
    return s.status("skipped") + (f": {_text(d['reason'])}" if d.get("reason") else "")


def _step_planned(d: Mapping[str, Any], s: _Style) -> str:
    unknown = d.get("unknown")
    note = s.paint(" (depends on earlier output: unknown until run)", _DIM) if unknown else ""
    return f"would run: {_text(d.get('summary', '?'))}{note}"


def _run_finished(d: Mapping[str, Any], s: _Style) -> str:
    status = str(d.get("status", "finished"))
    parts = [f"exit {d['exit_code']}"] if "exit_code" in d else []
    if _duration(d.get("elapsed")):
        parts.append(_duration(d["elapsed"]))
    counts = d.get("counts")
    if isinstance(counts, Mapping):
        parts.extend(f"{n} {_text(name)}" for name, n in counts.items() if n)
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"run finished: {s.status(status)}{detail}"


def _run_interrupted(d: Mapping[str, Any], s: _Style) -> str:
    during = f" during step {_text(d['step'])}" if d.get("step") else ""
    reason = f": {_text(d['reason'])}" if d.get("reason") else ""
    return f"run {s.status('interrupted')}{during}{reason}"


def _observer_error(d: Mapping[str, Any], s: _Style) -> str:
    return s.paint("observer error", _RED) + f": {_text(d.get('message', ''))}"


_Describe = Callable[[Mapping[str, Any], _Style], "str | None"]
_EVENTS: dict[str, _Describe] = {
    "run.started": lambda d, s: "run started",
    "step.started": _step_started,
    "step.attempt": _step_attempt,
    "step.retry": _step_retry,
    "step.result": _step_result,
    "step.output": _step_output,
    "step.expectation": _step_expectation,
    "step.confirmation": _step_confirmation,
    "step.finished": _step_finished,
    "step.skipped": _step_skipped,
    "step.planned": _step_planned,
    "run.finished": _run_finished,
    "run.interrupted": _run_interrupted,
    "observer.error": _observer_error,
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
        seq = self.style.paint(f"seq {record.get('seq', '?'):>{self.seq_width}}", _DIM)
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
    if records and records[0].get("type") == "header":
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
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _status(last: Mapping[str, Any] | None) -> str:
    kind = last.get("type") if last else None
    if last and kind == "run.finished":
        return str(_mapping(last.get("data")).get("status", "finished"))
    return "interrupted" if kind == "run.interrupted" else "incomplete"


def _summary(path: Path) -> LogSummary:
    """A log's summary from its header and last complete line (a crash can cut the rest)."""
    with open(path, "rb") as file:
        header = _json_object(file.readline())
        last = _json_object(_last_complete_line(file))
    if header is None or header.get("type") != "header":
        return LogSummary(path, "", "", "", "unreadable", False, 0)
    data = _mapping(header.get("data"))
    seq = last.get("seq") if last else None
    return LogSummary(
        path=path,
        runbook=str(_mapping(data.get("runbook")).get("name", "")),
        run_id=str(data.get("run_id", "")),
        started=str(data.get("started") or header.get("ts", "")),
        status=_status(last),
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
