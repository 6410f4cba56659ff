"""Scenario tests: run a runbook for real, with every executor's results scripted.

A scenario answers "if health returns 503, does the runbook alert, restart
behind a confirmation, verify and send the resolution notice?" without a
broken service. Only the executors' `run()` is replaced, and through the
plugin contract, not by patching: `StubExecutors` is a plugin that offers
every real executor under its real name with its real schema, `plan()` and
flags, and a `run()` that returns the scripted result for the step id (one per
attempt) and records the call. A registry holding only that plugin drives the
real runner, so `when:`, `expect:`, retries, confirmations, templating and
the incident log are the production code paths; the log is verified after
every run. Retry delays are dropped (attempt counts are kept) so a scenario
that exhausts ten retries does not sleep for twenty seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.contract import ExecContext, ExecutorSpec, StepResult, hookimpl
from runbook.errors import InvalidInput
from runbook.load.model import Runbook, Step
from runbook.log.records import RecordType, StepStatus

if TYPE_CHECKING:
    from runbook.session import Session

StubSpec = Mapping[str, Any]
"""One scripted attempt: result fields, or `error`/`timed_out`/`output` (see scenario_results)."""


class ScenarioError(InvalidInput):
    """A scenario cannot run as written: unknown step id, bad params, unverified log."""


@dataclass(frozen=True)
class RecordedCall:
    """One call a stubbed executor received: the rendered config, as the real one would."""

    step: str
    executor: str
    attempt: int
    config: Mapping[str, Any]


def all_steps(runbook: Runbook) -> dict[str, Step]:
    """Every step by id, `verify:` checks (`restart.verify-1`) included."""
    steps: dict[str, Step] = {}
    for step in runbook.steps:
        steps[step.id] = step
        for check in step.verify:
            steps[check.id] = check
    return steps


class StubExecutors:
    """The only plugin of a scenario registry: real executor specs, scripted `run()`."""

    def __init__(
        self,
        executors: Mapping[str, ExecutorSpec],
        runbook: Runbook,
        stubs: Mapping[str, Sequence[StubSpec]],
    ) -> None:
        self._executors = dict(executors)
        self._stubs = {step: tuple(script) for step, script in stubs.items()}
        self._expect = {
            sid: step.expect or executors[step.executor].default_expect
            for sid, step in all_steps(runbook).items()
            if step.executor in executors
        }
        self._lock = threading.Lock()
        self.calls: list[RecordedCall] = []

    @hookimpl
    def runbook_executors(self) -> list[ExecutorSpec]:
        """Every real executor with `run` replaced: same name, schema and plan()."""
        return [
            dataclasses.replace(spec, run=partial(self._run, spec))
            for spec in self._executors.values()
        ]

    def _run(self, spec: ExecutorSpec, config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
        from runbook.testing.scenario_results import default_result, scripted_result

        with self._lock:  # attempts run on worker threads
            attempt = 1 + sum(1 for c in self.calls if c.step == ctx.step_id)
            self.calls.append(RecordedCall(ctx.step_id, spec.name, attempt, dict(config)))
        script = self._stubs.get(ctx.step_id)
        if script:
            return scripted_result(spec, config, ctx, script[min(attempt, len(script)) - 1])
        return default_result(spec, config, ctx, self._expect.get(ctx.step_id, ()))


def without_retry_delays(runbook: Runbook) -> Runbook:
    """The same runbook with every retry delay set to zero (attempt counts unchanged)."""

    def fast(step: Step) -> Step:
        return dataclasses.replace(
            step,
            retries=dataclasses.replace(step.retries, delay=0.0),
            verify=tuple(fast(check) for check in step.verify),
        )

    return dataclasses.replace(runbook, steps=tuple(fast(step) for step in runbook.steps))


class Scenario:
    """A runbook plus scripted executor results; `run()` as many times as needed.

    Steps without a stub pass with a default result built from their `expect`
    (see `runbook.testing.scenario_results`). Params not given fall back to the
    runbook's defaults and, for required params, their `example:`.
    """

    def __init__(
        self, runbook: Runbook, executors: Mapping[str, ExecutorSpec], log_dir: Path
    ) -> None:
        self.runbook = runbook
        self.executors = dict(executors)
        self.log_dir = Path(log_dir)
        self.stubs: dict[str, list[StubSpec]] = {}
        self._steps = all_steps(runbook)

    @classmethod
    def load(
        cls, name_or_path: str | Path, log_dir: Path, session: Session | None = None
    ) -> Scenario:
        """Load NAME|PATH validated by the real plugins (`session`'s, else entry points)."""
        from runbook.session import Session

        session = session or Session()
        return cls(session.load(name_or_path), session.executors, log_dir)

    def stub(
        self, step_id: str, attempts: Sequence[StubSpec] | None = None, **fields: Any
    ) -> Scenario:
        """Script `step_id`: `stub("health", status=503)`, or one dict per attempt.

        `stub("health", [{"status": 503}, {"status": 200, "json": {"status": "ok"}}])`
        fails the first attempt and passes the retry; the last entry repeats.
        """
        self.check_step_id(step_id)
        script: list[StubSpec] = list(attempts) if attempts is not None else [fields]
        if not script:
            raise ScenarioError(f"stub for '{step_id}': give at least one result")
        self.stubs[step_id] = script
        return self

    def check_step_id(self, step_id: str) -> None:
        """Raise ScenarioError for an id that is not a step of the runbook."""
        if step_id in self._steps:
            return
        close = difflib.get_close_matches(step_id, list(self._steps), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ScenarioError(
            f"'{step_id}' is not a step of runbook '{self.runbook.name}'{hint} "
            f"(steps: {', '.join(self._steps)})"
        )

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        yes: bool = False,
        answers: Mapping[str, str] | None = None,
        name: str = "scenario",
    ) -> ScenarioResult:
        """Run once against the stubs; the incident log is written and verified."""
        from runbook.log.journal import verify_log
        from runbook.registry import PluginInfo, PluginRegistry
        from runbook.run.runner import RunOptions
        from runbook.session import Session

        plugin = StubExecutors(self.executors, self.runbook, self.stubs)
        registry = PluginRegistry()
        registry.register(plugin, PluginInfo("scenario-stubs", __name__, "(scenario)", ""))
        options = RunOptions(yes=yes, answers=dict(answers or {}), operator="scenario")
        outcome = Session(registry, log_dir=self.log_dir).run(
            without_retry_delays(self.runbook),
            self.params(params or {}),
            options,
            header_extra={"scenario": name},
        )
        verification = verify_log(outcome.log_path)
        if not verification.ok:
            raise ScenarioError(
                f"{outcome.log_path}: log failed verification: {verification.reason}"
            )
        return ScenarioResult(
            outcome.exit_code, outcome.records(), tuple(plugin.calls), outcome.log_path
        )

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Typed params: `given`, else defaults, else the required params' examples."""
        from runbook.load.params import example_params
        from runbook.session import Session

        values: dict[str, Any] = dict(example_params(self.runbook))
        values.update(given)
        try:  # typing params loads no plugins
            return Session().params(self.runbook, values, environ={})
        except InvalidInput as exc:
            raise ScenarioError(str(exc)) from None


@dataclass(frozen=True)
class ScenarioResult:
    """What a scenario run did, read back from its verified incident log."""

    exit_code: int
    records: list[dict[str, Any]]
    stub_calls: tuple[RecordedCall, ...]
    log_path: Path

    def _of(self, type_: RecordType) -> list[dict[str, Any]]:
        return [r["data"] for r in self.records if r.get("type") == type_]

    @property
    def finished(self) -> dict[str, Any]:
        found = self._of(RecordType.RUN_FINISHED) or self._of(RecordType.RUN_INTERRUPTED)
        return found[-1] if found else {}

    @property
    def status(self) -> str:
        """passed, failed, declined, timeout, ... (`run.finished`)."""
        return str(self.finished.get("status", StepStatus.INTERRUPTED))

    @property
    def reason(self) -> str:
        return str(self.finished.get("reason", ""))

    @property
    def ran(self) -> list[str]:
        """Step ids in the order they started (verify checks included, repeats kept)."""
        return [d["step"] for d in self._of(RecordType.STEP_STARTED)]

    @property
    def skipped(self) -> list[str]:
        """Steps skipped because their `when:` was false (or not selected)."""
        return [d["step"] for d in self._of(RecordType.STEP_SKIPPED)]

    @property
    def statuses(self) -> dict[str, str]:
        """Final status of every step that finished: passed, failed, error, ..."""
        return {d["step"]: d["status"] for d in self._of(RecordType.STEP_FINISHED)}

    def calls(self, step_id: str) -> list[dict[str, Any]]:
        """The rendered call of every attempt of `step_id` (argv, URL...), as logged."""
        attempts = self._of(RecordType.STEP_ATTEMPT)
        return [dict(d.get("call") or {}) for d in attempts if d["step"] == step_id]

    def call(self, step_id: str) -> dict[str, Any]:
        """The rendered call of the last attempt of `step_id`; KeyError if it never ran."""
        calls = self.calls(step_id)
        if not calls:
            raise KeyError(f"step '{step_id}' made no call (ran: {', '.join(self.ran)})")
        return calls[-1]

    def summary(self, step_id: str) -> str:
        """The one-line summary of the last attempt (`$ systemctl restart api`)."""
        found = [d["summary"] for d in self._of(RecordType.STEP_ATTEMPT) if d["step"] == step_id]
        return str(found[-1]) if found else ""

    def attempts(self, step_id: str) -> int:
        return len(self.calls(step_id))

    def describe(self) -> str:
        """One line for failure messages: outcome and the path taken."""
        path = " -> ".join(self.ran) or "no step ran"
        reason = f" ({self.reason})" if self.reason else ""
        return (
            f"run {self.status}, exit {self.exit_code}{reason}; ran: {path}; log: {self.log_path}"
        )
