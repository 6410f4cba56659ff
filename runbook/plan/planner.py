"""Dry-run plans: what each step would do, computed without doing anything.

A plan entry holds the executor's own `plan()` output (the exact argv, HTTP
request or API call), whether the step is gated, and under which condition it
would run. Anything that depends on a step that has not run is `unknown`,
never guessed. Each entry also carries the step's gate and control flow
(confirm text and `require`, `when`, `on_failure`, retries, timeouts,
deadlines, expectations, fan-out, verify steps), and the plan carries the run
deadline, the params, the targets with the hosts they resolve to, and the
runbook file's sha256: everything that decides what a run does. Its digest is
over all of that, so `run --plan` (see `runbook.plan.saved`) refuses a runbook
that would now do anything else.

Secret values never enter a plan: params are masked as `***` and rendered
entries are masked; each secret is bound instead by a salted scrypt
fingerprint (salt stored in the plan), so a changed secret still changes the
digest. Salted rather than keyed (HMAC): a plan file must verify on any machine
that has the runbook and the same inputs, without a key to distribute; scrypt
makes guessing a weak secret from a leaked plan file slow, and the per-plan
random salt rules out precomputed tables and shows nothing when two plans (or
two params of one plan) share a secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runbook.contract import ExecutorSpec, PlanContext
from runbook.errors import TemplateError
from runbook.expr.values import UNKNOWN
from runbook.load.model import Runbook, Step, Target

if TYPE_CHECKING:
    from runbook.run.inventory import Inventory

# 2: entries carry gates and control flow; targets' resolved hosts, the run deadline,
# secret fingerprints and the runbook file's sha256 are digested. Changing what is
# digested, or the KDF parameters below, means a new format number.
PLAN_FORMAT = 2
# scrypt cost for secret fingerprints: about 60 ms per secret here, paid once per plan.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SALT_BYTES = 16
MASK = "***"
# Inventory host vars that hold credentials rather than addresses: bound, never shown.
_CREDENTIAL_VAR = re.compile(r"pass|secret|token|credential|api_?key", re.IGNORECASE)
# What `{{ run.* }}` renders to in a saved plan: stable, so the digest is too.
PLAN_RUN = {"id": "<run id>", "started": "<run start>", "operator": "<operator>", "status": UNKNOWN}


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
    # The gate and control flow: what the runner asks, when it runs, how it repeats and
    # for how long, and where it goes on failure.
    confirm_require: str | None = None
    when: str | None = None
    on_failure: str = "abort"
    retries: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    deadline: float | None = None
    expect: tuple[str, ...] = ()
    register: Mapping[str, str] = field(default_factory=dict)
    concurrency: int | None = None
    serial: int | None = None
    min_passing: int | None = None


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
    from runbook.load.schema import rendered_none_problem

    try:
        rendered = Renderer(namespace).render_value(
            dict(step.config), shell_fields=spec.shell_fields, url_fields=spec.url_fields
        )
    except UnknownValue as exc:
        reason = str(getattr(exc, "reason", "") or exc)
        return None, f"unknown: {reason}", reason, {}
    problem = rendered_none_problem(step.id, spec, step.config, rendered)
    if problem is not None:  # an unset optional param in a field the executor needs
        if condition_text(step, namespace) == "always":
            raise TemplateError(problem)
        return None, f"not planned: {problem}", None, {}  # unless its `when` holds
    planned = spec.plan(rendered, PlanContext(step.id, resolve_target(runbook, rendered)))
    return dict(planned.detail), planned.summary, None, rendered


def condition_text(step: Step, namespace: Mapping[str, Any]) -> str:
    """'always', 'skipped: ...' or 'if <when>' depending on what is known now."""
    if not step.when:
        return "always"
    from runbook.expr.expression import compile_expression
    from runbook.expr.values import is_unknown

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


def require_text(step: Step, namespace: Mapping[str, Any]) -> str | None:
    """What the operator must type back at a gated step (rendered where possible), if any."""
    if step.confirm is None or not step.confirm.require:
        return None
    from runbook.expr.templating import Renderer

    try:
        return Renderer(namespace).render_text(step.confirm.require)
    except TemplateError:
        return step.confirm.require


def canonical_json(doc: Any) -> str:
    """The text a digest is taken over: sorted keys, no spaces."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(value: Any, label: str, salt: bytes) -> str:
    """A salted scrypt fingerprint of a secret value (`label` keeps equal secrets apart)."""
    secret = canonical_json(value).encode("utf-8", "surrogatepass")
    key = hashlib.scrypt(
        secret, salt=salt + b"\0" + label.encode(), **SCRYPT, maxmem=2**26, dklen=32
    )
    return key.hex()


@dataclass(frozen=True)
class Plan:
    """What a run would do, and the digest `run --plan` holds it to."""

    runbook: str
    runbook_sha256: str
    params: Mapping[str, Any]
    targets: Mapping[str, Any]
    entries: tuple[PlanEntry, ...]
    deadline: float | None = None
    resolved: Mapping[str, Any] = field(default_factory=dict)
    # Secret values by label (`params.token`), only ever written as fingerprints under `salt`.
    secret_values: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    salt: bytes | None = None

    def with_salt(self, salt: bytes | None) -> Plan:
        """The same plan with its secrets fingerprinted under `salt` (a saved plan's)."""
        if salt is None or salt == self.salt or not self.secret_values:
            return self
        return replace(self, salt=salt)

    @cached_property
    def secrets(self) -> dict[str, Any] | None:
        """How the secrets are bound: KDF, salt and one fingerprint per secret value."""
        if not self.secret_values:
            return None
        salt = self.salt or b""
        return {
            "kdf": "scrypt",
            **SCRYPT,
            "salt": salt.hex(),
            "fingerprints": {
                label: fingerprint(value, label, salt)
                for label, value in sorted(self.secret_values.items())
            },
        }

    def body(self) -> dict[str, Any]:
        """What would be done, not when or by whom; all of it is digested."""
        doc: dict[str, Any] = {
            "runbook": self.runbook,
            "runbook_sha256": self.runbook_sha256,
            "deadline": self.deadline,
            "params": dict(self.params),
            "targets": dict(self.targets),
            "resolved": dict(self.resolved),
            "steps": [asdict(e) for e in self.entries],
        }
        if self.secrets is not None:
            doc["secrets"] = self.secrets
        return doc

    def document(self) -> dict[str, Any]:
        """The saved plan without its digest: exactly what the digest covers.

        Plain JSON values (lists, string keys), so it equals the same plan read back
        from its file and the digest of either is the same.
        """
        doc: dict[str, Any] = json.loads(
            json.dumps({"format": PLAN_FORMAT, **self.body()}, default=str)
        )
        return doc

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.document()).encode()).hexdigest()

    def to_json(self) -> str:
        doc = {**self.document(), "digest": self.digest}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def build_plan(
    runbook: Runbook,
    params: Mapping[str, Any],
    executors: Mapping[str, ExecutorSpec],
    masked_params: Mapping[str, Any],
    inventory: Inventory | None = None,
    salt: bytes | None = None,
) -> Plan:
    """Plan every step with no step results known (the pure, digestible plan).

    `inventory` resolves the targets' hosts as `run --inventory` would. `salt` is
    for the secrets' fingerprints: a saved plan's when checking it, else a new one.
    """
    from runbook.expr.values import UNKNOWN

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
    secret_values = {
        f"params.{k}": params[k] for k in runbook.secret_params if params.get(k) is not None
    }
    resolved = {}
    for name, target in runbook.targets.items():
        hosts = resolved_hosts(target, inventory, secret_values)
        if hosts is not None:
            resolved[name] = hosts
    secrets = [str(params[k]) for k in runbook.secret_params if params.get(k) not in (None, "")]
    if secrets:  # a plan is printed and saved: it must never hold a secret, even rendered
        entries = _masked(entries, secrets)
    return Plan(
        runbook.name,
        runbook.sha256,
        dict(masked_params),
        targets,
        entries,
        deadline=runbook.deadline,
        resolved=resolved,
        secret_values=secret_values,
        salt=(salt or os.urandom(SALT_BYTES)) if secret_values else None,
    )


def resolved_hosts(
    target: Target, inventory: Inventory | None, secret_values: dict[str, Any]
) -> dict[str, Any] | None:
    """The hosts a target names, in order, with their inventory vars; None if it names none.

    Credential vars are shown as `***` and added to `secret_values` to be fingerprinted.
    A target that cannot be resolved (no inventory yet) records why, so a plan made
    without the inventory never matches a run with one.
    """
    if "hosts" not in target.options and "host" not in target.options:
        return None  # addressed by its transport's own options (context, region, ...)
    from runbook.run.inventory import InventoryError, resolve_hosts

    try:
        hosts = resolve_hosts(target, inventory)
    except InventoryError as exc:
        return {"error": str(exc)}
    host_vars: dict[str, Any] = {}
    for host in hosts:
        shown = {}
        for key, value in host.vars.items():
            if _CREDENTIAL_VAR.search(key) and value is not None:
                secret_values[f"hosts.{target.name}.{host.name}.{key}"] = value
                value = MASK
            shown[key] = value
        if shown:
            host_vars[host.name] = shown
    return {"hosts": [host.name for host in hosts], "host_vars": host_vars}


def _masked(entries: tuple[PlanEntry, ...], secrets: list[str]) -> tuple[PlanEntry, ...]:
    from runbook.run.secrets import Masker

    masker = Masker(secrets)
    # Names from the runbook file, not rendered values: a secret is never in them.
    names = ("step", "phase", "kind", "executor", "target", "on_failure", "retries")
    structure = frozenset((*names, *(f"verify.{name}" for name in names)))
    masked = []
    for entry in entries:
        fields = masker.mask_value(asdict(entry), keep=structure)
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
    retries = step.retries
    gated = gate_text(step, spec, namespace)
    return PlanEntry(
        step=step.id,
        phase=step.phase,
        kind=step.kind,
        executor=step.executor,
        condition=condition_text(step, namespace),
        summary=summary,
        call=call,
        unknown=unknown,
        gated=gated,
        read_only=spec.is_read_only(rendered) if rendered else spec.read_only,
        target=str(step.config.get("target")) if step.config.get("target") else None,
        verify=verify,
        confirm_require=require_text(step, namespace) if gated is not None else None,
        when=step.when,
        on_failure=f"goto {step.goto}" if step.goto else step.on_failure,
        retries={
            "attempts": retries.attempts,
            "delay": retries.delay,
            "backoff": retries.backoff,
            "max_delay": retries.max_delay,
            "on": list(retries.on),
        },
        timeout=step.timeout,
        deadline=step.deadline,
        expect=tuple(step.expect),
        register=dict(step.register),
        concurrency=step.concurrency,
        serial=step.serial,
        min_passing=step.min_passing,
    )
