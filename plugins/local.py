"""The `local` transport: commands run on this machine, in their own process group.

It is the transport every command executor uses when a step names no target,
so shell, systemd and journald behave exactly the same here as over SSH: the
same argv, the same result shape, the same timeout semantics (the whole
process group is killed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runbook.contract import CommandOutcome, Connection, Host, TransportSpec, hookimpl


class LocalConnection:
    """Runs argv with `_process.run_process`; nothing to open or close."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None,
        cancel: threading.Event,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        max_output: int = 1024 * 1024,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> CommandOutcome:
        """Raises OSError when the program cannot be started (not found, not executable)."""
        from .process import run_process

        outcome = run_process(
            argv,
            env={**os.environ, **env} if env else None,
            cwd=cwd,
            stdin=stdin,
            timeout=timeout,
            cancel=cancel,
            max_output=max_output,
            on_stdout=on_stdout,
        )
        return CommandOutcome(
            exit_code=outcome.exit_code,
            stdout=outcome.stdout.text(),
            stderr=outcome.stderr.text(),
            elapsed=outcome.elapsed,
            stopped=outcome.stopped,
            pid=outcome.pid,
        )

    def close(self) -> None:
        return None


def connect(host: Host, options: Mapping[str, Any]) -> Connection:
    return LocalConnection(host)


SPEC = TransportSpec(
    name="local",
    connect=connect,
    remote=False,
    description="This machine: commands run as child processes in their own process group.",
)


@hookimpl
def runbook_transports() -> list[TransportSpec]:
    """The local transport."""
    return [SPEC]
