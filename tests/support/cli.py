"""The CLI as a user runs it: a real `python -m runbook` process, its exit code and output.

Tests drive the product the way a user does -- a real process, real files, real
exit codes -- so nothing of our own is patched. The `run_cli` fixture in
`tests/conftest.py` hands out a `RunCli` bound to the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout (pyproject.toml, runbooks/, docs/)."""


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


RunCli = Callable[..., CliResult]
