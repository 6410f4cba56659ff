"""The plugin contract: everything a plugin may import from runbook, in one module.

A plugin, built-in or third-party, imports `runbook` or `runbook.contract` and
nothing else from this package. An `ExecutorSpec` says what an executor is
(name, config schema, whether it only reads, what the engine should do for it),
`plan()` is a pure function that says exactly what would be done, and `run()`
does it and returns one `StepResult` shape, whatever the executor, so `expect`
expressions work the same everywhere. Executors that run commands are written
once on top of a `Connection` (`on_target` + `run_command`), whichever
transport (`TransportSpec`) reaches the host. Hooks are marked with `hookimpl`
and listed in `runbook/hookspecs.py`; the exceptions a plugin raises or catches
are re-exported from `runbook.errors`. The runtime behind the few functions here
(connection pool, fan-out, reports) is imported only when they are called, so
this module sits at the bottom of the import graph.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import pluggy

from runbook.errors import (
    ExecutorError,
    InvalidInput,
    MissingExtra,
    OperatorDeclined,
    RunbookError,
    TransportError,
)
from runbook.expr.patterns import PatternError, compile_pattern
from runbook.load.model import Target
from runbook.log.records import RecordType, StepStatus

__all__ = [
    "TEMPLATE",
    "CommandOutcome",
    "Connection",
    "ExecContext",
    "ExecutorError",
    "ExecutorSpec",
    "Host",
    "HostWork",
    "InvalidInput",
    "MissingExtra",
    "OperatorDeclined",
    "OperatorIO",
    "PatternError",
    "PlanContext",
    "PlannedCall",
    "RecordType",
    "ReportFormat",
    "RunEvent",
    "RunbookError",
    "StepEvent",
    "StepResult",
    "StepStatus",
    "Target",
    "TransportError",
    "TransportSpec",
    "builtin_report_formats",
    "compile_pattern",
    "format_duration",
    "hookimpl",
    "import_optional",
    "on_target",
    "prop",
    "run_command",
    "update_cadence",
]

PROJECT = "runbook"
"""The pluggy project name and the entry-point group plugins register under."""

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a hook specification in `runbook/hookspecs.py` (the engine's side)."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's implementation of a hook: `@hookimpl def runbook_executors(): ...`."""


# -- what an executor returns and plans -----------------------------------------------------
@dataclass(frozen=True)
class StepResult:
    """What one attempt of an executor produced.

    `ok` is False only when the executor could not do its job at all (command
    not found, connection refused, timeout); a command that ran and exited 1 is
    `ok=True` with `fields["exit_code"] == 1` and is judged by expectations.
    `fields` is the namespace `expect` expressions see (e.g. `exit_code`,
    `stdout`, `status`, `json`); `output` is the main text, exposed to later
    steps as `steps.<id>.output`. The field `answer` is reserved for what a
    person answered: reports take the first passing result with an `answer`
    as the moment the incident was acknowledged.
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
    """How executors reach the human at the keyboard (e.g. the manual executor)."""

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
    - `read_only`: True when every use is meant only to read (a check, shown as
      read-only in plans); `read_only_when(config)` refines it per config (HTTP
      GET is read-only, POST is not). Meaning to read is not a guarantee.
    - `default_expect`: expressions used when a check declares no `expect`.
    - `shell_fields`: config keys that are shell strings; every value rendered
      into them is shell-quoted, and `validate --strict` warns about them.
    - `url_fields`: config keys that are URLs; every value rendered into them
      is percent-encoded for the part of the URL it lands in (one path
      segment, a query or fragment value), so it cannot add a path, a query
      or a fragment. A field that is exactly one `{{ expr }}` is taken as
      written (the executor then checks it is a URL it accepts).
    - `result_fields`: field name -> description, for docs and `runbook plugins`.

    Capabilities: what the engine does differently for this executor. It
    never looks at an executor's name, so a third party gets the same
    treatment as a built-in by setting the same flag.

    - `side_effect_free_when(config)`: True only when the executor *guarantees*
      that this call cannot change anything, whatever its arguments (a fixed
      API read, fixed SQL in a server-side read-only session). It is the one
      thing a dry-run consults to run a check for real; None (the default)
      means never. Its docstring is the guarantee printed in docs/executors.md.
    - `needs_confirmation`: False when the action *is* the conversation with a
      human (manual, notify); every other action is confirmation-gated.
    - `talks_to_person`: the executor only asks or tells people; it neither
      runs on a host nor changes one, so `validate --strict` does not ask its
      steps for an `expect:` or a `timeout:`.
    - `shows_output`: the console shows the result's `output` whole after each
      attempt (a notification's text), instead of only a triage check's tail.
      A function of the rendered config decides per step (notify's
      `stdout: false` hides it).
    """

    name: str
    schema: Mapping[str, Any]
    plan: PlanFn
    run: RunFn
    read_only: bool = False
    read_only_when: Callable[[Mapping[str, Any]], bool] | None = None
    side_effect_free_when: Callable[[Mapping[str, Any]], bool] | None = None
    default_expect: tuple[str, ...] = ()
    shell_fields: tuple[str, ...] = ()
    url_fields: tuple[str, ...] = ()
    needs_confirmation: bool = True
    talks_to_person: bool = False
    shows_output: bool | Callable[[Mapping[str, Any]], bool] = False
    description: str = ""
    result_fields: Mapping[str, str] = field(default_factory=dict)

    def is_read_only(self, config: Mapping[str, Any]) -> bool:
        """Whether this particular use is meant only to read (see `is_side_effect_free`)."""
        if self.read_only_when is not None:
            return bool(self.read_only_when(config))
        return self.read_only

    def is_side_effect_free(self, config: Mapping[str, Any]) -> bool:
        """Whether this use is guaranteed to change nothing (a dry-run may run it)."""
        guarantee = self.side_effect_free_when
        return guarantee is not None and bool(guarantee(config))

    def output_shown(self, config: Mapping[str, Any]) -> bool:
        """Whether this step's output goes on the console whole (see `shows_output`)."""
        if callable(self.shows_output):
            return bool(self.shows_output(config))
        return self.shows_output


# -- observers and reports ------------------------------------------------------------------
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
    log_seq: int = -1
    """seq of the last record in the incident log when the step finished."""
    log_hash: str = ""
    """Its sha256: the chain head, which pins the log up to `log_seq` (an anchor to send out)."""


@dataclass(frozen=True)
class RunEvent:
    """What observers (`runbook_run_finished`) learn about a run once its log is complete.

    Sent after the log's final record (`run.finished`, or `run.interrupted` after a
    signal) is durable, whatever ended the run: its end, an abort, the deadline, a
    signal. `final_hash` is that record's sha256, the same hash `runbook run` prints:
    kept outside the file (a chat, a pager, a ticket), it anchors the whole log
    (`runbook log verify LOG --expect HASH`). `signer` is the `SHA256:...` fingerprint
    of the key that signed the log, empty when unsigned. Values are already masked.
    """

    run_id: str
    runbook: str
    title: str
    severity: str
    status: str
    """The run's verdict: a `StepStatus` (`passed`, `failed`, `interrupted`, ...)."""
    exit_code: int
    reason: str
    log_path: str
    log_seq: int
    """seq of the log's final record."""
    final_hash: str
    """sha256 of the log's final record: the anchor."""
    signer: str = ""
    dry_run: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def signed(self) -> bool:
        """Whether a key signed the log (then `log verify --key SIGNER` checks who wrote it)."""
        return bool(self.signer)


@dataclass(frozen=True)
class ReportFormat:
    """A report renderer contributed through `runbook_report_formats`.

    `render(records)` receives the verified incident-log records (dicts, in
    order) and returns the report text; it must be a pure function of them.
    `render_incident`, when given, renders the `runbook.report.Incident` instead:
    `runbook report` then builds that bounded model while it reads the log once,
    so the format keeps to bounded memory on a log of any length.
    """

    name: str
    extension: str
    description: str
    render: Callable[[list[dict[str, Any]]], str]
    render_incident: Callable[[Any], str] | None = None


def builtin_report_formats() -> list[ReportFormat]:
    """The formats runbook ships (postmortem, json, junit, html), each built from the log alone.

    A plugin contributes them through `runbook_report_formats` (the built-in
    `runbook_plugins.reports` does); renderers are imported only when used.
    """
    from runbook.report import builtin_formats

    return builtin_formats()


def update_cadence(severity: str) -> float | None:
    """Seconds between stakeholder updates that `severity` promises, None if it has no target.

    Reads the operator's SLA file like `runbook report` does; a file that
    cannot be read falls back to the built-in table (seed 003: P0 every 15
    minutes), so an observer can always say when the next update is due.
    """
    from runbook.report import sla

    target = sla.DEFAULT_TARGETS.get(severity)
    with contextlib.suppress(Exception):  # a broken SLA file must not silence a notification
        target = sla.load_targets().get(severity, target)
    return None if target is None else target.update_every


def format_duration(seconds: float) -> str:
    """A duration as reports write it: `250ms`, `42s`, `12m`, `1h05m`, `7d`."""
    from runbook.report import sla

    return sla.format_duration(seconds)


# -- transports: how a command reaches a host -----------------------------------------------
@dataclass(frozen=True)
class Host:
    """One host: its inventory name and vars (address, port, user, key_file, ...)."""

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Where to connect: the `address` var, else the host's name."""
        return str(self.vars.get("address") or self.name)


@dataclass(frozen=True)
class CommandOutcome:
    """What one command did on one host, whatever the transport.

    `stopped` says how it ended: `exited`, `timeout` or `cancelled`.
    """

    exit_code: int | None
    stdout: str
    stderr: str
    elapsed: float
    stopped: str = "exited"
    pid: int | None = None


class Connection(Protocol):
    """An open way to run commands on one host; safe to use from several threads."""

    host: Host

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
        """Run argv (never through a shell a value could escape) and wait for it.

        Output is kept up to `max_output` bytes per stream. With `on_stdout`,
        stdout is instead handed to it chunk by chunk as it arrives, whatever
        its size, and not kept (`CommandOutcome.stdout` is empty); the
        keyword is passed only by callers that need it (journald).
        Raises OSError when the program cannot be started, TransportError when
        the connection broke.
        """
        ...

    def close(self) -> None:
        """Release the connection; called once by the runner when the run ends."""
        ...


ConnectFn = Callable[[Host, Mapping[str, Any]], Connection]


@dataclass(frozen=True)
class TransportSpec:
    """A named transport contributed by a plugin through `runbook_transports`.

    - `connect(host, options)`: open a connection (raise TransportError with a
      message fit for the operator when the host cannot be reached or trusted).
      `options` are the target's options merged with the host's inventory vars.
    - `check(options)`: input problems found before anything runs (a missing key
      file), returned as messages; they stop the run with exit 2.
    - `remote`: False for a transport that runs here (local), which needs no
      host list: a target without `hosts` runs once, on `localhost`.
    - `connect_for_run()`: optional; called once per run, before the first step
      on this transport fans out, and the function it returns connects every
      host of that run in place of `connect`. It lets a transport import its SDK
      once and share what is worth parsing only once (ssh: known_hosts) across
      the run's hosts; what it holds is dropped with the run. When it raises
      (a missing extra), each host's connect raises it again as that host's error.
    """

    name: str
    connect: ConnectFn
    description: str = ""
    check: Callable[[Mapping[str, Any]], list[str]] | None = None
    remote: bool = True
    connect_for_run: Callable[[], ConnectFn] | None = None


HostWork = Callable[[Connection, Host], StepResult]
"""What `on_target` runs once per host: the host's open connection in, its result out."""


def on_target(ctx: ExecContext, target_name: str | None, work: HostWork) -> StepResult:
    """Run `work` where the step's target says: here, or on each of the target's hosts.

    Connections come from the run's pool (one per host, reused by every step,
    closed when the run ends). A local target without `hosts` gives a plain
    result; any target with hosts gives one result per host
    (`StepResult.hosts`), judged per host by the runner. A host that cannot be
    reached, or whose connection breaks (TransportError), becomes its own
    failed result; the other hosts carry on.
    """
    from runbook.run.connections import run_on_target

    return run_on_target(ctx, target_name, work)


def run_command(
    conn: Connection,
    argv: Sequence[str],
    ctx: ExecContext,
    *,
    call: Mapping[str, Any],
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    max_output: int = 1024 * 1024,
    program_required: bool = False,
    on_stdout: Callable[[bytes], None] | None = None,
) -> StepResult:
    """Run argv on a connection and shape the one result every command executor returns.

    Fields: exit_code, stdout, stderr, pid, elapsed. A program missing on the
    host, sudo wanting a password, a timeout or a cancel is `ok=False` with a
    reason naming the host; any other exit status is for `expect` to judge.
    With `program_required`, a remote shell's 127 "not found" is an error too
    (systemctl/journalctl missing); the shell executor leaves 127 to `expect`.
    `on_stdout` streams stdout instead of keeping it (see `Connection.run`).
    """
    where = f" on {conn.host.name}" if conn.host.name != "localhost" else ""
    try:
        out = conn.run(
            argv,
            timeout=ctx.timeout,
            cancel=ctx.cancel,
            stdin=stdin,
            env=env,
            cwd=cwd,
            max_output=max_output,
            **({} if on_stdout is None else {"on_stdout": on_stdout}),
        )
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename == cwd:
            return StepResult.failure(
                f"working directory is not usable: {cwd} ({exc.strerror})", call=call
            )
        return StepResult.failure(f"command not found{where}: {argv[0]}", call=call)
    except PermissionError:
        return StepResult.failure(f"permission denied{where}: {argv[0]}", call=call)
    except OSError as exc:
        return StepResult.failure(f"cannot start {argv[0]}{where}: {exc}", call=call)
    fields = {
        "exit_code": out.exit_code,
        "stdout": out.stdout,
        "stderr": out.stderr,
        "pid": out.pid,
        "elapsed": out.elapsed,
    }
    error = _command_error(out, argv, where, ctx.timeout, program_required)
    return StepResult(
        ok=error is None,
        fields=fields,
        output=out.stdout,
        error=error,
        timed_out=out.stopped == "timeout",
        elapsed=out.elapsed,
        call=dict(call),
    )


def _command_error(
    out: CommandOutcome, argv: Sequence[str], where: str, timeout: float | None, required: bool
) -> str | None:
    if out.stopped == "timeout":
        return f"timed out after {float(timeout or 0)}s{where}"
    if out.stopped == "cancelled":
        return "cancelled"
    if out.exit_code == 1 and "a password is required" in out.stderr and argv[:1] == ["sudo"]:
        return (
            f"sudo needs a password{where}; runbook runs `sudo -n` and never waits for one: "
            "allow these commands without a password (NOPASSWD) or connect as a user that may"
        )
    if required and out.exit_code == 127 and "not found" in out.stderr:
        program = argv[3] if argv[:1] == ["sudo"] and len(argv) > 3 else argv[0]
        return f"command not found{where}: {program} (is it installed there?)"
    return None


# -- schemas and optional dependencies ------------------------------------------------------
TEMPLATE: Mapping[str, Any] = {"type": "string", "pattern": r"\{\{.*\}\}"}
"""JSON Schema of a `{{ template }}` string, the alternative to a typed value.

Step configs are validated before they are rendered, so a number, integer or
boolean key must also accept a template (`port: "{{ params.port }}"`); the
runner renders it to its native type before `plan()` and `run()` see it.
"""


def prop(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    """A described schema property of JSON type `kind`; non-strings may also be a TEMPLATE.

    `prop("integer", "Replicas wanted.", minimum=0)` keeps a schema short and
    every key documented (docs and `validate` errors use the description).
    """
    if kind == "string":
        return {"type": kind, "description": description, **extra}
    return {"description": description, "anyOf": [{"type": kind, **extra}, dict(TEMPLATE)]}


def import_optional(module: str, extra: str, *, install: str | None = None) -> ModuleType:
    """Import an optional SDK, or raise MissingExtra naming the exact install command.

    Call it inside `run()` or `connect()`, never at module import. The command
    is `pip install 'runbook-as-code[<extra>]'` unless `install` gives another
    (a third-party plugin names its own distribution).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module, extra, install) from exc
