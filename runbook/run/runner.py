"""Execute a runbook: render, gate, attempt, judge, branch and record.

Every event goes through `_emit`, which appends it to the hash-chained log
first and only then shows it, so the screen never claims more than the log
holds. Control flow follows the runbook: `when` skips, `on_failure` continues,
aborts or jumps, retries repeat attempts, and deadlines bound everything.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.cli.console import Console
from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    OperatorIO,
    PlanContext,
    StepEvent,
    StepResult,
)
from runbook.errors import ExitCode, OperatorDeclined, RunbookError
from runbook.load.model import Runbook, Step
from runbook.log.journal import JournalWriter
from runbook.plan.planner import condition_text, gate_text, plan_call, resolve_target
from runbook.registry import PluginRegistry
from runbook.run.attempts import run_attempt
from runbook.run.gates import Gate
from runbook.run.inventory import Inventory
from runbook.run.judging import judge, result_record
from runbook.run.resume import ResumePoint
from runbook.run.state import RunState, StepOutcome, result_namespace

DEFAULT_ATTEMPT_TIMEOUT = 300.0
MAX_VISITS = 20
TRIAGE_LINES = 12


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
    severity: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    status: str
    exit_code: ExitCode
    reason: str
    counts: Mapping[str, int]


class _RunDeadline(Exception):
    """The run's own deadline passed; unwinds to `run()`."""


class Runner:
    """One run of one runbook; create, call `run()` once."""

    def __init__(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        registry: PluginRegistry,
        journal: JournalWriter,
        console: Console,
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
            },
        )
        self.outcomes: dict[str, StepOutcome] = {}
        self.cancel = threading.Event()
        self._started = time.monotonic()
        deadline = options.deadline if options.deadline is not None else runbook.deadline
        self._deadline_at = None if deadline is None else self._started + deadline
        self._current: str | None = None
        self.resources: dict[str, Any] = {}
        self.gate = Gate(self._emit, io, options.operator, options.yes, options.answers)
        from runbook.run.connections import POOL_KEY, ConnectionPool

        # one connection per host for the whole run, closed with the other resources
        self.resources[POOL_KEY] = ConnectionPool(registry.transports(), options.inventory)

    # -- recording ---------------------------------------------------------------
    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        record = self.journal.append(type_, data)
        self.console.record(record)

    # -- the run -----------------------------------------------------------------
    def run(self) -> RunOutcome:
        try:
            return self._run()
        finally:
            self._close_resources()

    def _close_resources(self) -> None:
        """Close what executors kept open for the run (SSH connections, clients)."""
        for resource in self.resources.values():
            close = getattr(resource, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):  # never mask the run's outcome
                    close()

    def _run(self) -> RunOutcome:
        try:
            outcome = self._walk()
        except KeyboardInterrupt:
            self.cancel.set()
            self._emit(
                "run.interrupted",
                {
                    "reason": "interrupted by the operator (SIGINT)",
                    "step": self._current,
                    "counts": self._counts(),
                },
            )
            return RunOutcome("interrupted", ExitCode.INTERRUPTED, "interrupted", self._counts())
        self._emit(
            "run.finished",
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

    def _walk(self) -> RunOutcome:
        steps = self.runbook.steps
        index = self.runbook.index(self.options.from_step) if self.options.from_step else 0
        for skipped in steps[:index]:
            self._skip(skipped, f"before --from {self.options.from_step}")
        visits: dict[str, int] = {}
        while index < len(steps):
            step = steps[index]
            visits[step.id] = visits.get(step.id, 0) + 1
            if visits[step.id] > MAX_VISITS:
                return self._finish(
                    "failed",
                    ExitCode.FAILED,
                    f"step '{step.id}' visited {MAX_VISITS} times: goto loop stopped",
                )
            try:
                outcome = self._step(step)
            except _RunDeadline:
                return self._finish(
                    "timeout",
                    ExitCode.TIMEOUT,
                    f"run deadline of {self._deadline_text()} passed during '{step.id}'",
                )
            except OperatorDeclined as exc:
                return self._finish("declined", ExitCode.DECLINED, str(exc))
            if not outcome.failed or self.options.dry_run:
                index += 1
                continue
            if step.on_failure == "continue":
                index += 1
            elif step.on_failure == "goto" and step.goto:
                index = self.runbook.index(step.goto)
            else:
                code = ExitCode.TIMEOUT if outcome.timed_out else ExitCode.FAILED
                return self._finish(
                    "failed", code, f"step '{step.id}' {outcome.status}: {outcome.message}"
                )
        status = "planned" if self.options.dry_run else "passed"
        return self._finish(status, ExitCode.OK, self._handled_note())

    def _finish(self, status: str, code: ExitCode, reason: str) -> RunOutcome:
        return RunOutcome(status, code, reason, self._counts())

    def _handled_note(self) -> str:
        handled = [sid for sid, o in self.outcomes.items() if o.failed]
        if not handled:
            return ""
        return "failures handled by on_failure (continue/goto): " + ", ".join(handled)

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

    def _skip(self, step: Step, reason: str) -> StepOutcome:
        self._emit(
            "step.skipped",
            {"step": step.id, "phase": step.phase, "kind": step.kind, "reason": reason},
        )
        outcome = StepOutcome("skipped", message=reason)
        self._record_outcome(step, outcome)
        return outcome

    def _record_outcome(self, step: Step, outcome: StepOutcome) -> None:
        from runbook.expr.expression import UNKNOWN

        self.outcomes[step.id] = outcome
        unknown = outcome.status in ("planned", "unknown")
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
        verdict = self._when(step, namespace)
        if verdict is False:
            return self._skip(step, f"condition false: {step.when}")
        self._emit(
            "step.started",
            {
                "step": step.id,
                "phase": step.phase,
                "kind": step.kind,
                "executor": step.executor,
                "title": step.title,
            },
        )
        if verdict is None or self.options.dry_run:
            dry = self._dry_run_step(step, spec, namespace, conditional=verdict is None)
            if dry is not None:
                return dry
        try:
            if resume is not None and step.id in resume.unfinished_actions:
                self.gate.confirm_rerun(step.id, resume.unfinished_actions[step.id])
            outcome = self._execute(step, spec, namespace)
        except OperatorDeclined as exc:
            self._close_step(step, StepOutcome("declined", message=str(exc)))
            raise
        self._close_step(step, outcome)
        return outcome

    def _restore(self, step: Step, resume: ResumePoint) -> StepOutcome:
        """A step the interrupted run finished: take its outcome, do not run it again."""
        old = resume.done[step.id]
        result = StepResult(ok=True, fields=dict(old.fields), output=old.output)
        outcome = StepOutcome(old.status, old.elapsed, old.attempts, old.message, result)
        self._record_outcome(step, outcome)
        self._emit(
            "step.restored",
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

    def _when(self, step: Step, namespace: Mapping[str, Any]) -> bool | None:
        """True/False, or None when it depends on something a dry-run does not know."""
        if not step.when:
            return True
        from runbook.expr.expression import compile_expression, is_unknown

        value = compile_expression(step.when).evaluate(namespace)
        return None if is_unknown(value) else bool(value)

    def _dry_run_step(
        self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any], conditional: bool
    ) -> StepOutcome | None:
        """Plan the step; return None when a read-only check should run for real."""
        call, summary, unknown, rendered = plan_call(step, spec, namespace, self.runbook)
        runs_for_real = (
            step.kind == "check"
            and unknown is None
            and not conditional
            and not self.options.no_checks
            and spec.is_read_only(rendered)
        )
        if runs_for_real:
            return None
        self._emit(
            "step.planned",
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
        outcome = StepOutcome("unknown" if (unknown or conditional) else "planned", message=summary)
        self._close_step(step, outcome)
        return outcome

    def _close_step(self, step: Step, outcome: StepOutcome) -> None:
        self._record_outcome(step, outcome)
        self._emit(
            "step.finished",
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
            self._emit("incident.mark", {"mark": step.mark, "step": step.id})

    def _notify_observers(self, step: Step, outcome: StepOutcome) -> None:
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
        )
        for error in self.registry.step_finished(event):
            self._emit("observer.error", {"step": step.id, "message": error})

    # -- executing -------------------------------------------------------------------
    def _execute(self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any]) -> StepOutcome:
        from runbook.expr.templating import Renderer

        started = time.monotonic()
        try:
            rendered = Renderer(namespace).render_value(
                dict(step.config), shell_fields=spec.shell_fields
            )
        except RunbookError as exc:
            return StepOutcome("error", message=f"cannot render step config: {exc}")
        if step.kind == "action" and spec.needs_confirmation:
            self._confirm(step, spec, namespace)
        outcome = self._attempts(step, spec, rendered, namespace, started)
        if outcome.passed and step.verify:
            outcome = self._verify(step, outcome, namespace)
        if outcome.result is not None and step.register:
            self._register(step, outcome, namespace)
        return outcome

    def _confirm(self, step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any]) -> None:
        prompt = gate_text(step, spec, namespace) or f"Run action '{step.id}'?"
        require = step.confirm.require if step.confirm else None
        if require:
            from runbook.expr.templating import Renderer

            require = Renderer(namespace).render_text(require)
        self.gate.confirm(step.id, prompt, require)

    def _attempt_budget(self, step: Step, step_started: float) -> tuple[float, str]:
        """Seconds this attempt may take, and which limit sets it."""
        now = time.monotonic()
        budget, why = (step.timeout or DEFAULT_ATTEMPT_TIMEOUT), "timeout"
        if step.deadline is not None and step_started + step.deadline - now < budget:
            budget, why = step_started + step.deadline - now, "step deadline"
        if self._deadline_at is not None and self._deadline_at - now < budget:
            budget, why = self._deadline_at - now, "run deadline"
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
            StepOutcome("timeout", message="no time left before the step deadline", timed_out=True),
        )
        while True:
            attempt += 1
            budget, limit = self._attempt_budget(step, started)
            if budget <= 0:
                if limit == "run deadline":
                    raise _RunDeadline()
                break
            outcome = self._one_attempt(step, spec, config, namespace, attempt, budget)
            if outcome.timed_out and limit == "run deadline":
                raise _RunDeadline()
            retry_on = {"failed": "failed", "error": "error", "timeout": "timeout"}.get(
                outcome.status
            )
            if outcome.passed or attempt >= policy.attempts or retry_on not in policy.on:
                break
            delay = policy.delay_before(attempt + 1)
            self._emit(
                "step.retry",
                {
                    "step": step.id,
                    "delay": delay,
                    "next_attempt": attempt + 1,
                    "attempts": policy.attempts,
                    "reason": outcome.status,
                },
            )
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
            "step.attempt",
            {
                "step": step.id,
                "attempt": attempt,
                "summary": planned.summary,
                "call": dict(planned.detail),
                "timeout": round(budget, 3),
            },
        )
        result = run_attempt(
            spec, config, ctx, lambda elapsed: self.console.progress(step.id, elapsed)
        )
        self._emit("step.result", result_record(step.id, attempt, result))
        self._show_output(step, config, result)
        return judge(step, spec, result, namespace, attempt, self._emit)

    def _show_output(self, step: Step, config: Mapping[str, Any], result: StepResult) -> None:
        """Put output on screen where a responder needs it; all of it is in the log anyway.

        Notifications are shown whole; triage checks (status, logs) show their tail,
        because gathering that information is the point of triage.
        """
        if step.executor == "notify":
            if config.get("stdout", True) and result.output:
                self._emit(
                    "step.output", {"step": step.id, "text": result.output, "show_lines": 40}
                )
        elif step.phase == "triage" and step.kind == "check" and result.output.strip():
            tail = "\n".join(result.output.rstrip("\n").splitlines()[-TRIAGE_LINES:])
            self._emit("step.output", {"step": step.id, "text": tail, "show_lines": TRIAGE_LINES})

    def _verify(
        self, step: Step, outcome: StepOutcome, namespace: Mapping[str, Any]
    ) -> StepOutcome:
        for check in step.verify:
            spec = self.registry.executor(check.executor)
            self._emit(
                "step.started",
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
                    "failed",
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
                    "observer.error", {"step": step.id, "message": f"register {name}: {exc}"}
                )
