"""Declarative scenario files: `runbooks/scenarios/<runbook>.yaml`, read and checked.

A scenario file lists runs of one runbook with scripted executor results and
what must come of them (which steps ran or were skipped, final status, the
rendered calls). It is validated like a runbook — JSON Schema plus step ids
checked against the runbook, every problem reported as `file:line:column` —
and each failed expectation points at the line that states it. Scenario files
live in a `scenarios/` directory next to the runbooks, not beside them, so
`runbook validate runbooks/*.yaml` and `runbook list` only ever see runbooks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.load.schema import Issue, PathT, explain, issue_at, validator_for
from runbook.testing.scenario import Scenario, ScenarioError, ScenarioResult

_IDS = {"type": "array", "items": {"type": "string"}}
_ONE_RESULT = {"type": "object", "description": "result fields, or error/timed_out/output"}
SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "runbook scenarios",
    "type": "object",
    "required": ["scenarios"],
    "additionalProperties": False,
    "properties": {
        "runbook": {"type": "string", "minLength": 1},
        "scenarios": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/scenario"}},
    },
    "$defs": {
        "scenario": {
            "type": "object",
            "required": ["name", "expect"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "params": {"type": "object"},
                "answers": {"type": "object", "additionalProperties": {"type": "string"}},
                "yes": {"type": "boolean"},
                "stubs": {
                    "type": "object",
                    "additionalProperties": {
                        "oneOf": [
                            _ONE_RESULT,
                            {"type": "array", "minItems": 1, "items": _ONE_RESULT},
                        ]
                    },
                },
                "expect": {"$ref": "#/$defs/expect"},
            },
        },
        "expect": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "status": {"type": "string"},
                "exit_code": {"type": "integer"},
                "reason_contains": {"type": "string"},
                "ran": _IDS,
                "not_ran": _IDS,
                "skipped": _IDS,
                "steps": {"type": "object", "additionalProperties": {"type": "string"}},
                "calls": {"type": "object", "additionalProperties": {"type": "object"}},
                "call_contains": {
                    "type": "object",
                    "additionalProperties": {"oneOf": [{"type": "string"}, _IDS]},
                },
            },
        },
    },
}
# Expectation keys whose entries name steps, so a typo is caught before anything runs.
_STEP_LISTS = ("ran", "not_ran", "skipped")
_STEP_MAPS = ("steps", "calls", "call_contains")


class InvalidScenarioFile(ScenarioError):
    """A scenario file is malformed; `errors` holds every located problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0])
        self.errors = errors


@dataclass(frozen=True)
class ScenarioCase:
    """One scenario of a file; `tree` keeps the YAML marks for located failures."""

    name: str
    index: int
    line: int
    tree: Mapping[str, Any]

    def run(self, scenario: Scenario) -> ScenarioResult:
        from runbook.load.marked_yaml import unmarked as _plain

        scenario.stubs.clear()
        for step_id, script in (self.tree.get("stubs") or {}).items():
            scenario.stub(step_id, _plain(script if isinstance(script, list) else [script]))
        return scenario.run(
            _plain(self.tree.get("params") or {}),
            yes=bool(self.tree.get("yes", False)),
            answers=_plain(self.tree.get("answers") or {}),
            name=self.name,
        )


def scenario_file_for(runbook_path: Path) -> Path | None:
    """`runbooks/x.yaml` -> `runbooks/scenarios/x.yaml` (or `.yml`) when it exists."""
    for suffix in (".yaml", ".yml"):
        candidate = runbook_path.parent / "scenarios" / (runbook_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def load_scenarios(path: Path, name: str, step_ids: list[str]) -> list[ScenarioCase]:
    """Every scenario in the file, or InvalidScenarioFile listing each located problem."""
    from runbook.errors import InvalidRunbook
    from runbook.load.marked_yaml import read_yaml_file

    try:
        tree, _data = read_yaml_file(path, name)
    except InvalidRunbook as exc:
        raise InvalidScenarioFile(exc.errors) from None
    issues = explain(validator_for(SCHEMA).iter_errors(tree), tree)
    if not issues:
        issues = _semantic_issues(tree, step_ids)
    if issues:
        raise InvalidScenarioFile([issue.render(name) for issue in sorted(set(issues))])
    return [
        ScenarioCase(case["name"], i, issue_at(tree, ("scenarios", i), "").line, case)
        for i, case in enumerate(tree["scenarios"])
    ]


def _semantic_issues(tree: Mapping[str, Any], step_ids: list[str]) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for i, case in enumerate(tree["scenarios"]):
        base: PathT = ("scenarios", i)
        if case["name"] in seen:
            issues.append(
                issue_at(tree, base + ("name",), f"duplicate scenario name '{case['name']}'")
            )
        seen.setdefault(case["name"], i)
        for path, step_id in _step_refs(case, base):
            if step_id not in step_ids:
                issues.append(issue_at(tree, path, _unknown_step(step_id, step_ids), key=True))
    return issues


def _step_refs(case: Mapping[str, Any], base: PathT) -> Iterator[tuple[PathT, str]]:
    for step_id in case.get("stubs") or {}:
        yield base + ("stubs", step_id), step_id
    expect = case["expect"]
    for key in _STEP_LISTS:
        for j, step_id in enumerate(expect.get(key, [])):
            yield base + ("expect", key, j), step_id
    for key in _STEP_MAPS:
        for step_id in expect.get(key, {}):
            yield base + ("expect", key, step_id), step_id


def _unknown_step(step_id: str, step_ids: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(step_id, step_ids, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"'{step_id}' is not a step of the runbook{hint}"


# -- checking a run against `expect:` -----------------------------------------------------
def check_expectations(case: ScenarioCase, result: ScenarioResult, name: str) -> list[str]:
    """`file:line:column: scenario 'x': expected ..., got ...` for every unmet expectation."""
    expect = case.tree["expect"]
    found = _check_outcome(expect, result) + _check_steps(expect, result)
    found += _check_calls(expect, result)
    messages = []
    for path, problem in found:
        line, column, _path, _message = issue_at(case.tree, ("expect", *path), problem)
        messages.append(f"{name}:{line}:{column}: scenario '{case.name}': {problem}")
    return messages


Found = list[tuple[PathT, str]]


def _check_outcome(expect: Mapping[str, Any], result: ScenarioResult) -> Found:
    found: Found = []
    if "status" in expect and result.status != expect["status"]:
        found.append(
            (("status",), f"expected run status {expect['status']!r}, got {result.status!r}")
        )
    if "exit_code" in expect and result.exit_code != expect["exit_code"]:
        got = result.exit_code
        found.append((("exit_code",), f"expected exit code {expect['exit_code']}, got {got}"))
    wanted = expect.get("reason_contains")
    if wanted is not None and wanted not in result.reason:
        problem = f"expected the run's reason to contain {wanted!r}, got {result.reason!r}"
        found.append((("reason_contains",), problem))
    return found


def _check_steps(expect: Mapping[str, Any], result: ScenarioResult) -> Found:
    found: Found = []
    ran, statuses, position = result.ran, result.statuses, 0
    for j, step_id in enumerate(expect.get("ran", [])):
        if step_id not in ran:
            problem = f"expected step '{step_id}' to run, but it did not ({_why(result, step_id)})"
        elif step_id not in ran[position:]:
            problem = f"expected step '{step_id}' to run after '{expect['ran'][j - 1]}'"
        else:
            position = ran.index(step_id, position) + 1
            continue
        found.append((("ran", j), problem))
    for key in ("not_ran", "skipped"):
        for j, step_id in enumerate(expect.get(key, [])):
            if step_id in ran:
                status = statuses.get(step_id, "?")
                problem = f"expected step '{step_id}' not to run, but it ran (status {status})"
            elif key == "skipped" and step_id not in result.skipped:
                problem = f"expected step '{step_id}' to be skipped by its condition; never reached"
            else:
                continue
            found.append(((key, j), problem))
    for step_id, status in expect.get("steps", {}).items():
        got = statuses.get(step_id, "never reached")
        if got != status:
            found.append(
                (("steps", step_id), f"expected step '{step_id}' to end {status!r}, got {got!r}")
            )
    return found


def _why(result: ScenarioResult, step_id: str) -> str:
    return "skipped: its condition was false" if step_id in result.skipped else "never reached"


def _check_calls(expect: Mapping[str, Any], result: ScenarioResult) -> Found:
    found: Found = []
    for step_id, wanted in expect.get("calls", {}).items():
        calls = result.calls(step_id)
        if not calls:
            found.append(
                (("calls", step_id), f"expected step '{step_id}' to make a call; it made none")
            )
            continue
        for key, value in wanted.items():
            got = calls[-1].get(key)
            if got != value:
                problem = f"expected step '{step_id}' to call with {key} = {value!r}, got {got!r}"
                found.append((("calls", step_id, key), problem))
    for step_id, texts in expect.get("call_contains", {}).items():
        shown = result.summary(step_id) or "no call"
        rendered = shown + " " + repr(result.calls(step_id))
        for text in [texts] if isinstance(texts, str) else texts:
            if text not in rendered:
                problem = (
                    f"expected the call of step '{step_id}' to contain {text!r}, got {shown!r}"
                )
                found.append((("call_contains", step_id), problem))
    return found
