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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from runbook.errors import OperatorDeclined
from runbook.log.records import Identity
from runbook.text import escape_controls

MAX_NAME = 64
"""Characters of a claimed operator name kept: it is a label, not a message."""

_LOGIN_VARS = ("LOGNAME", "USER", "LNAME", "USERNAME")  # what getpass.getuser() reads


def display_name(claimed: str) -> str:
    """A claimed name made safe to log and show: control characters escaped, one line,
    at most MAX_NAME characters ("unknown" when nothing is left)."""
    text = " ".join(escape_controls(str(claimed)).split())
    if len(text) > MAX_NAME:
        text = text[: MAX_NAME - 1] + "…"
    return text or "unknown"


def claimed_operator(
    explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(name, where it came from): --operator, $RUNBOOK_OPERATOR, then the login name.

    Every one of these is a claim: the environment says whatever its caller put
    there. `os_identity` records what the kernel says beside it.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return display_name(explicit), "--operator"
    if env.get("RUNBOOK_OPERATOR"):
        return display_name(env["RUNBOOK_OPERATOR"]), "$RUNBOOK_OPERATOR"
    for var in _LOGIN_VARS:
        if env.get(var):
            return display_name(env[var]), f"${var}"
    try:
        return display_name(getpass.getuser()), "login name"
    except (KeyError, OSError):
        return "unknown", "nowhere"


def operator_name(explicit: str | None = None) -> str:
    """Who is running this: --operator, $RUNBOOK_OPERATOR, or the login name (a claim)."""
    return claimed_operator(explicit)[0]


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid} (no passwd entry)"


def os_identity(claimed_from: str, environ: Mapping[str, str] | None = None) -> Identity:
    """Who this process runs as according to the kernel, and what sudo/sshd left in the
    environment (`runbook.log.records.Identity`)."""
    env = os.environ if environ is None else environ
    uid, euid = os.getuid(), os.geteuid()
    identity: Identity = {"claimed_from": claimed_from, "os_user": _user(uid), "os_uid": uid}
    if euid != uid:
        identity["os_euid"], identity["os_euser"] = euid, _user(euid)
    if env.get("SUDO_USER"):
        identity["sudo_user"] = display_name(env["SUDO_USER"])
    if env.get("SUDO_UID"):
        identity["sudo_uid"] = display_name(env["SUDO_UID"])
    ssh = (env.get("SSH_CONNECTION") or env.get("SSH_CLIENT") or "").split()
    if ssh:
        identity["ssh_client"] = display_name(ssh[0])
    return identity


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
