"""Dry-run plans: what each step would do, computed without doing anything.

A plan entry holds the executor's own `plan()` output (the exact argv, HTTP
request or API call), whether the step is gated, and under which condition it
would run. Anything that depends on a step that has not run is `unknown`,
never guessed. A plan file carries a digest over its entries, params and
targets so `run --plan` can refuse a runbook that would now do something else.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec, PlanContext
from runbook.errors import PlanMismatch, TemplateError
from runbook.load.model import Runbook, Step, Target

PLAN_FORMAT = 1
# What `{{ run.* }}` renders to in a saved plan: stable, so the digest is too.
PLAN_RUN = {"id": "<run id>", "started": "<run start>", "operator": "<operator>"}


@dataclass(frozen=True)
class PlanEntry:
    """One step of a plan, JSON-serialisable as is."""

    step: str
    phase: str
    kind: str
    executor: str
    condition: str
    summary: str
    call: Mapping[str, Any] | None
    unknown: str | None = None
    gated: str | None = None
    read_only: bool = False
    target: str | None = None
    verify: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


def resolve_target(runbook: Runbook, config: Mapping[str, Any]) -> Target | None:
    name = config.get("target")
    if not name:
        return None
    return runbook.targets.get(str(name))


def plan_call(
    step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any], runbook: Runbook
) -> tuple[dict[str, Any] | None, str, str | None, dict[str, Any]]:
    """Render the step's config and ask the executor for its plan.

    Returns (call detail, summary, unknown reason, rendered config). A config that
    depends on an unknown value yields `unknown` with the reason instead of a call.
    """
    from runbook.expr.templating import Renderer, UnknownValue

    try:
        rendered = Renderer(namespace).render_value(
            dict(step.config), shell_fields=spec.shell_fields
        )
    except UnknownValue as exc:
        reason = str(getattr(exc, "reason", "") or exc)
        return None, f"unknown: {reason}", reason, {}
    planned = spec.plan(rendered, PlanContext(step.id, resolve_target(runbook, rendered)))
    return dict(planned.detail), planned.summary, None, rendered


def condition_text(step: Step, namespace: Mapping[str, Any]) -> str:
    """'always', 'skipped: ...' or 'if <when>' depending on what is known now."""
    if not step.when:
        return "always"
    from runbook.expr.expression import compile_expression, is_unknown

    try:
        value = compile_expression(step.when).evaluate(namespace)
    except Exception as exc:  # an expression error shows up in the plan, it is not fatal here
        return f"if {step.when} (cannot evaluate yet: {exc})"
    if is_unknown(value):
        return f"if {step.when}"
    return "always" if value else f"skipped: when '{step.when}' is false"


def gate_text(step: Step, spec: ExecutorSpec, namespace: Mapping[str, Any]) -> str | None:
    """The confirmation prompt an action would show, rendered where possible."""
    if step.kind != "action" or not spec.needs_confirmation:
        return None
    if step.confirm is None:
        return f"Run action '{step.id}'?"
    from runbook.expr.templating import Renderer

    try:
        return Renderer(namespace).render_text(step.confirm.prompt)
    except TemplateError:
        return step.confirm.prompt


@dataclass(frozen=True)
class Plan:
    runbook: str
    runbook_sha256: str
    params: Mapping[str, Any]
    targets: Mapping[str, Any]
    entries: tuple[PlanEntry, ...]

    def body(self) -> dict[str, Any]:
        """The digested part: what would be done, not when or by whom."""
        return {
            "runbook": self.runbook,
            "params": dict(self.params),
            "targets": dict(self.targets),
            "steps": [asdict(e) for e in self.entries],
        }

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> str:
        doc = {"format": PLAN_FORMAT, "digest": self.digest, "runbook_sha256": self.runbook_sha256}
        doc.update(self.body())
        return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"


def build_plan(
    runbook: Runbook,
    params: Mapping[str, Any],
    executors: Mapping[str, ExecutorSpec],
    masked_params: Mapping[str, Any],
) -> Plan:
    """Plan every step with no step results known (the pure, digestible plan)."""
    from runbook.expr.expression import UNKNOWN

    namespace: dict[str, Any] = {
        "params": dict(params),
        "steps": {s.id: UNKNOWN for s in runbook.steps},
        "vars": UNKNOWN,
        "run": PLAN_RUN,
    }
    entries = tuple(plan_entry(step, executors, namespace, runbook) for step in runbook.steps)
    targets = {
        name: {"transport": t.transport, **dict(t.options)} for name, t in runbook.targets.items()
    }
    secrets = [str(params[k]) for k in runbook.secret_params if params.get(k) not in (None, "")]
    if secrets:  # a plan is printed and saved: it must never hold a secret, even rendered
        entries = _masked(entries, secrets)
    return Plan(runbook.name, runbook.sha256, dict(masked_params), targets, entries)


def _masked(entries: tuple[PlanEntry, ...], secrets: list[str]) -> tuple[PlanEntry, ...]:
    from runbook.run.secrets import Masker

    masker = Masker(secrets)
    masked = []
    for entry in entries:
        fields = masker.mask_value(asdict(entry))
        fields["verify"] = tuple(fields["verify"])
        masked.append(PlanEntry(**fields))
    return tuple(masked)


def plan_entry(
    step: Step,
    executors: Mapping[str, ExecutorSpec],
    namespace: Mapping[str, Any],
    runbook: Runbook,
) -> PlanEntry:
    spec = executors[step.executor]
    call, summary, unknown, rendered = plan_call(step, spec, namespace, runbook)
    verify = tuple(asdict(plan_entry(v, executors, namespace, runbook)) for v in step.verify)
    return PlanEntry(
        step=step.id,
        phase=step.phase,
        kind=step.kind,
        executor=step.executor,
        condition=condition_text(step, namespace),
        summary=summary,
        call=call,
        unknown=unknown,
        gated=gate_text(step, spec, namespace),
        read_only=spec.is_read_only(rendered) if rendered else spec.read_only,
        target=str(step.config.get("target")) if step.config.get("target") else None,
        verify=verify,
    )


def load_plan_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanMismatch(f"{path}: cannot read plan file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT or "digest" not in doc:
        raise PlanMismatch(f"{path}: not a runbook plan file (format {PLAN_FORMAT} expected)")
    return doc


def check_plan(saved: Mapping[str, Any], current: Plan, path: Path) -> None:
    """Refuse (exit 2) when the saved plan is for another runbook or now differs."""
    if saved.get("runbook") != current.runbook:
        raise PlanMismatch(
            f"{path}: plan is for runbook '{saved.get('runbook')}', not '{current.runbook}'"
        )
    if saved.get("digest") == current.digest:
        return
    old = json.dumps(
        {k: saved.get(k) for k in current.body()}, indent=2, sort_keys=True, default=str
    )
    new = json.dumps(current.body(), indent=2, sort_keys=True, default=str)
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(True), new.splitlines(True), "saved plan", "current plan", n=2
        )
    )
    raise PlanMismatch(
        f"{path}: the runbook, params or targets no longer produce the saved plan "
        f"(digest {str(saved.get('digest'))[:12]} != {current.digest[:12]}):\n{diff}"
    )
