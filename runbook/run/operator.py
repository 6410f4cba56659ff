"""The human at the keyboard: who they are, and how to ask them things.

Confirmation gates and manual steps are the only places a run waits for a
person. Prompts are written to stderr (stdout may be a JSON stream) and read
from stdin only when it is a terminal: with no terminal and no `--yes`, the
answer is "no", because at 3 a.m. a cron job must never restart production by
accident.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import TextIO

from runbook.errors import OperatorDeclined


def operator_name(explicit: str | None = None) -> str:
    """Who is running this: --operator, $RUNBOOK_OPERATOR, or the login name."""
    if explicit:
        return explicit
    env = os.environ.get("RUNBOOK_OPERATOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass
class TerminalIO:
    """Asks on a TTY; `interactive` is False when stdin is not a terminal."""

    stdin: TextIO = sys.stdin
    stderr: TextIO = sys.stderr
    interactive: bool = False

    @classmethod
    def detect(cls) -> TerminalIO:
        return cls(sys.stdin, sys.stderr, sys.stdin.isatty())

    def _read(self, prompt: str) -> str:
        self.stderr.write(prompt)
        self.stderr.flush()
        line = self.stdin.readline()
        if not line:
            raise OperatorDeclined("no answer: standard input was closed")
        return line.rstrip("\n")

    def ask(self, prompt: str, choices: tuple[str, ...] = ()) -> str:
        """Ask until the answer is one of `choices` (any non-empty answer if none)."""
        if not self.interactive:
            raise OperatorDeclined(f"'{prompt}' needs an answer but there is no terminal")
        suffix = f" [{'/'.join(choices)}]" if choices else ""
        while True:
            answer = self._read(f"? {prompt}{suffix} ").strip()
            if answer and (not choices or answer in choices):
                return answer
            if choices:
                self.stderr.write(f"  please answer one of: {', '.join(choices)}\n")

    def confirm(self, prompt: str, require: str | None = None) -> tuple[bool, str]:
        """Ask a yes/no (or type-the-name) question; returns (accepted, raw answer)."""
        if require:
            answer = self._read(f"? {prompt}\n  type '{require}' to proceed: ")
            return answer.strip() == require, answer
        answer = self._read(f"? {prompt} [y/N] ")
        return answer.strip().lower() in ("y", "yes"), answer
