"""The types an executor plugin deals in: what it declares, receives and returns.

These are the whole contract between the runner and an executor, built-in or
third-party: an `ExecutorSpec` says what the executor is (name, config schema,
whether it only reads), `plan()` is a pure function that says exactly what
would be done, and `run()` does it and returns one `StepResult` shape, whatever
the executor, so `expect` expressions work the same everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.load.model import Target


@dataclass(frozen=True)
class StepResult:
    """What one attempt of an executor produced.

    `ok` is False only when the executor could not do its job at all (command
    not found, connection refused, timeout); a command that ran and exited 1 is
    `ok=True` with `fields["exit_code"] == 1` and is judged by expectations.
    `fields` is the namespace `expect` expressions see (e.g. `exit_code`,
    `stdout`, `status`, `json`); `output` is the main text, exposed to later
    steps as `steps.<id>.output`.
    """

    ok: bool
    fields: Mapping[str, Any] = field(default_factory=dict)
    output: str = ""
    error: str | None = None
    timed_out: bool = False
    elapsed: float = 0.0
    call: Mapping[str, Any] = field(default_factory=dict)
    hosts: Mapping[str, StepResult] = field(default_factory=dict)

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        timed_out: bool = False,
        elapsed: float = 0.0,
        call: Mapping[str, Any] | None = None,
    ) -> StepResult:
        """An attempt that could not be carried out, with the reason."""
        return cls(
            ok=False, error=error, timed_out=timed_out, elapsed=elapsed, call=dict(call or {})
        )


@dataclass(frozen=True)
class PlannedCall:
    """What an executor would do, exactly, without doing it.

    `summary` is one line for humans (`$ systemctl restart api`,
    `GET https://api/health`); `detail` is the exact, JSON-serialisable call
    (`{"argv": [...]}`, `{"method": ..., "url": ..., "headers": ...}`) that goes
    into plan files and their digest.
    """

    summary: str
    detail: Mapping[str, Any]


class OperatorIO(Protocol):
    """How executors reach the human at the keyboard (the manual executor)."""

    interactive: bool

    def ask(self, prompt: str, choices: tuple[str, ...] = ()) -> str:
        """Ask and return the answer; raises OperatorDeclined when nobody can answer."""
        ...


@dataclass(frozen=True)
class PlanContext:
    """What `plan()` may look at: the resolved target and the step's identity."""

    step_id: str
    target: Target | None = None


@dataclass
class ExecContext:
    """What `run()` gets besides its rendered config.

    `timeout` is this attempt's budget in seconds (None: no limit); long-running
    executors must also watch `cancel`, which is set on Ctrl-C or when the step
    or run deadline passes, and stop what they started (kill the process group,
    close the connection). `answer` is a pre-supplied answer for this step
    (`--answer STEP=TEXT`), `progress` lets an executor report what it waits on.
    `concurrency`/`serial` bound a fan-out over many hosts. `resources` is
    shared by every step of one run (e.g. open SSH connections, keyed by the
    transport); whatever in it has a `close()` is closed when the run ends.
    """

    step_id: str
    timeout: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    target: Target | None = None
    io: OperatorIO | None = None
    answer: str | None = None
    progress: Callable[[str], None] = lambda message: None
    concurrency: int = 20
    serial: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)


PlanFn = Callable[[Mapping[str, Any], PlanContext], PlannedCall]
RunFn = Callable[[Mapping[str, Any], ExecContext], StepResult]


@dataclass(frozen=True)
class ExecutorSpec:
    """A named executor contributed by a plugin through `runbook_executors`.

    - `schema`: JSON Schema (draft 2020-12) of the step config under the
      executor's key, e.g. `{"url": ..., "timeout": ...}` for `http:`.
    - `read_only`: True when every use only reads, so a dry-run may run it as a
      check for real; `read_only_when(config)` refines it per config (HTTP GET
      is read-only, POST is not).
    - `default_expect`: expressions used when a check declares no `expect`.
    - `shell_fields`: config keys that are shell strings; every value rendered
      into them is shell-quoted.
    - `needs_confirmation`: False for executors whose action *is* talking to a
      human (manual, notify); every other action is confirmation-gated.
    - `result_fields`: field name -> description, for docs and `runbook plugins`.
    """

    name: str
    schema: Mapping[str, Any]
    plan: PlanFn
    run: RunFn
    read_only: bool = False
    read_only_when: Callable[[Mapping[str, Any]], bool] | None = None
    default_expect: tuple[str, ...] = ()
    shell_fields: tuple[str, ...] = ()
    needs_confirmation: bool = True
    description: str = ""
    result_fields: Mapping[str, str] = field(default_factory=dict)

    def is_read_only(self, config: Mapping[str, Any]) -> bool:
        """Whether this particular use only reads (safe to run in a dry-run)."""
        if self.read_only_when is not None:
            return bool(self.read_only_when(config))
        return self.read_only


@dataclass(frozen=True)
class StepEvent:
    """What observers (`runbook_step_finished`) learn about a finished step.

    Values are already masked: an observer never sees a secret.
    """

    run_id: str
    runbook: str
    title: str
    severity: str
    step_id: str
    phase: str
    kind: str
    executor: str
    status: str
    elapsed: float
    message: str = ""
    dry_run: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportFormat:
    """A report renderer contributed through `runbook_report_formats`.

    `render(records)` receives the verified incident-log records (dicts, in
    order) and returns the report text; it must be a pure function of them.
    """

    name: str
    extension: str
    description: str
    render: Callable[[list[dict[str, Any]]], str]
