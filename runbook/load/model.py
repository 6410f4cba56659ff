"""The typed, frozen shape of a loaded runbook.

The loader turns validated YAML into these dataclasses; the runner, planner
and reports only ever see them, never raw dicts, so a field renamed in YAML is
a change in exactly one place. Executor configs stay mappings on purpose: each
executor owns its config shape through its own JSON Schema.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PHASES: tuple[str, ...] = ("detect", "triage", "mitigate", "resolve", "post-incident")
SEVERITIES: tuple[str, ...] = ("P0", "P1", "P2", "P3")
PARAM_TYPES: tuple[str, ...] = ("string", "int", "number", "bool", "enum")
RETRY_OUTCOMES: tuple[str, ...] = ("failed", "error", "timeout")

StepKind = Literal["check", "action"]


@dataclass(frozen=True)
class Param:
    """A typed runbook parameter; validated before anything runs."""

    name: str
    type: str = "string"
    default: Any = None
    required: bool = False
    pattern: str | None = None
    values: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    description: str = ""
    example: Any = None

    @property
    def env_var(self) -> str:
        """Where a secret value may come from so it never sits on a command line."""
        return "RUNBOOK_PARAM_" + self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class Target:
    """Where steps run: `transport` picks how, `options` are transport specific."""

    name: str
    transport: str = "local"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    """How often an attempt is repeated, how long to wait, and for which outcomes."""

    attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float = 300.0
    on: tuple[str, ...] = RETRY_OUTCOMES

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2, 3, ...)."""
        if self.delay <= 0:
            return 0.0
        try:
            wait = self.delay * (self.backoff ** max(attempt - 2, 0))
        except OverflowError:  # a large backoff after many attempts
            wait = math.inf
        return float(min(wait, self.max_delay))


@dataclass(frozen=True)
class Confirm:
    """An action's gate: the prompt and, for dangerous steps, text to type back."""

    prompt: str
    require: str | None = None


@dataclass(frozen=True)
class Step:
    """One check (read-only) or action (mutating) with its control flow."""

    id: str
    phase: str
    kind: StepKind
    executor: str
    config: Mapping[str, Any]
    title: str = ""
    expect: tuple[str, ...] = ()
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    deadline: float | None = None
    when: str | None = None
    on_failure: str = "abort"
    goto: str | None = None
    on_error: str | None = None  # None: errors go where `on_failure` sends failures
    error_goto: str | None = None
    always: bool = False
    confirm: Confirm | None = None
    register: Mapping[str, str] = field(default_factory=dict)
    verify: tuple[Step, ...] = ()
    concurrency: int | None = None
    serial: int | None = None
    min_passing: int | None = None
    mark: str | None = None
    line: int = 0

    @property
    def is_action(self) -> bool:
        return self.kind == "action"

    def route(self, status: str) -> tuple[str, str | None]:
        """Where the run goes after this step ended `status` (a failure): `continue`,
        `abort` or `goto` with its target. An `error` follows `on_error` when given."""
        if status == "error" and self.on_error is not None:
            return self.on_error, self.error_goto
        return self.on_failure, self.goto

    @property
    def handles_errors(self) -> bool:
        """Whether the runbook says what an `error` of this step means (`on_error:`)."""
        return self.on_error is not None


@dataclass(frozen=True)
class Runbook:
    """A whole validated runbook, with where it came from."""

    name: str
    title: str
    severity: str
    steps: tuple[Step, ...]
    params: Mapping[str, Param] = field(default_factory=dict)
    targets: Mapping[str, Target] = field(default_factory=dict)
    owners: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    deadline: float | None = None
    path: str = ""
    sha256: str = ""
    api_version: str = "runbook/v1"

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(step_id)

    @property
    def secret_params(self) -> tuple[str, ...]:
        return tuple(name for name, p in self.params.items() if p.secret)
