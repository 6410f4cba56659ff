"""What later steps can see of earlier ones: `steps.<id>.passed/status/output/json`.

Kept separate from the runner so templates, `when:` and `expect:` all see the
same view, and a dry-run can mark not-yet-run steps as UNKNOWN in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.contract import StepResult
from runbook.log.records import FAILED_STATUSES, StepStatus


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended, and the result its last attempt produced."""

    status: StepStatus
    elapsed: float = 0.0
    attempts: int = 0
    message: str = ""
    result: StepResult | None = None
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.status == StepStatus.PASSED

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def view(self) -> dict[str, Any]:
        """The mapping templates and expressions see as `steps.<id>`."""
        fields: dict[str, Any] = dict(self.result.fields) if self.result else {}
        fields.setdefault("json", None)
        fields.update(
            passed=self.passed,
            failed=self.failed,
            status=self.status,
            output=self.result.output if self.result else "",
            error=self.result.error if self.result else None,
            elapsed=self.elapsed,
            attempts=self.attempts,
            message=self.message,
        )
        return fields


def result_namespace(result: StepResult, base: Mapping[str, Any]) -> dict[str, Any]:
    """Names an `expect:` expression sees: the result's fields first, then context."""
    ns: dict[str, Any] = dict(base)
    ns.update(result.fields)
    ns.setdefault("output", result.output)
    ns.setdefault("elapsed", result.elapsed)
    ns.setdefault("json", None)
    ns["ok"] = result.ok
    ns["error"] = result.error
    return ns


@dataclass
class RunState:
    """Mutable state of one run: params, step views, registered vars."""

    params: Mapping[str, Any]
    steps: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)

    def namespace(self, target: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ns: dict[str, Any] = {
            "params": dict(self.params),
            "steps": self.steps,
            "vars": self.vars,
            "run": dict(self.run),
        }
        if target is not None:
            ns["target"] = dict(target)
        return ns
