"""Judge an attempt's result against `expect`, per host when the step fanned out.

Every expectation is recorded with its pytest-style message before the verdict,
so a failed check in the log always shows the operands that made it fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runbook.contract import ExecutorSpec, StepResult
from runbook.load.model import Step
from runbook.log.records import RecordType, StepStatus
from runbook.run.state import StepOutcome, result_namespace

Emit = Callable[[RecordType, dict[str, Any]], None]


def _failed_expectations(
    step: Step,
    spec: ExecutorSpec,
    ns: Mapping[str, Any],
    attempt: int,
    emit: Emit,
    host: str | None = None,
) -> list[str]:
    from runbook.expr.expression import compile_expression

    failures: list[str] = []
    for expr in step.expect or spec.default_expect:
        check = compile_expression(expr).check(ns)
        record = {
            "step": step.id,
            "attempt": attempt,
            "expr": expr,
            "passed": check.passed,
            "message": check.message,
        }
        if host is not None:
            record["host"] = host
        emit(RecordType.STEP_EXPECTATION, record)
        if not check.passed:
            failures.append(check.message)
            if host is not None:
                break  # one reason per host is enough; the rest is in the log
    return failures


def judge(
    step: Step,
    spec: ExecutorSpec,
    result: StepResult,
    namespace: Mapping[str, Any],
    attempt: int,
    emit: Emit,
) -> StepOutcome:
    """Outcome of one attempt that the executor carried out."""
    if result.hosts:
        return judge_hosts(step, spec, result, namespace, attempt, emit)
    if not result.ok:
        status = StepStatus.TIMEOUT if result.timed_out else StepStatus.ERROR
        return StepOutcome(
            status, result.elapsed, attempt, result.error or status, result, result.timed_out
        )
    ns = result_namespace(result, namespace)
    failures = _failed_expectations(step, spec, ns, attempt, emit)
    if failures:
        return StepOutcome(StepStatus.FAILED, result.elapsed, attempt, "; ".join(failures), result)
    return StepOutcome(StepStatus.PASSED, result.elapsed, attempt, "", result)


def judge_hosts(
    step: Step,
    spec: ExecutorSpec,
    result: StepResult,
    namespace: Mapping[str, Any],
    attempt: int,
    emit: Emit,
) -> StepOutcome:
    """Judge each host on its own; pass when all (or `min_passing`) hosts pass."""
    failed_hosts: dict[str, str] = {}
    for host, host_result in sorted(result.hosts.items()):
        if not host_result.ok:
            failed_hosts[host] = str(host_result.error)
            continue
        ns = result_namespace(host_result, namespace)
        ns["host"] = host
        failures = _failed_expectations(step, spec, ns, attempt, emit, host)
        if failures:
            failed_hosts[host] = failures[0]
    return hosts_outcome(step, result, failed_hosts, attempt)


def hosts_outcome(
    step: Step, result: StepResult, failed_hosts: Mapping[str, str], attempt: int
) -> StepOutcome:
    total = len(result.hosts)
    needed = total if step.min_passing is None else step.min_passing
    passing = total - len(failed_hosts)
    if passing >= needed:
        note = f"{passing}/{total} hosts passed" if failed_hosts else ""
        return StepOutcome(StepStatus.PASSED, result.elapsed, attempt, note, result)
    reasons = [
        why if why.startswith(f"{host}:") else f"{host}: {why}"
        for host, why in sorted(failed_hosts.items())
    ]
    message = f"{passing}/{total} hosts passed (need {needed}): " + "; ".join(reasons[:5])
    if len(reasons) > 5:
        message += f"; and {len(reasons) - 5} more"
    bad = [result.hosts[h] for h in failed_hosts]
    timed_out = bool(bad) and all(r.timed_out for r in bad)
    status = StepStatus.TIMEOUT if timed_out else StepStatus.FAILED
    return StepOutcome(status, result.elapsed, attempt, message, result, timed_out)


def result_record(step_id: str, attempt: int, result: StepResult) -> dict[str, Any]:
    """What the log keeps of one attempt: every field, and each host's own result."""
    record: dict[str, Any] = {
        "step": step_id,
        "attempt": attempt,
        "ok": result.ok,
        "error": result.error,
        "timed_out": result.timed_out,
        "elapsed": round(result.elapsed, 6),
        "fields": loggable(result.fields),
    }
    if result.hosts:
        record["hosts"] = {host: host_data(r) for host, r in sorted(result.hosts.items())}
    return record


def host_data(result: StepResult) -> dict[str, Any]:
    """What the log keeps of one host's result (`step.result.hosts`, `step.host_finished`)."""
    return {
        "ok": result.ok,
        "error": result.error,
        "timed_out": result.timed_out,
        "elapsed": round(result.elapsed, 6),
        "fields": loggable(result.fields),
    }


def loggable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as JSON-safe values; big strings are cut by the journal."""
    safe: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str | int | float | bool | type(None) | list | dict):
            safe[key] = value
        else:
            safe[key] = repr(value)
    return safe
