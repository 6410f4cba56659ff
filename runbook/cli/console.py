"""What the operator sees: human text or one JSON event per line.

The console is a renderer of incident-log records, the same (already masked)
dicts that go into the log, so what is on screen can never disagree with what
is recorded, and `--format json` is simply the record stream. Prompts go to
stderr so stdout stays machine-readable.

Record values are text from commands and services, so the text console shows
them as `runbook log show` does: control characters escaped (`runbook.text`),
one line per value. A step's output keeps its lines, each with a `│` gutter; a
line longer than LINE_LIMIT shows its head and tail with a note of how many
characters between them are only in the log.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from runbook.log.records import RecordType, StepStatus
from runbook.text import escape_controls

LINE_LIMIT = 500
"""Characters of one value or output line shown; the log holds the rest (up to its cap)."""
_TAIL = 100  # of LINE_LIMIT: a long line's end often says how it ended (or how the log cut it)

STATUS_MARK: dict[str, tuple[str, str]] = {
    StepStatus.PASSED: ("✓", "32"),
    StepStatus.FAILED: ("✗", "31"),
    StepStatus.ERROR: ("✗", "31"),
    StepStatus.TIMEOUT: ("⏱", "31"),
    StepStatus.DECLINED: ("✋", "33"),
    StepStatus.SKIPPED: ("-", "90"),
    StepStatus.PLANNED: ("·", "36"),
    StepStatus.UNKNOWN: ("?", "35"),
    StepStatus.INTERRUPTED: ("!", "31"),
}
_GOOD = frozenset({StepStatus.PASSED, StepStatus.PLANNED})


def _cut(line: str) -> str:
    """`line`, or its head and tail around a note of how much is left out."""
    if len(line) <= LINE_LIMIT:
        return line
    head = LINE_LIMIT - _TAIL
    hidden = len(line) - LINE_LIMIT
    return f"{line[:head]}…[{hidden:,} more characters in the log]…{line[-_TAIL:]}"


def _printable(value: Any) -> Any:
    """`value` with every string cut to one screen line, control characters escaped."""
    if isinstance(value, str):
        return escape_controls(_cut(value))
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def who_is_it(identity: Any) -> str:
    """`(claimed; OS user root, uid 0)`: the name beside it is a claim, this is the kernel's."""
    if not isinstance(identity, dict) or "os_user" not in identity:
        return "(claimed)"
    os_user = f"OS user {identity['os_user']}, uid {identity.get('os_uid', '?')}"
    if "os_euid" in identity:
        os_user += f", euid {identity['os_euid']} ({identity.get('os_euser', '?')})"
    if identity.get("sudo_user"):
        os_user += f", via sudo from {identity['sudo_user']}"
    return f"(claimed; {os_user})"


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Console:
    """Base console: receives every record as it is written to the log.

    Output is best effort: if stdout goes away (`runbook run ... | head`, a closed
    terminal), the run must still finish and close its log, so write errors
    switch the console off instead of propagating into the runner.
    """

    stream: TextIO
    broken = False

    def _emit_text(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.broken = True

    def record(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def progress(self, step: str, elapsed: float, note: str = "") -> None:
        """A step is still running; called about once a second after the first second."""

    def message(self, text: str) -> None:
        """Free text for humans (hints, the log path); JSON consoles ignore it."""


class JsonConsole(Console):
    """`--format json`: one JSON object per event on stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def record(self, rec: dict[str, Any]) -> None:
        event = {"event": rec.get("type"), "seq": rec.get("seq"), "ts": rec.get("ts")}
        event.update(rec.get("data", {}))
        # the record's hash: the final event's is the run's final hash (the anchor)
        event["sha256"] = rec.get("sha256")
        self._emit_text(json.dumps(event, sort_keys=True, default=str) + "\n")

    def progress(self, step: str, elapsed: float, note: str = "") -> None:
        payload = {"event": "step.progress", "step": step, "elapsed": round(elapsed, 1)}
        if note:
            payload["note"] = note
        self._emit_text(json.dumps(payload) + "\n")


class TextConsole(Console):
    """Phase headings, one line per step with status and duration, and progress."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = use_color(self.stream) if color is None else color
        self.tty = self.stream.isatty()
        self._phase: str | None = None
        self._progress_shown = False
        # Detail lines of the step in progress (expectations, output, verify results)
        # are held until its status line is printed, so each step reads top-down.
        self._open: list[str] = []
        self._details: list[str] = []
        self._records: list[dict[str, Any]] = []  # for the SLA line at the end
        self._skipped: list[str] = []  # consecutive steps whose `when` was false

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def _write(self, line: str) -> None:
        if self._skipped:
            self._flush_skipped()
        prefix = "\r\033[K" if self._progress_shown and self.tty else ""
        self._progress_shown = False
        self._emit_text(prefix + line + "\n")

    def message(self, text: str) -> None:
        self._write(text)

    def _detail(self, line: str) -> None:
        if self._open:
            self._details.append(line)
        else:
            self._write(line)

    def progress(self, step: str, elapsed: float, note: str = "") -> None:
        note = _printable(note)
        text = f"    … {step} running {elapsed:.0f}s" + (f" ({note})" if note else "")
        if self.tty:
            self._emit_text("\r\033[K" + self._c("90", text))
            self._progress_shown = True
        elif int(elapsed) in (1, 5) or int(elapsed) % 10 == 0:
            self._write(text)

    def record(self, rec: dict[str, Any]) -> None:
        self._records.append(rec)
        handler = getattr(self, "_on_" + str(rec.get("type", "")).replace(".", "_"), None)
        if handler is not None:
            data = rec.get("data", {})
            # Output keeps its lines (_on_step_output makes each safe); the rest is one line each.
            handler(data if rec.get("type") == RecordType.STEP_OUTPUT else _printable(data))

    # -- handlers, one per record type worth showing ----------------------------
    def _on_header(self, d: dict[str, Any]) -> None:
        rb = d.get("runbook", {})
        mode = self._c("36", " [dry-run: nothing will be changed]") if d.get("dry_run") else ""
        title = f"{rb.get('title', '')} ({rb.get('name', '')})"
        self._write(self._c("1", f"▶ {title}") + f"  severity {rb.get('severity', '?')}{mode}")
        self._write(
            f"  run {d.get('run_id', '')} by {d.get('operator', '?')} "
            f"{who_is_it(d.get('identity'))} on {d.get('host', '?')}"
        )

    def _phase_heading(self, phase: str) -> None:
        if phase and phase != self._phase:
            self._phase = phase
            self._write(self._c("1;34", f"\n── {phase} " + "─" * max(4, 40 - len(phase))))

    def _on_step_started(self, d: dict[str, Any]) -> None:
        if self._open and not d.get("verifies"):
            # the open step was stopped (run deadline, signal) and never finishes: an
            # `always` step runs after it
            self._open, self._details = [], []
        if not self._open:
            self._phase_heading(str(d.get("phase", "")))
        self._open.append(str(d.get("step")))

    def _on_step_skipped(self, d: dict[str, Any]) -> None:
        self._phase_heading(str(d.get("phase", "")))
        reason = str(d.get("reason", ""))
        if reason.startswith("condition false"):
            # Variants for other platforms are noise at 3 a.m.: one line per run of them
            # (each step and its condition are in the log and in `runbook log show`).
            self._skipped.append(str(d.get("step")))
            return
        self._write(self._c("90", f"  - {d.get('step')}  skipped ({reason})"))

    def _flush_skipped(self) -> None:
        names, self._skipped = self._skipped, []
        self._write(self._c("90", f"  - skipped, condition false: {', '.join(names)}"))

    def _on_step_planned(self, d: dict[str, Any]) -> None:
        kind = d.get("kind", "")
        gate = f"  [confirm: {d['gated']}]" if d.get("gated") else ""
        when = f"  (if {d['when']})" if d.get("when") else ""
        what = d.get("unknown") and f"unknown: {d['unknown']}" or d.get("summary", "")
        self._detail(
            self._c("36", f"      would {'run' if kind == 'check' else 'do'}: {what}{when}{gate}")
        )

    def _on_step_confirmation(self, d: dict[str, Any]) -> None:
        verdict = "accepted" if d.get("accepted") else "declined"
        self._detail(
            f"      ? {d.get('prompt', '')} → {verdict} by {d.get('operator')} "
            f"{who_is_it(d.get('identity'))} ({d.get('method')})"
        )

    def _on_step_expectation(self, d: dict[str, Any]) -> None:
        if not d.get("passed"):
            self._detail(self._c("31", f"      {d.get('message', '')}"))

    def _on_step_output(self, d: dict[str, Any]) -> None:
        # Split on "\n" alone: a "\r" in the output is shown, never taken as a line break.
        lines = str(d.get("text", "")).rstrip("\n").split("\n")
        for line in lines[-int(d.get("show_lines", 20)) :]:
            self._detail(self._c("90", "      │ ") + escape_controls(_cut(line), keep="\t"))

    def _on_step_result(self, d: dict[str, Any]) -> None:
        if d.get("error"):
            self._detail(self._c("31", f"      attempt {d.get('attempt')}: {d['error']}"))

    def _on_step_retry(self, d: dict[str, Any]) -> None:
        # Only the last attempt's details matter once the step ends; say that it retried.
        self._details = [ln for ln in self._details if "│" in ln or "verify" in ln]
        self._details.append(
            self._c(
                "33",
                f"      attempt {d.get('next_attempt', 2) - 1} "
                f"{d.get('reason', 'failed')}; retried after "
                f"{d.get('delay', 0):.1f}s",
            )
        )

    def _on_step_finished(self, d: dict[str, Any]) -> None:
        status = str(d.get("status", ""))
        mark, code = STATUS_MARK.get(status, ("?", "0"))
        elapsed = float(d.get("elapsed") or 0.0)
        step = str(d.get("step"))
        attempts = int(d.get("attempts") or 0)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        indent = "    " if len(self._open) > 1 else "  "
        line = (
            f"{indent}{self._c(code, mark)} {step}  {d.get('kind', '')} "
            f"{self._c(code, status)}{tries}  {elapsed:.2f}s"
        )
        shown_reason = any(not ln.lstrip().startswith(("│", "?")) for ln in self._details)
        if d.get("message") and status not in _GOOD and not shown_reason:
            self._details.append(self._c("90", f"      {d['message']}"))
        if self._open and self._open[-1] == step:
            self._open.pop()
        if self._open:  # a verify check: part of its action's details
            self._details.append(line)
            return
        details, self._details = self._details, []
        self._write(line)
        for detail in details:
            self._write(detail)

    def _on_step_restored(self, d: dict[str, Any]) -> None:
        self._phase_heading(str(d.get("phase", "")))
        self._write(
            self._c(
                "90",
                f"  ↺ {d.get('step')}  {d.get('kind', '')} {d.get('status')} "
                f"in run {d.get('from_run')}; not run again",
            )
        )

    def _on_observer_error(self, d: dict[str, Any]) -> None:
        self._write(self._c("33", f"  ! {d.get('message', '')}"))

    def _on_run_interrupted(self, d: dict[str, Any]) -> None:
        self._write(
            self._c(
                "31", f"\n■ interrupted during {d.get('step') or 'the run'}: {d.get('reason', '')}"
            )
        )

    def _on_run_finished(self, d: dict[str, Any]) -> None:
        counts = d.get("counts", {})
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n)
        status = str(d.get("status", ""))
        code = "32" if status in _GOOD else "31"
        self._write(
            "\n"
            + self._c("1;" + code, f"■ {status}")
            + f" in {float(d.get('elapsed') or 0):.2f}s ({summary}) exit {d.get('exit_code')}"
        )
        if d.get("reason"):
            self._write(f"  {d['reason']}")
        if not d.get("dry_run"):
            self._write("  " + self._sla_line())

    def _sla_line(self) -> str:
        """Elapsed against the severity's targets (`report.sla`), e.g. 'mitigated in 4m of 1h'."""
        from runbook.errors import RunbookError
        from runbook.report import sla

        try:
            return sla.summary_line(self._records, sla.load_targets())
        except RunbookError as exc:
            return f"SLA: {exc}"
