"""The live console never shows more than the log holds, nor anything a terminal would obey.

Each test runs the real CLI on a triage check (whose output tail is shown) and
compares the screen with the incident log it wrote: every output line on screen is
a line of the output as logged, a cut is noted on both, and control characters
reach the screen escaped exactly as `runbook log show` escapes them.
"""

from __future__ import annotations

from pathlib import Path

from support.cli import RunCli
from support.helpers import logs_in

from runbook.cli.console import LINE_LIMIT
from runbook.log.journal import MAX_STRING_BYTES, read_log
from runbook.text import escape_controls

GUTTER = "      │ "

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: console-check, title: Console check, severity: P3}}
steps:
  - id: look
    phase: triage
    check: {{shell: {{command: "{command}"}}}}
"""


def _run(run_cli: RunCli, tmp_path: Path, command: str) -> tuple[str, str]:
    """(console stdout, the step's stdout as the log holds it)."""
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK.format(command=command), encoding="utf-8")
    result = run_cli("run", str(rb), timeout=120)
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    assert run_cli("log", "verify", str(log)).code == 0
    records = read_log(log)
    logged = next(r for r in records if r["type"] == "step.result")["data"]["fields"]["stdout"]
    shown = next(r for r in records if r["type"] == "step.output")["data"]["text"]
    assert logged.rstrip("\n").endswith(shown)  # the excerpt is the tail of the logged output
    return result.out, logged


def _output_lines(console: str) -> list[str]:
    return [line[len(GUTTER) :] for line in console.splitlines() if line.startswith(GUTTER)]


def test_every_output_line_on_screen_is_in_the_log(run_cli: RunCli, tmp_path: Path) -> None:
    console, logged = _run(run_cli, tmp_path, "seq 2000000")
    shown = _output_lines(console)
    logged_lines = logged.split("\n")
    assert shown and all(line in logged_lines for line in shown), shown
    # The log keeps a prefix and says so; the screen shows the end of that prefix, note included.
    assert len(logged.encode()) <= MAX_STRING_BYTES
    assert shown[-1].endswith(" bytes total]") and "…[truncated, " in shown[-1]
    assert shown[-1] == logged_lines[-1]
    assert "2000000" not in shown


def test_a_huge_single_line_is_cut_on_screen_with_a_note(run_cli: RunCli, tmp_path: Path) -> None:
    console, logged = _run(run_cli, tmp_path, "head -c 5000000 /dev/zero | tr '\\\\0' x")
    [line] = _output_lines(console)
    assert len(line) < LINE_LIMIT + 60
    head, note, tail = line.partition("…[")[0], line.partition("…[")[2], line.rsplit("]…", 1)[1]
    hidden = int(note.split(" more characters in the log]")[0].replace(",", ""))
    assert logged.startswith(head) and logged.endswith(tail)
    assert len(head) + hidden + len(tail) == len(logged)
    assert tail.endswith(" bytes total]")  # the log's own cut stays visible on screen
    assert max(len(console_line) for console_line in console.splitlines()) < LINE_LIMIT + 60


def test_terminal_escapes_in_output_are_shown_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    command = (
        r"printf 'before\\n\\033[2K\\r✓ restart  action passed\\n\\033]52;c;aGk=\\007"
        r"\\n\\033]0;pwned\\007tab\\there\\n\\302\\233 c1 \\177 del\\n'"
    )
    console, logged = _run(run_cli, tmp_path, command)
    assert "\x1b" not in console and "\r" not in console and "\x9b" not in console
    assert "\x07" not in console and "\x7f" not in console
    shown = _output_lines(console)
    assert shown == [
        "before",
        "\\x1b[2K\\r✓ restart  action passed",
        "\\x1b]52;c;aGk=\\x07",
        "\\x1b]0;pwned\\x07tab\there",
        "\\x9b c1 \\x7f del",
    ]
    # One escaping for both screens: the live console keeps only tabs as they are.
    expected = [escape_controls(line, keep="\t") for line in logged.rstrip("\n").split("\n")]
    assert shown == expected


def test_log_show_escapes_output_as_the_console_does(run_cli: RunCli, tmp_path: Path) -> None:
    _run(run_cli, tmp_path, r"printf '\\033[2K\\r✓ fake\\n'")
    [log] = logs_in(tmp_path / "logs")
    shown = run_cli("log", "show", str(log))
    assert "output: \\x1b[2K\\r✓ fake" in shown.out and "\x1b" not in shown.out


def test_record_values_are_one_escaped_line(run_cli: RunCli, tmp_path: Path) -> None:
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        "apiVersion: runbook/v1\nkind: Runbook\n"
        "metadata: {name: console-check, title: Console check, severity: P3}\n"
        "steps:\n"
        "  - id: look\n"
        "    phase: triage\n"
        '    check: {shell: {argv: ["no-such-\\e[2K\\r✓ passed\\nline"]}}\n',
        encoding="utf-8",
    )
    result = run_cli("run", str(rb))
    assert result.code == 1, result.text
    assert "\x1b" not in result.out and "\r" not in result.out
    assert "no-such-\\x1b[2K\\r✓ passed\\nline" in result.out
