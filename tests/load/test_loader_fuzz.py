"""No runbook file, however mangled, makes the loader (or a plan) raise a traceback.

The inputs are the shipped runbooks in `runbooks/`, mutated the ways a file gets
broken: bytes flipped, control characters, NUL and invalid UTF-8 inserted, and
values swapped for other YAML types (null, non-finite and huge numbers, lists,
mappings, templates naming nothing, unsupported tags). Every mutant is loaded
in-process with the real plugins; one that loads is also typed and planned, so
a template rendering to None into an executor field is exercised too. The only
exceptions allowed are the project's own (`RunbookError`), and a runbook error
points at `file:line:column`. A few fixed mutants go through the real CLI,
whose stderr must hold no traceback.

`RUNBOOK_FUZZ_EXAMPLES` raises the number of examples (default 60, which keeps
this file well under a minute on two cores), e.g. `RUNBOOK_FUZZ_EXAMPLES=5000`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import ROOT, RunCli

from runbook.contract import ExecutorSpec
from runbook.errors import InvalidRunbook, ParamError, RunbookError, TemplateError
from runbook.load.loader import load_runbook, loads_runbook
from runbook.load.marked_yaml import parse_yaml_bytes, read_yaml_file, unmarked
from runbook.load.params import coerce
from runbook.load.schema import (
    core_check,
    core_schema,
    core_validator,
    executor_schema,
    fast_check_for,
    is_valid_fast,
    validator_for,
)
from runbook.session import Session

EXAMPLES = int(os.environ.get("RUNBOOK_FUZZ_EXAMPLES", "60"))
SHIPPED = sorted((ROOT / "runbooks").glob("*.yaml"))
SOURCES = {path.name: path.read_bytes() for path in SHIPPED}
LOCATED = re.compile(r"^.+:\d+:\d+: ")

CONTROL = [b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x7f", b"\xc2\x85"]
CONTROL += [b"\xef\xbf\xbe", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xae"]
VALUES = [
    b"null",
    b"~",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1.5",
    b".inf",
    b"-.inf",
    b".nan",
    b"1e999",
    b"-1e999",
    b"9" * 400,
    b"9" * 5000,
    b"0x" + b"f" * 300,
    b"999999999999999999999d",
    b"400d",
    b"[]",
    b"{}",
    b"[1, [2, {a: null}]]",
    b"{a: {b: [c]}}",
    b"''",
    b'"\\x00\\x0b\\e"',
    b"'{{ params.nope }}'",
    b"'{{ none }}'",
    b"'{{ params }}'",
    b"'{% for x in y %}'",
    b"!!python/object/apply:os.system [id]",
    b"!!binary aGVsbG8=",
    b"&a [*a]",
    b"*nowhere",
    b"[" * 150 + b"]" * 150,
    b"goto nowhere",
    b"!!map [1, 2]",
    b"!!seq {a: 1}",
    b"!!str {a: 1}",
    b"!!bool maybe",
    b"!!float nan",
    b"!!int 0x",
    b"{<<: 5}",
    b"{<<: *nowhere}",
    b"!!timestamp 2026-01-01",
    b"!custom x",
]


@pytest.fixture(scope="module")
def executors() -> dict[str, ExecutorSpec]:
    return Session().executors


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file that examples overwrite (hypothesis runs many examples per test call)."""
    return tmp_path_factory.mktemp("fuzz") / "mutant.yaml"


NUMBER_KEYS = rb"(?:deadline|timeout|delay|max_delay|backoff|attempts|min|max|default|serial)"
NUMBERS = [b".inf", b"-.inf", b".nan", b"1e999", b"9" * 400, b"1e300", b"400d", b"-1", b"null"]


def _value_slots(data: bytes, keys: bytes = rb"[^\s:{},\[\]]+") -> list[tuple[int, int]]:
    """(start, end) of the value of every `key: value` (of `keys`), to swap another in."""
    return [m.span(1) for m in re.finditer(rb"\b" + keys + rb": ([^\n,}]*)", data)]


@st.composite
def mutants(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SOURCES)))
    data = bytearray(SOURCES[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "control", "swap", "swap", "number", "cut"]))
        if kind == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        elif kind == "control":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.sampled_from(CONTROL))
        elif kind == "cut":
            at = draw(st.integers(0, len(data)))
            del data[at : at + draw(st.integers(1, 200))]
        else:
            number = kind == "number"
            slots = _value_slots(bytes(data), NUMBER_KEYS) if number else _value_slots(bytes(data))
            if slots:
                start, end = draw(st.sampled_from(slots))
                data[start:end] = draw(st.sampled_from(NUMBERS if number else VALUES))
    return name, bytes(data)


def _check_error(exc: RunbookError, path: Path) -> None:
    assert exc.message and str(exc) == exc.message
    if isinstance(exc, InvalidRunbook):
        for message in exc.errors:
            assert LOCATED.match(message), message
            assert message.startswith(str(path)), message


def _load_and_plan(path: Path, executors: dict[str, ExecutorSpec]) -> None:
    session = Session()
    try:
        runbook = load_runbook(path, executors)
    except RunbookError as exc:
        _check_error(exc, path)
        return
    # Required params get their documented example, so that the plan is reached; optional
    # ones stay unset, so that templates rendering None into executor fields are reached too.
    given = {
        name: str(param.example)
        for name, param in runbook.params.items()
        if param.required and param.default is None and param.example is not None
    }
    try:
        session.plan(runbook, session.params(runbook, given, environ={}))
    except RunbookError as exc:
        assert exc.message


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutant=mutants())
def test_a_mangled_runbook_is_a_located_error_never_a_traceback(
    mutant: tuple[str, bytes], executors: dict[str, ExecutorSpec], scratch: Path
) -> None:
    _name, data = mutant
    scratch.write_bytes(data)
    _load_and_plan(scratch, executors)


# -- the fast path for valid files agrees with jsonschema ----------------------------------
def _property_names(schema: Any) -> list[str]:
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(names)


def _schemas(executors: dict[str, ExecutorSpec]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "core", core_schema()
    for name in sorted(executors):
        yield name, executor_schema(name, executors)


def test_the_fast_path_covers_every_shipped_schema_and_runbook(
    executors: dict[str, ExecutorSpec],
) -> None:
    for name, schema in _schemas(executors):
        assert fast_check_for(schema) is not None, f"{name}: no fast path (a keyword it lacks?)"
    for path in SHIPPED:
        tree, _ = read_yaml_file(path)
        assert is_valid_fast(core_check(), tree), path


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutant=mutants())
def test_the_fast_path_never_passes_a_mangled_runbook_jsonschema_rejects(
    mutant: tuple[str, bytes], executors: dict[str, ExecutorSpec]
) -> None:
    name, data = mutant
    try:
        tree = parse_yaml_bytes(data, name)
    except RunbookError:
        return
    if is_valid_fast(core_check(), tree):
        assert core_validator().is_valid(tree)
    steps = tree.get("steps") if isinstance(tree, dict) else None
    for step in steps if isinstance(steps, list) else []:
        for kind in ("check", "action"):
            call = step.get(kind) if isinstance(step, dict) else None
            if isinstance(call, dict) and len(call) == 1:
                ((executor, config),) = call.items()
                if executor in executors:
                    schema = executor_schema(executor, executors)
                    if is_valid_fast(fast_check_for(schema), config):
                        assert validator_for(schema).is_valid(config), (executor, config)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, 1.0, -1, 2.5, True, "", "x", "GET", "POST", "restart", "{{ a }}"])
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)


@functools.cache
def _all_executors() -> dict[str, ExecutorSpec]:
    return Session().executors


@functools.cache
def _shipped_configs() -> list[tuple[str, Any]]:
    """(executor, config) of every executor call in the shipped runbooks."""
    found = []
    for path in SHIPPED:
        tree, _ = read_yaml_file(path)
        for step in tree["steps"]:
            calls = [step] + list(step.get("verify", []))
            for call in (c.get(kind) for c in calls for kind in ("check", "action")):
                if isinstance(call, dict):
                    ((executor, config),) = call.items()
                    found.append((executor, unmarked(config)))
    return found


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(data=st.data())
def test_the_fast_path_agrees_with_jsonschema_on_executor_configs(data: st.DataObject) -> None:
    executors = _all_executors()
    name, config = data.draw(st.sampled_from(_shipped_configs()))
    schema = executor_schema(name, executors)
    config = dict(config)
    keys = _property_names(schema) or ["x"]
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from(sorted(config) + keys))
        if data.draw(st.booleans()):
            config[key] = data.draw(_JSON)
        else:
            config.pop(key, None)
    if is_valid_fast(fast_check_for(schema), config):
        assert validator_for(schema).is_valid(config), (name, config)


# -- the classes the first fuzz found, pinned ------------------------------------------------
HEAD = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: t, title: T, severity: P3}\n"
STEP = "steps:\n  - {id: a, phase: triage, check: {shell: {argv: [echo]}}}\n"


def _errors(text: bytes | str, executors: dict[str, ExecutorSpec], tmp_path: Path) -> list[str]:
    path = tmp_path / "t.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    with pytest.raises(InvalidRunbook) as info:
        load_runbook(path, executors)
    for message in info.value.errors:
        assert LOCATED.match(message), message
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (HEAD + 'x: "a\x0bb"\n' + STEP, ":4:6:", "U+000B"),
        (HEAD + STEP + "# a\x00b\n", ":6:4:", "U+0000"),
        (HEAD + "deadline: 5\x1bm\n" + STEP, ":4:12:", "U+001B"),
    ],
)
def test_control_characters_are_located(
    text: str, where: str, says: str, executors: dict[str, ExecutorSpec], tmp_path: Path
) -> None:
    [error] = _errors(text, executors, tmp_path)
    assert where in error and says in error
    assert "escape" in error


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("!!map [1, 2]", "'!!map' marks a mapping, but this is a list"),
        ("!!seq {a: 1}", "'!!seq' marks a list, but this is a mapping"),
        ("!!map", "'!!map' marks a mapping, but this is a plain value"),
        ("!!bool maybe", "'maybe' is not a boolean"),
        ("!!bool yes", "'yes' is not a boolean"),
        ("!!float nan", "'nan' is not a finite number"),
        ("!!int 0o9", "'0o9' is not an integer"),
    ],
)
def test_an_explicit_tag_on_the_wrong_kind_of_value_is_located(
    value: str, says: str, executors: dict[str, ExecutorSpec], tmp_path: Path
) -> None:
    [error] = _errors(HEAD + f"x: {value}\n" + STEP, executors, tmp_path)
    assert ":4:4: " in error and says in error


def test_invalid_utf8_is_located(executors: dict[str, ExecutorSpec], tmp_path: Path) -> None:
    [error] = _errors(HEAD.encode() + b"x: \xff\n" + STEP.encode(), executors, tmp_path)
    assert ":4:4: " in error and "UTF-8" in error


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (".inf", "not a finite number"),
        ("-.Inf", "not a finite number"),
        (".nan", "not a finite number"),
        ("1e999", "too large a number"),
        ("9" * 400, "too large a number"),
        ("9" * 5000, "too large a number"),
        ("400d", "up to 31536000 (365d)"),
        ("999999999999999999999999h", "up to 31536000 (365d)"),
        ("1e300", "up to 31536000 (365d)"),
    ],
)
def test_a_deadline_that_no_timer_can_hold_is_located(
    value: str, says: str, executors: dict[str, ExecutorSpec], tmp_path: Path
) -> None:
    [error] = _errors(HEAD + f"deadline: {value}\n" + STEP, executors, tmp_path)
    assert error.startswith(f"{tmp_path / 't.yaml'}:4:11: ")
    assert says in error


@pytest.mark.parametrize(
    "step",
    [
        "{id: a, phase: triage, check: {shell: {argv: [echo]}}, timeout: .inf}",
        "{id: a, phase: triage, check: {shell: {argv: [echo]}}, "
        "retries: {attempts: 2, delay: 1e400}}",
        "{id: a, phase: triage, check: {shell: {argv: [echo]}}, "
        "retries: {attempts: 2, backoff: 1e309}}",
        "{id: a, phase: triage, action: {shell: {argv: [echo]}}, "
        "verify: [{check: {shell: {argv: [echo]}}, timeout: 999d}]}",
    ],
)
def test_numbers_in_steps_that_no_timer_can_hold_are_located(
    step: str, executors: dict[str, ExecutorSpec], tmp_path: Path
) -> None:
    errors = _errors(HEAD + f"steps:\n  - {step}\n", executors, tmp_path)
    assert all(":5:" in error for error in errors), errors


def test_a_huge_backoff_waits_at_most_max_delay(executors: dict[str, ExecutorSpec]) -> None:
    step = "{id: a, phase: triage, check: {shell: {argv: [echo]}}, "
    step += "retries: {attempts: 2000, delay: 1, backoff: 1e300, max_delay: 30}}"
    runbook = loads_runbook(HEAD + f"steps:\n  - {step}\n", executors)
    policy = runbook.steps[0].retries
    assert [policy.delay_before(n) for n in (2, 3, 1000)] == [1.0, 30.0, 30.0]


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e999", "Infinity"])
def test_a_non_finite_number_param_is_a_param_error(
    raw: str, executors: dict[str, ExecutorSpec]
) -> None:
    runbook = loads_runbook(HEAD + "params: {x: {type: number, default: 1}}\n" + STEP, executors)
    with pytest.raises(ParamError, match="is not a valid number"):
        coerce(runbook.params["x"], raw)


NONE_INTO_A_STRING = HEAD + (
    "params:\n  unit: {type: string, required: false}\n"
    "steps:\n"
    "  - id: status\n    phase: triage\n"
    "    check: {systemd: {status: '{{ params.unit }}'}}\n"
)


def test_none_rendered_into_an_executor_field_names_step_and_field_in_a_plan(
    executors: dict[str, ExecutorSpec],
) -> None:
    session = Session()
    runbook = loads_runbook(NONE_INTO_A_STRING, executors)
    with pytest.raises(TemplateError) as info:
        session.plan(runbook, session.params(runbook, {}, environ={}))
    message = info.value.message
    assert message.startswith("step 'status': systemd.status: '{{ params.unit }}' rendered to None")
    assert "give it a default" in message


def test_none_rendered_into_an_executor_field_is_a_clear_error_in_plan_and_run(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "none.yaml"
    path.write_text(NONE_INTO_A_STRING)
    plan = run_cli("plan", str(path))
    assert plan.code == 2, plan.text
    assert "Traceback" not in plan.err
    assert "step 'status': systemd.status: '{{ params.unit }}' rendered to None" in plan.err
    run = run_cli("run", str(path), "--yes")
    assert "Traceback" not in run.err
    assert run.code == 1, run.text
    assert "step 'status': systemd.status: '{{ params.unit }}' rendered to None" in run.text


def test_a_value_the_executor_takes_after_rendering_is_not_second_guessed(
    executors: dict[str, ExecutorSpec],
) -> None:
    # The schema says argv items are strings; a template rendering an int is the
    # executor's to take (it quotes str(value)). An unset optional key reads as not given.
    session = Session()
    text = HEAD + (
        "params: {n: {type: int, default: 3}, dir: {type: string, required: false}}\n"
        "steps:\n  - {id: a, phase: triage, "
        "check: {shell: {argv: [echo, '{{ params.n }}'], cwd: '{{ params.dir }}'}}}\n"
    )
    runbook = loads_runbook(text, executors)
    plan = session.plan(runbook, session.params(runbook, {}, environ={}))
    assert plan.entries[0].call is not None


def test_none_inside_a_value_names_the_entry(executors: dict[str, ExecutorSpec]) -> None:
    session = Session()
    text = HEAD + (
        "params: {x: {type: string, required: false}}\n"
        "steps:\n  - {id: a, phase: triage, "
        "check: {shell: {argv: [env], env: {X: '{{ params.x }}'}}}}\n"
    )
    runbook = loads_runbook(text, executors)
    with pytest.raises(TemplateError, match=r"^step 'a': shell\.env\.X: '\{\{ params\.x \}\}'"):
        session.plan(runbook, session.params(runbook, {}, environ={}))


def test_a_step_whose_when_skips_it_is_planned_without_its_none(
    executors: dict[str, ExecutorSpec],
) -> None:
    session = Session()
    guarded = NONE_INTO_A_STRING + "    when: params.unit\n"
    runbook = loads_runbook(guarded, executors)
    plan = session.plan(runbook, session.params(runbook, {}, environ={}))
    [entry] = plan.entries
    assert entry.condition.startswith("skipped")
    assert entry.summary.startswith("not planned: step 'status': systemd.status:")


# -- through the CLI -----------------------------------------------------------------------
def _cli_mutants() -> Iterator[tuple[str, bytes]]:
    outage = SOURCES["service-outage.yaml"]
    yield "nul", outage.replace(b"severity: P0", b"severity: P\x000", 1)
    yield "vertical-tab", outage.replace(b"title: Service outage", b"title: Service\x0boutage", 1)
    yield "invalid-utf8", outage.replace(b"Service outage", b"Service \xff outage", 1)
    yield "inf-deadline", outage.replace(b"deadline: 60m", b"deadline: .inf", 1)
    yield "list-for-steps", outage.split(b"\nsteps:")[0] + b"\nsteps: {a: [1, 2]}\n"


@pytest.mark.parametrize(("case", "data"), list(_cli_mutants()), ids=lambda v: str(v)[:14])
def test_the_cli_reports_a_mangled_runbook_without_a_traceback(
    case: str, data: bytes, run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "mangled.yaml"
    path.write_bytes(data)
    for verb in ("validate", "plan"):
        result = run_cli(verb, str(path))
        assert "Traceback" not in result.err, result.err
        assert result.code == 2, (case, verb, result.text)
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: ", result.err), result.err
