"""Execute a runbook: render, gate, attempt, judge, branch and record.

Every event goes through `_emit`, which makes it durable in the hash-chained
log first and only then shows it, so the screen never claims more than the log
holds; `_defer` holds an event for the next durable point (group commit), which
comes before anything leaves the process: a command or action, a question to the
operator, a notification, the final record. Control flow follows the runbook:
`when` skips, `on_failure` continues, aborts or jumps (`on_error` routes an `error`
apart), retries repeat attempts, and deadlines bound everything. Whatever ended the
normal steps -- their end, an abort, the deadline, a signal, an exception nothing
expected -- the `always: true` steps run next and the log gets its final record;
`_verdict` then tells a run that passed from one that failed, could not check, or
never showed the incident resolved.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    OperatorIO,
    PlanContext,
    RunEvent,
    StepEvent,
    StepResult,
)
from runbook.errors import (
    ExitCode,
    LogDirError,
    OperatorDeclined,
    RunbookError,
    StepTimeout,
)
from runbook.load.model import Runbook, Step
from runbook.log.journal import JournalWriter
from runbook.log.records import DRY_RUN_STATUSES, RecordType, StepStatus
from runbook.plan.planner import condition_text, gate_text, plan_call, resolve_target
from runbook.registry import PluginRegistry
from runbook.run.attempts import run_attempt
from runbook.run.fanout import HOST_RECORDER, HostRecorder
from runbook.run.gates import Gate
from runbook.run.inventory import Inventory
from runbook.run.judging import judge, result_record
from runbook.run.resume import ResumePoint
from runbook.run.state import RunState, StepOutcome, result_namespace
from runbook.run.watcher import RunWatcher

if TYPE_CHECKING:
    from runbook.expr.expression import Condition

DEFAULT_ATTEMPT_TIMEOUT = 300.0
FINALLY_GRACE = 30.0
"""Seconds the `always` steps get, together, after a signal or the run deadline stopped the run."""
MAX_VISITS = 20
TRIAGE_LINES = 12
_RETRYABLE = frozenset({StepStatus.FAILED, StepStatus.ERROR, StepStatus.TIMEOUT})
_STEP_REF = re.compile(r"steps(?:\.([\w-]+)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


@dataclass
class RunOptions:
    dry_run: bool = False
    no_checks: bool = False
    yes: bool = False
    only: tuple[str, ...] = ()
    from_step: str | None = None
    answers: Mapping[str, str] = field(default_factory=dict)
    operator: str = "unknown"
    deadline: float | None = None
    inventory: Inventory | None = None
    resume: ResumePoint | None = None
    rerun_unfinished: tuple[str, ...] = ()
    """With `resume`: actions the interrupted run left unfinished that may run again
    (`--rerun-unfinished STEP`); otherwise only an id typed on a terminal allows it."""
    severity: str | None = None
    operator_source: str = "the caller"
    """Where `operator` came from (`--operator`, `$USER`...): it is a claim, logged as one."""
    signing_key: str | None = None
    """Private key file to sign the log with; None: `$RUNBOOK_SIGNING_KEY`, else unsigned."""

    def __post_init__(self) -> None:
        from runbook.run.operator import display_name

        self.operator = display_name(self.operator)


@dataclass(frozen=True)
class RunOutcome:
    status: StepStatus
    exit_code: ExitCode
    reason: str
    counts: Mapping[str, int]


_STOPPED_BY = {
    "SIGINT": "interrupted by the operator (SIGINT)",
    "SIGTERM": "terminated (SIGTERM)",
    "SIGHUP": "the operator's terminal hung up (SIGHUP)",
}


def _interrupt_reason(exc: KeyboardInterrupt) -> str:
    """`run.interrupted` reason, naming the signal.

    The CLI's handler raises KeyboardInterrupt("SIGTERM") (or SIGHUP, SIGINT): a
    KeyboardInterrupt, so no `except Exception` on the way can swallow it. A bare
    one (Python's own Ctrl-C handler, e.g. a script using the API) is SIGINT.
    """
    name = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"
    return _STOPPED_BY.get(name, f"stopped by {name}")


class _RunDeadline(StepTimeout):
    """The run's own deadline passed; unwinds to `run()`."""

    def __init__(self) -> None:
        super().__init__("run deadline passed")


class Runner:
    """One run of one runbook; create, call `run()` once."""

    def __init__(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        registry: PluginRegistry,
        journal: JournalWriter,
        console: RunWatcher,
        io: OperatorIO,
        options: RunOptions,
    ) -> None:
        self.runbook = runbook
        self.registry = registry
        self.journal = journal
        self.console = console
        self.io = io
        self.options = options
        self.state = RunState(
            params,
            run={
                "id": journal.run_id,
                "operator": options.operator,
                "runbook": runbook.name,
                "severity": options.severity or runbook.severity,
                "started": journal.started,
                "status": "running",  # always steps see how the normal steps ended
            },
        )
        self.outcomes: dict[str, StepOutcome] = {}
        self.cancel = threading.Event()
        self._started = time.monotonic()
        deadline = options.deadline if options.deadline is not None else runbook.deadline
        self._deadline_at = None if deadline is None else self._started + deadline
        self._current: str | None = None
        self._in_finally = False  # running the `always` steps
        self._finally_until: float | None = None
        self.resources: dict[str, Any] = {}
        from runbook.run.operator import os_identity

        identity = os_identity(options.operator_source)
        self.gate = Gate(self._emit, io, options.operator, identity, options.yes, options.answers)
        from runbook.run.connections import POOL_KEY, ConnectionPool

        # one connection per host for the whole run, closed with the other resources
        self.resources[POOL_KEY] = ConnectionPool(registry.transports(), options.inventory)

    # -- recording ---------------------------------------------------------------
    def _emit(self, type_: RecordType, data: dict[str, Any]) -> None:
        """Record an event durably, with everything deferred before it (a durable point)."""
        self._durable([(type_, data)])

    def _emit_many(self, events: list[tuple[RecordType, dict[str, Any]]]) -> None:
        """Records that arrived together (hosts of a fan-out finishing): one fsync."""
        self._durable(events)

    def _defer(self, type_: RecordType, data: dict[str, Any]) -> None:
        """Record an event at the next durable point (it shares that fsync).

        Only for events nothing outside the process sees or acts on before the
        run reaches a durable point; a crash before it loses them, and the log
        then ends before them (truncated, never tampered).
        """
        self.journal.defer(type_, data)

    def _durable(self, events: list[tuple[RecordType, dict[str, Any]]] | None = None) -> None:
        """Make what is deferred (and `events`) durable with one fsync, then show it."""
        for record in self.journal.commit(events or ()):
            self.console.record(record)

    # -- the run -----------------------------------------------------------------
    def run(self) -> RunOutcome:
        try:
            outcome = self._run()
        finally:
            self._close_resources()
        self._announce(outcome)  # the final record is durable: its hash is the anchor
        return outcome

    def _announce(self, outcome: RunOutcome) -> None:
        """Tell `runbook_run_finished` observers the log is complete, with its final hash.

        The log takes no record after its final one (that would move the anchor), so an
        observer's error, or a signal that stops the notifications, is shown, not logged.
        """
        signing = self.journal.header_record["data"].get("signing") or {}
        event = RunEvent(
            run_id=self.journal.run_id,
            runbook=self.runbook.name,
            title=self.runbook.title,
            severity=self.options.severity or self.runbook.severity,
            status=outcome.status,
            exit_code=int(outcome.exit_code),
            reason=self.journal.masker.mask(outcome.reason),
            log_path=str(self.journal.path.absolute()),  # it is read far from here
            log_seq=self.journal.seq,
            final_hash=self.journal.last_hash,
            signer=str(signing.get("fingerprint") or ""),
            dry_run=self.options.dry_run,
            counts=dict(outcome.counts),
            elapsed=round(time.monotonic() - self._started, 6),
        )
        try:
            errors = self.registry.run_finished(event)
        except KeyboardInterrupt as exc:  # a second signal: stop notifying, the log is whole
            errors = [f"run-finished notifications stopped: {_interrupt_reason(exc)}"]
        for error in errors:
            self.console.message(
                f"warning: {error}; the log is complete, send its final hash yourself"
            )

    def _close_resources(self) -> None:
        """Close what executors kept open for the run (SSH connections, clients)."""
        for resource in self.resources.values():
            close = getattr(resource, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):  # never mask the run's outcome
                    close()

    def _run(self) -> RunOutcome:
        stopped: KeyboardInterrupt | None = None
        try:
            stop = self._walk()
        except KeyboardInterrupt as exc:
            self.cancel.set()
            stopped, stop = exc, None
        except LogDirError:
            raise  # the log takes no more records: there is no end to write
        except Exception as exc:  # a bug, or an error nothing expected: the log still ends
            stop = self._crashed(exc)
        interrupted_at = self._current
        always_stop, late_signal = self._finally(stop, stopped is not None)
        if stopped is None and late_signal is not None:
            stopped, interrupted_at = late_signal
        if stopped is not None:
            self._emit(
                RecordType.RUN_INTERRUPTED,
                {
                    "reason": _interrupt_reason(stopped),
                    "step": interrupted_at,
                    "counts": self._counts(),
                },
            )
            return RunOutcome(
                StepStatus.INTERRUPTED, ExitCode.INTERRUPTED, "interrupted", self._counts()
            )
        outcome = self._verdict(stop, always_stop)
        self._emit(
            RecordType.RUN_FINISHED,
            {
                "status": outcome.status,
                "exit_code": int(outcome.exit_code),
                "reason": outcome.reason,
                "elapsed": round(time.monotonic() - self._started, 6),
                "counts": dict(outcome.counts),
                "dry_run": self.options.dry_run,
            },
        )
        return outcome

    def _walk(self) -> RunOutcome | None:
        """Run the normal steps; the outcome that stopped them early, or None at the end."""
        steps = self.runbook.steps
        index = self.runbook.index(self.options.from_step) if self.options.from_step else 0
        for skipped in steps[:index]:
            if not skipped.always:
                self._skip(skipped, f"before --from {self.options.from_step}")
        visits: dict[str, int] = {}
        while index < len(steps):
            step = steps[index]
            if step.always:  # runs after the normal steps, in `_finally`
                index += 1
                continue
            visits[step.id] = visits.get(step.id, 0) + 1
            if visits[step.id] > MAX_VISITS:
                return self._finish(
                    StepStatus.FAILED,
                    ExitCode.FAILED,
                    f"step '{step.id}' visited {MAX_VISITS} times: goto loop stopped",
                )
            try:
                outcome = self._step(step)
            except _RunDeadline:
                return self._finish(
                    StepStatus.TIMEOUT,
                    ExitCode.TIMEOUT,
                    f"run deadline of {self._deadline_text()} passed during '{step.id}'",
                )
            except OperatorDeclined as exc:
                return self._finish(StepStatus.DECLINED, ExitCode.DECLINED, str(exc))
            if not outcome.failed or self.options.dry_run:
                index += 1
                continue
            route, target = step.route(outcome.status)
            if route == "continue":
                index += 1
            elif route == "goto" and target:
                index = self.runbook.index(target)
            else:
                return self._aborted(step, outcome)
        return None

    def _aborted(self, step: Step, outcome: StepOutcome) -> RunOutcome:
        """The run's outcome when `step` ended it (`on_failure`/`on_error: abort`)."""
        code = ExitCode.TIMEOUT if outcome.timed_out else ExitCode.FAILED
        return self._finish(
            StepStatus.FAILED, code, f"step '{step.id}' {outcome.status}: {outcome.message}"
        )

    def _crashed(self, exc: Exception) -> RunOutcome:
        """An exception nothing caught: the run ends `error`, its log still complete."""
        where = f" during '{self._current}'" if self._current else ""
        if isinstance(exc, RunbookError):
            return self._finish(StepStatus.ERROR, exc.exit_code, f"run stopped{where}: {exc}")
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        origin = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        return self._finish(
            StepStatus.ERROR,
            ExitCode.FAILED,
            f"run stopped{where} by an internal error{origin}: {type(exc).__name__}: {exc}",
        )

    def _finish(self, status: StepStatus, code: ExitCode, reason: str) -> RunOutcome:
        return RunOutcome(status, code, reason, self._counts())

    # -- always steps ---------------------------------------------------------------
    def _finally(
        self, stop: RunOutcome | None, signalled: bool
    ) -> tuple[RunOutcome | None, tuple[KeyboardInterrupt, str | None] | None]:
        """Run the `always: true` steps, whatever ended the normal ones.

        Returns the outcome an always step's unhandled failure gives a run that
        would otherwise pass, and the first signal that arrived meanwhile (with the
        step it stopped). After a signal or the run deadline they share
        FINALLY_GRACE seconds; a further signal stops only the step it lands in.
        """
        always = [s for s in self.runbook.steps if s.always]
        if not always:
            return None, None
        self._in_finally, self.cancel = True, threading.Event()
        now = time.monotonic()
        grace = now + FINALLY_GRACE
        past_deadline = self._deadline_at is not None and now >= self._deadline_at
        if signalled or past_deadline:
            self._finally_until = grace
        elif self._deadline_at is not None:  # what is left of the deadline, but the grace at least
            self._finally_until = max(self._deadline_at, grace)
        ending = StepStatus.INTERRUPTED if signalled else (stop or self._verdict(None, None)).status
        self.state.run = {**self.state.run, "status": ending}
        always_stop: RunOutcome | None = None
        late_signal: tuple[KeyboardInterrupt, str | None] | None = None
        for step in always:
            try:
                outcome = self._step(step)
            except KeyboardInterrupt as exc:
                late_signal = late_signal or (exc, step.id)
                until = time.monotonic() + FINALLY_GRACE
                self._finally_until = min(self._finally_until or until, until)
                continue
            except OperatorDeclined as exc:
                outcome = self.outcomes.get(step.id) or StepOutcome(
                    StepStatus.DECLINED, message=str(exc)
                )
            except LogDirError:
                raise
            except Exception as exc:  # one crashing always step must not stop the others
                always_stop = always_stop or self._crashed(exc)
                continue
            if always_stop is None and self._always_failed(step, outcome):
                if outcome.status == StepStatus.DECLINED:
                    always_stop = self._finish(
                        StepStatus.DECLINED, ExitCode.DECLINED, outcome.message
                    )
                else:
                    always_stop = self._aborted(step, outcome)
        return always_stop, late_signal

    def _always_failed(self, step: Step, outcome: StepOutcome) -> bool:
        """An always step's failure that its `on_failure`/`on_error` does not handle."""
        if not outcome.failed or self.options.dry_run:
            return False
        return outcome.status == StepStatus.DECLINED or step.route(outcome.status)[0] != "continue"

    # -- the verdict ------------------------------------------------------------------
    def _verdict(self, stop: RunOutcome | None, always_stop: RunOutcome | None) -> RunOutcome:
        """How the run ended: what stopped it, else whether it showed the incident resolved.

        Failures `on_failure` handles do not fail the run (a failing detect check is the
        incident itself). But a run cannot pass when its resolve-phase checks ran and
        none passed, nor when a step could not check or act (`error`) outside the
        detect phase and only `on_failure` (no `on_error`) let the run go on.
        """
        if stop is not None:
            return self._finish(stop.status, stop.exit_code, stop.reason)
        if always_stop is not None:
            return self._finish(always_stop.status, always_stop.exit_code, always_stop.reason)
        if self.options.dry_run:
            return self._finish(StepStatus.PLANNED, ExitCode.OK, self._handled_note())
        unresolved, errors = self._unresolved(), self._unhandled_errors()
        if unresolved:
            reason = unresolved + (f"; {errors}" if errors else "")
            return self._finish(StepStatus.FAILED, ExitCode.FAILED, reason)
        if errors:
            return self._finish(StepStatus.ERROR, ExitCode.FAILED, errors)
        return self._finish(StepStatus.PASSED, ExitCode.OK, self._handled_note())

    def _in_scope(self, step: Step) -> bool:
        """Whether the operator's `--only`/`--from` left `step` to run."""
        if not self._selected(step):
            return False
        start = self.options.from_step
        if step.always or start is None:
            return True
        return self.runbook.index(step.id) >= self.runbook.index(start)

    def _unresolved(self) -> str:
        """Why the run cannot pass for want of a passing resolve-phase check ('' if it can)."""
        checks = [
            s
            for s in self.runbook.steps
            if s.phase == "resolve" and s.kind == "check" and self._in_scope(s)
        ]
        if not checks or any(self._status(s) == StepStatus.PASSED for s in checks):
            return ""
        states = ", ".join(f"{s.id} {self._status(s) or 'not run'}" for s in checks)
        return f"no resolve-phase check passed ({states}): nothing shows the incident resolved"

    def _status(self, step: Step) -> str:
        outcome = self.outcomes.get(step.id)
        return outcome.status if outcome is not None else ""

    def _unhandled_errors(self) -> str:
        """Steps that could not check or act where only `on_failure` let the run go on."""
        steps = {s.id: s for s in self.runbook.steps}
        errored = [
            (sid, outcome.message)
            for sid, outcome in self.outcomes.items()
            if outcome.status == StepStatus.ERROR
            and sid in steps
            and steps[sid].phase != "detect"
            and not steps[sid].handles_errors
        ]
        if not errored:
            return ""
        shown = "; ".join(f"{sid}: {message}" for sid, message in errored[:5])
        more = f"; and {len(errored) - 5} more" if len(errored) > 5 else ""
        return (
            f"could not check or act ({shown}{more}); `on_failure` let the run go on, "
            "but only `on_error: continue` says that is fine"
        )

    def _handled_note(self) -> str:
        steps = {s.id: s for s in self.runbook.steps}
        by_failure: list[str] = []
        by_error: list[str] = []
        for sid, outcome in self.outcomes.items():
            if not outcome.failed:
                continue
            step = steps.get(sid)
            on_error = outcome.status == StepStatus.ERROR and step and step.handles_errors
            (by_error if on_error else by_failure).append(sid)
        notes = []
        if by_failure:
            notes.append("failures handled by on_failure (continue/goto): " + ", ".join(by_failure))
        if by_error:
            notes.append("errors handled by on_error: " + ", ".join(by_error))
        return "; ".join(notes)

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def _deadline_text(self) -> str:
        deadline = (
            self.options.deadline if self.options.deadline is not None else self.runbook.deadline
        )
        return f"{deadline:g}s"

    # -- one step ------------------------------------------------------------------
    def _selected(self, step: Step) -> bool:
        return not self.options.only or step.id in self.options.only

    def _skip(self, step: Step, reason: str, undefined: str | None = None) -> StepOutcome:
        record = {"step": step.id, "phase": step.phase, "kind": step.kind, "reason": reason}
        if undefined is not None:
            record["undefined"] = undefined
        self._defer(RecordType.STEP_SKIPPED, record)
        outcome = StepOutcome(StepStatus.SKIPPED, message=reason)
        self._record_outcome(step, outcome)
        return outcome

    def _record_outcome(self, step: Step, outcome: StepOutcome) -> None:
        from runbook.expr.values import UNKNOWN

        self.outcomes[step.id] = outcome
        unknown = outcome.status in DRY_RUN_STATUSES
        self.state.steps[step.id] = UNKNOWN if unknown else outcome.view()

    def _step(self, step: Step) -> StepOutcome:
        self._current = step.id
        if not self._selected(step):
            return self._skip(step, "not selected by --only")
        resume = self.options.resume
        if resume is not None and step.id in resume.done:
            return self._restore(step, resume)
        spec = self.registry.executor(step.executor)
        target = resolve_target(self.runbook, step.config)
        target_ns = (
            {"name": target.name, "transport": target.transport, **target.options}
            if target
            else None
        )
        namespace = self.state.namespace(target_ns)
        try:
            condition = self._when(step, namespace)
        except RunbookError as exc:  # `'a' < 1`: the step cannot be judged, it is an error
            return self._not_started(step, f"cannot evaluate `when: {step.when}`: {exc}")
        if condition.value is False:
            if condition.undefined:
                reason = self._undefined_reason(step, condition.undefined, condition.why)
                return self._skip(step, reason, undefined=condition.undefined)
            return self._skip(step, f"condition false: {step.when}")
        verdict = condition.value
        self._start(step)
        if verdict is None or self.options.dry_run:
            dry = self._dry_run_step(step, spec, namespace, conditional=verdict is None)
            if dry is not None:
                return dry
        try:
            unfinished = resume.unfinished.get(step.id) if resume is not None else None
            if unfinished is not None and unfinished.needs_confirmation:
                self._durable()  # the step's start is on disk and on screen before asking
                self.gate.confirm_rerun(
                    step.id,
                    unfinished.summary,
                    unfinished.in_flight,
                    step.id in self.options.rerun_unfinished,
                )
            outcome = self._execute(step, spec, namespace)
        except OperatorDeclined as exc:
            self._close_step(step, StepOutcome(StepStatus.DECLINED, message=str(exc)))
            raise
        self._close_step(step, outcome)
        return outcome

    def _restore(self, step: Step, resume: ResumePoint) -> StepOutcome:
        """A step the interrupted run finished: take its outcome, do not run it again."""
        old = resume.done[step.id]
        result = StepResult(ok=True, fields=dict(old.fields), output=old.output)
        outcome = StepOutcome(old.status, old.elapsed, old.attempts, old.message, result)
        self._record_outcome(step, outcome)
        self._defer(
            RecordType.STEP_RESTORED,
            {
                "step": step.id,
                "phase": step.phase,
                "kind": step.kind,
                "status": old.status,
                "from_run": resume.run_id,
                "reason": "finished in the interrupted run; not run again",
            },
        )
        return outcome

    def _start(self, step: Step) -> None:
        data: dict[str, Any] = {
            "step": step.id,
            "phase": step.phase,
            "kind": step.kind,
            "executor": step.executor,
            "title": step.title,
        }
        if step.always:
            data["always"] = True
        self._defer(RecordType.STEP_STARTED, data)  # durable with step.attempt, before it runs

    def _not_started(self, step: Step, message: str) -> StepOutcome:
        """A step that ends `error` before its executor is called."""
        self._start(step)
        outcome = StepOutcome(StepStatus.ERROR, message=message)
        self._close_step(step, outcome)
        return outcome

    def _when(self, step: Step, namespace: Mapping[str, Any]) -> Condition:
        """Run (True), skip (False), or None when a dry-run cannot tell yet.

        A reference to a value that is not there (the answer of a skipped step) makes
        the condition false, and `Condition.undefined` names it.
        """
        from runbook.expr.expression import Condition, compile_expression

        if not step.when:
            return Condition(True)
        return compile_expression(step.when).condition(namespace)

    def _undefined_reason(self, step: Step, ref: str, why: str) -> str:
        """`step.skipped` reason for a `when:` that read a value that is not there."""
        match = _STEP_REF.match(ref)
        if match:
            sid = match.group(1) or match.group(2)
            status = self.outcomes[sid].status if sid in self.outcomes else None
            if status is None:
                why = f"step '{sid}' did not run"
            elif status not in (StepStatus.PASSED, StepStatus.FAILED):
                why = f"step '{sid}' {status}"
        return f"{ref} is undefined ({why}), so `{step.when}` is false"

    def _dry_run_step(
        self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any], conditional: bool
    ) -> StepOutcome | None:
        """Plan the step; return None when a check should run for real.

        Only a check its executor guarantees side-effect free runs: meaning to read is
        not enough (a shell command, an HTTP GET or free-form SQL can still change
        things), so everything else is planned.
        """
        try:
            call, summary, unknown, rendered = plan_call(step, spec, namespace, self.runbook)
        except RunbookError as exc:  # a template reading a value that is not there
            outcome = StepOutcome(StepStatus.ERROR, message=f"cannot plan step: {exc}")
            self._close_step(step, outcome)
            return outcome
        runs_for_real = (
            step.kind == "check"
            and unknown is None
            and not conditional
            and not self.options.no_checks
            and spec.is_side_effect_free(rendered)
        )
        if runs_for_real:
            return None
        self._defer(
            RecordType.STEP_PLANNED,
            {
                "step": step.id,
                "phase": step.phase,
                "kind": step.kind,
                "executor": step.executor,
                "summary": summary,
                "call": call,
                "unknown": unknown,
                "when": step.when if conditional else None,
                "condition": condition_text(step, namespace),
                "gated": gate_text(step, spec, namespace),
                "verify": [v.id for v in step.verify],
            },
        )
        status = StepStatus.UNKNOWN if (unknown or conditional) else StepStatus.PLANNED
        outcome = StepOutcome(status, message=summary)
        self._close_step(step, outcome)
        return outcome

    def _close_step(self, step: Step, outcome: StepOutcome) -> None:
        self._record_outcome(step, outcome)
        self._defer(
            RecordType.STEP_FINISHED,
            {
                "step": step.id,
                "phase": step.phase,
                "kind": step.kind,
                "executor": step.executor,
                "status": outcome.status,
                "elapsed": round(outcome.elapsed, 6),
                "attempts": outcome.attempts,
                "message": outcome.message,
            },
        )
        self._mark(step, outcome)
        self._notify_observers(step, outcome)

    def _mark(self, step: Step, outcome: StepOutcome) -> None:
        """Record the step's explicit incident milestone (`mark:`) when it applies."""
        if step.mark is None or self.options.dry_run:
            return
        reached = outcome.failed if step.mark == "detected" else outcome.passed
        if reached:
            self._defer(RecordType.INCIDENT_MARK, {"mark": step.mark, "step": step.id})

    def _notify_observers(self, step: Step, outcome: StepOutcome) -> None:
        self._durable()  # observers may send the log head out: it is on disk first
        masker = self.journal.masker
        event = StepEvent(
            run_id=self.journal.run_id,
            runbook=self.runbook.name,
            title=self.runbook.title,
            severity=self.options.severity or self.runbook.severity,
            step_id=step.id,
            phase=step.phase,
            kind=step.kind,
            executor=step.executor,
            status=outcome.status,
            elapsed=outcome.elapsed,
            message=masker.mask(outcome.message),
            dry_run=self.options.dry_run,
            fields=masker.mask_value(dict(outcome.result.fields)) if outcome.result else {},
            log_seq=self.journal.seq,
            log_hash=self.journal.last_hash,
        )
        for error in self.registry.step_finished(event):
            self._emit(RecordType.OBSERVER_ERROR, {"step": step.id, "message": error})

    # -- executing -------------------------------------------------------------------
    def _execute(self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any]) -> StepOutcome:
        from runbook.errors import TemplateError
        from runbook.expr.templating import Renderer
        from runbook.load.schema import rendered_none_problem

        started = time.monotonic()
        try:  # rendering is bounded, and may not outlast the first attempt's budget
            budget = self._attempt_budget(step, started)[0]
            deadline = started + budget if budget > 0 else None  # none left: _attempts says so
            rendered = Renderer(namespace, deadline=deadline).render_value(
                dict(step.config), shell_fields=spec.shell_fields, url_fields=spec.url_fields
            )
            problem = rendered_none_problem(step.id, spec, step.config, rendered)
            if problem is not None:  # an unset optional param in a field the executor needs
                raise TemplateError(problem)
        except RunbookError as exc:
            timed_out = bool(getattr(exc, "timed_out", False))  # a template's time bound
            return StepOutcome(
                StepStatus.TIMEOUT if timed_out else StepStatus.ERROR,
                message=f"cannot render step config: {exc}",
                timed_out=timed_out,
            )
        if step.kind == "action" and spec.needs_confirmation:
            unasked = self._confirm(step, spec, namespace)
            if unasked is not None:
                return unasked
        outcome = self._attempts(step, spec, rendered, namespace, started)
        if outcome.passed and step.verify:
            outcome = self._verify(step, outcome, namespace)
        if outcome.result is not None and step.register:
            self._register(step, outcome, namespace)
        return outcome

    def _confirm(
        self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any]
    ) -> StepOutcome | None:
        """Ask the gate; an `error` outcome when the text to type back cannot be rendered."""
        prompt = gate_text(step, spec, namespace) or f"Run action '{step.id}'?"
        require = step.confirm.require if step.confirm else None
        if require:
            from runbook.expr.templating import Renderer

            try:
                require = Renderer(namespace).render_text(require)
            except RunbookError as exc:
                return StepOutcome(
                    StepStatus.ERROR, message=f"cannot render confirm.require: {exc}"
                )
        self._durable()  # the step's start is on disk and on screen before asking
        self.gate.confirm(step.id, prompt, require)
        return None

    def _attempt_budget(self, step: Step, step_started: float) -> tuple[float, str]:
        """Seconds this attempt may take, and which limit sets it."""
        now = time.monotonic()
        budget, why = (step.timeout or DEFAULT_ATTEMPT_TIMEOUT), "attempt timeout"
        if step.deadline is not None and step_started + step.deadline - now < budget:
            budget, why = step_started + step.deadline - now, "step deadline"
        # the always steps run past the run deadline, within their own grace
        run_limit, name = (
            (self._finally_until, "always-step grace")
            if self._in_finally
            else (self._deadline_at, "run deadline")
        )
        if run_limit is not None and run_limit - now < budget:
            budget, why = run_limit - now, name
        return max(budget, 0.0), why

    def _attempts(
        self,
        step: Step,
        spec: ExecutorSpec,
        config: Mapping[str, Any],
        namespace: Mapping[str, Any],
        started: float,
    ) -> StepOutcome:
        policy = step.retries
        attempt, outcome = (
            0,
            StepOutcome(
                StepStatus.TIMEOUT, message="no time left before the step deadline", timed_out=True
            ),
        )
        while True:
            attempt += 1
            budget, limit = self._attempt_budget(step, started)
            if budget <= 0:
                if limit == "run deadline":
                    raise _RunDeadline()
                if attempt == 1:
                    outcome = StepOutcome(
                        StepStatus.TIMEOUT,
                        message=f"no time left before the {limit}",
                        timed_out=True,
                    )
                break
            outcome = self._one_attempt(step, spec, config, namespace, attempt, budget, limit)
            if outcome.timed_out and limit == "run deadline":
                raise _RunDeadline()
            retryable = outcome.status in _RETRYABLE and outcome.status in policy.on
            if outcome.passed or attempt >= policy.attempts or not retryable:
                break
            delay = policy.delay_before(attempt + 1)
            self._emit(
                RecordType.STEP_RETRY,
                {
                    "step": step.id,
                    "delay": delay,
                    "next_attempt": attempt + 1,
                    "attempts": policy.attempts,
                    "reason": outcome.status,
                },
            )
            if self._in_finally and self._finally_until is not None:
                delay = min(delay, max(self._finally_until - time.monotonic(), 0.0))
            if self.cancel.wait(delay):
                raise KeyboardInterrupt
        return StepOutcome(
            outcome.status,
            time.monotonic() - started,
            attempt,
            outcome.message,
            outcome.result,
            outcome.timed_out,
        )

    def _one_attempt(
        self,
        step: Step,
        spec: ExecutorSpec,
        config: Mapping[str, Any],
        namespace: Mapping[str, Any],
        attempt: int,
        budget: float,
        limit: str,
    ) -> StepOutcome:
        target = resolve_target(self.runbook, config)
        ctx = ExecContext(
            step_id=step.id,
            timeout=budget,
            cancel=threading.Event(),
            target=target,
            io=self.io,
            answer=self.options.answers.get(step.id),
            progress=lambda note: self.console.progress(step.id, 0.0, note),
            concurrency=step.concurrency or 20,
            serial=step.serial,
            resources=self.resources,
        )
        planned = spec.plan(config, PlanContext(step.id, target))
        self._emit(
            RecordType.STEP_ATTEMPT,
            {
                "step": step.id,
                "attempt": attempt,
                "summary": planned.summary,
                "call": dict(planned.detail),
                "timeout": round(budget, 3),
                "limit": limit,
            },
        )
        recorder = self._host_recorder(step, attempt)
        try:
            result = run_attempt(
                spec, config, ctx, lambda elapsed: self.console.progress(step.id, elapsed), limit
            )
        finally:
            recorder.close()  # a host that ends after this stays unfinished in the log
        # the result and what is judged of it share one fsync, before observers hear of it
        self._defer(RecordType.STEP_RESULT, result_record(step.id, attempt, result))
        self._show_output(step, spec, config, result)
        return judge(step, spec, result, namespace, attempt, self._defer)

    def _host_recorder(self, step: Step, attempt: int) -> HostRecorder:
        """Journals this attempt's fan-out host by host (found by `on_target` in resources);
        a resumed run's hosts that finished before are handed over, not to be run again."""
        resume = self.options.resume
        unfinished = resume.unfinished.get(step.id) if resume is not None else None
        recorder = HostRecorder(
            step.id,
            attempt,
            self._emit_many,
            restored=unfinished.finished_hosts if unfinished is not None else None,
            restored_from=resume.run_id if resume is not None else None,
        )
        self.resources[HOST_RECORDER] = recorder
        return recorder

    def _show_output(
        self, step: Step, spec: ExecutorSpec, config: Mapping[str, Any], result: StepResult
    ) -> None:
        """Put output on screen where a responder needs it; all of it is in the log anyway.

        Executors that show their output (`shows_output`: notifications) are shown
        whole, when their config says so; triage checks (status, logs) show their
        tail, because gathering that information is the point of triage. Both come
        from the output as the log holds it (masked, capped, a cut noted), so the
        screen never shows a line the log lacks; lines are split on "\n" alone, so a
        "\r" in the output cannot pass for a line break.
        """
        if spec.shows_output:
            if spec.output_shown(config) and result.output:
                text = self.journal.as_logged(result.output)
                self._defer(
                    RecordType.STEP_OUTPUT, {"step": step.id, "text": text, "show_lines": 40}
                )
        elif step.phase == "triage" and step.kind == "check" and result.output.strip():
            logged = self.journal.as_logged(result.output)
            tail = "\n".join(logged.rstrip("\n").split("\n")[-TRIAGE_LINES:])
            self._defer(
                RecordType.STEP_OUTPUT, {"step": step.id, "text": tail, "show_lines": TRIAGE_LINES}
            )

    def _verify(
        self, step: Step, outcome: StepOutcome, namespace: Mapping[str, Any]
    ) -> StepOutcome:
        for check in step.verify:
            spec = self.registry.executor(check.executor)
            self._defer(
                RecordType.STEP_STARTED,
                {
                    "step": check.id,
                    "phase": check.phase,
                    "kind": "check",
                    "executor": check.executor,
                    "title": check.title,
                    "verifies": step.id,
                },
            )
            result = self._execute(check, spec, namespace)
            self._close_step(check, result)
            if not result.passed:
                return StepOutcome(
                    StepStatus.FAILED,
                    outcome.elapsed + result.elapsed,
                    outcome.attempts,
                    f"verify {check.id} {result.status}: {result.message}",
                    outcome.result,
                )
        return outcome

    def _register(self, step: Step, outcome: StepOutcome, namespace: Mapping[str, Any]) -> None:
        from runbook.expr.expression import compile_expression

        assert outcome.result is not None
        ns = result_namespace(outcome.result, namespace)
        for name, expr in step.register.items():
            if not expr:
                self.state.vars[name] = outcome.view()
                continue
            check = compile_expression(expr)
            try:
                self.state.vars[name] = check.evaluate(ns)
            except RunbookError as exc:
                self._emit(
                    RecordType.OBSERVER_ERROR,
                    {"step": step.id, "message": f"register {name}: {exc}"},
                )
