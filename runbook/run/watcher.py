"""What a run reports to while it happens: the protocol a front end implements.

The runner hands every log record to a `RunWatcher` right after the journal has
written it (log first, screen second), plus progress ticks for long steps. The
CLI's consoles implement it; the Session's default is `SilentWatcher`, so a
Python API run prints nothing. Defining the protocol here keeps the run stage
free of any import of the CLI.
"""

from __future__ import annotations

from typing import Any, Protocol


class RunWatcher(Protocol):
    """Receives each record as it is written, and progress ticks for long steps."""

    def record(self, rec: dict[str, Any]) -> None:
        """A record the journal has just made durable."""
        ...

    def progress(self, step: str, elapsed: float, note: str = "") -> None:
        """A step is still running; called about once a second after the first second."""
        ...

    def message(self, text: str) -> None:
        """Free text for humans (hints, the log path); machine consumers ignore it."""
        ...


class SilentWatcher:
    """Watches nothing: unattended and Python API runs, where the log is the record."""

    def record(self, rec: dict[str, Any]) -> None:
        return None

    def progress(self, step: str, elapsed: float, note: str = "") -> None:
        return None

    def message(self, text: str) -> None:
        return None
