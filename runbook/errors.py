"""One exception tree for everything a user can get wrong or a run can hit.

Every error carries the exit code the CLI should return and a message that is
already fit to print (file:line:column where a file is involved). The CLI is
the only place that catches broadly; everything else raises one of these.

    RunbookError                 base; exit 1
    ├── InvalidInput             exit 2: anything the user must fix before a run
    │   ├── InvalidRunbook       YAML/schema/semantic errors, with file:line:column
    │   ├── ParamError           missing/unknown/ill-typed -p values
    │   ├── PlanMismatch         `run --plan` no longer matches the runbook
    │   ├── UnknownExecutor      a step names an executor no plugin provides
    │   ├── ExpressionError      an `expect`/`when` expression is invalid or forbidden
    │   ├── TemplateError        a `{{ ... }}` template cannot be rendered
    │   ├── RunbookNotFound      NAME resolves to nothing (close names listed)
    │   └── LogDirError          the incident-log directory cannot be written
    ├── OperatorDeclined         exit 3: a confirmation was refused or impossible
    ├── StepTimeout              exit 4: the run deadline was hit
    ├── JournalCorrupt           exit 5: the incident log failed verification
    ├── ExecutorError            exit 1: an executor could not do its job
    │   ├── MissingExtra         an optional dependency is not installed
    │   └── TransportError       one host cannot be reached or trusted (fails that host)
    └── Interrupted              exit 130: SIGINT/SIGTERM/SIGHUP

Modules add narrower kinds where they are raised (`InventoryError`,
`ScenarioError`, `UnknownValue`, `EvaluationError`, a plugin's own
`ClusterError`, ...); each derives from one of the classes above and keeps its
exit code. Plugins get the ones they raise or catch from `runbook.contract`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; a contract with CI pipelines (see DESIGN.md)."""

    OK = 0
    FAILED = 1
    INVALID = 2
    DECLINED = 3
    TIMEOUT = 4
    LOG_CORRUPT = 5
    INTERRUPTED = 130


class RunbookError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(RunbookError):
    """Something the user must fix before anything runs."""

    exit_code = ExitCode.INVALID


class InvalidRunbook(InvalidInput):
    """The runbook file is malformed; `errors` holds every located problem."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


class ParamError(InvalidInput):
    """A parameter is missing, unknown, or fails its type/pattern/range."""


class PlanMismatch(InvalidInput):
    """The saved plan no longer matches what the runbook would do now."""


class UnknownExecutor(InvalidInput):
    """A step names an executor that no loaded plugin provides."""


class ExpressionError(InvalidInput):
    """An expression does not parse or uses something the sandbox forbids.

    `column` is the 1-based column inside the expression text, when known.
    """

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class TemplateError(InvalidInput):
    """A template refers to something undefined or forbidden."""


class RunbookNotFound(InvalidInput):
    """A runbook name or path resolves to no file."""


class LogDirError(InvalidInput):
    """The incident-log directory cannot be created or written."""


class OperatorDeclined(RunbookError):
    """An operator said no, or nobody was there to say yes."""

    exit_code = ExitCode.DECLINED


class StepTimeout(RunbookError):
    """The run (or a step's) deadline expired."""

    exit_code = ExitCode.TIMEOUT


class JournalCorrupt(RunbookError):
    """The incident log does not verify; `seq` names the first bad record."""

    exit_code = ExitCode.LOG_CORRUPT

    def __init__(self, message: str, seq: int | None = None, truncated: bool = False) -> None:
        super().__init__(message)
        self.seq = seq
        self.truncated = truncated


class ExecutorError(RunbookError):
    """An executor could not do its job (as opposed to a failed expectation)."""


class MissingExtra(ExecutorError):
    """An optional dependency is missing; the message names the install command.

    The command is `pip install 'runbook-as-code[<extra>]'` unless `install`
    names another (a third-party plugin's own distribution or extra).
    """

    def __init__(self, module: str, extra: str, install: str | None = None) -> None:
        command = install or f"pip install 'runbook-as-code[{extra}]'"
        super().__init__(
            f"the Python package '{module}' is not installed; install it with: {command}"
        )
        self.module = module
        self.extra = extra
        self.install = command


class TransportError(ExecutorError):
    """One host cannot be reached or trusted; fails that host's result, never the run."""


class Interrupted(RunbookError):
    """The run was interrupted by a signal; the log is closed first."""

    exit_code = ExitCode.INTERRUPTED
