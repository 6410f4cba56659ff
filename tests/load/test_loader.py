"""The loader: YAML with marks, the JSON Schema, semantic checks and the model.

Executors here are real `ExecutorSpec` objects with small `http`/`shell`
schemas, so these tests do not depend on the built-in plugins' progress.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runbook.contract import ExecContext, ExecutorSpec, PlanContext, PlannedCall, StepResult
from runbook.errors import InvalidRunbook, RunbookNotFound, UnknownExecutor
from runbook.load.loader import load_runbook, loads_runbook
from runbook.load.marked_yaml import (
    MAX_BYTES,
    MarkedCLoader,
    MarkedDict,
    MarkedLoader,
    Position,
    YamlProblem,
    load_yaml,
    locate,
)
from runbook.load.model import Confirm, Param, RetryPolicy, Target
from runbook.load.schema import (
    DURATION_PATTERN,
    core_schema,
    executor_schema,
    full_schema,
    parse_duration,
    validator_for,
)
from runbook.load.semantics import param_value_problem

DATA = Path(__file__).resolve().parents[1] / "data" / "loader"
HEAD = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: t, title: T, severity: P3}\n"


def _plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    return PlannedCall("planned", dict(config))


def _run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    return StepResult(ok=True)


HTTP = ExecutorSpec(
    "http",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {"type": "string"},
            "timeout": {"type": "number"},
            "method": {"enum": ["GET", "POST"]},
        },
    },
    _plan,
    _run,
    read_only=True,
    description="HTTP requests",
)
SHELL = ExecutorSpec(
    "shell",
    {
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["argv"]}, {"required": ["command"]}],
        "properties": {
            "argv": {"type": "array", "items": {"type": "string"}},
            "command": {"type": "string"},
            "target": {"type": "string"},
        },
    },
    _plan,
    _run,
)
EXECUTORS = {"http": HTTP, "shell": SHELL}


def errors_of(
    path: Path | str, executors: Mapping[str, ExecutorSpec] = EXECUTORS, **kwargs: Any
) -> list[str]:
    with pytest.raises(InvalidRunbook) as info:
        load_runbook(path, executors, **kwargs)
    assert str(info.value) == info.value.errors[0]
    return info.value.errors


def text_errors(text: str) -> list[str]:
    with pytest.raises(InvalidRunbook) as info:
        loads_runbook(text, EXECUTORS, path="t.yaml")
    return info.value.errors


def one_error(text: str) -> str:
    errors = text_errors(text)
    assert len(errors) == 1, errors
    return errors[0]


# -- YAML ---------------------------------------------------------------------------------
def test_misspelled_step_key_names_line_and_suggests() -> None:
    [error] = errors_of(DATA / "typo.yaml")
    assert error.startswith(f"{DATA / 'typo.yaml'}:8:5: steps[0].retires: unknown key 'retires'")
    assert "did you mean 'retries'?" in error
    assert "(allowed: action, always, check, concurrency, confirm," in error


def test_duplicate_key_is_an_error_naming_both_lines() -> None:
    [error] = errors_of(DATA / "duplicate-key.yaml")
    assert error.endswith(
        "duplicate-key.yaml:8:5: duplicate key 'phase': first on line 6, again on line 8"
    )


def test_alias_bomb_is_rejected_fast() -> None:
    [error] = errors_of(DATA / "alias-bomb.yaml")
    assert "too many aliases (possible alias bomb)" in error


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(YamlProblem, match="recursive"):
        load_yaml("a: &x [1, *x]\n")


def test_deep_nesting_is_rejected() -> None:
    with pytest.raises(YamlProblem, match="nested more than"):
        load_yaml("a: " + "[" * 150 + "]" * 150 + "\n")


def test_oversized_file_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(HEAD.encode() + b"#" * int(3.2 * MAX_BYTES) + b"\n")
    [error] = errors_of(big)
    assert error == f"{big}:1:1: file is 3.2 MiB; runbooks are limited to 1 MiB"


def test_malformed_yaml_reports_line() -> None:
    [error] = errors_of(DATA / "malformed.yaml")
    assert error.startswith(f"{DATA / 'malformed.yaml'}:4:6: ")
    assert "flow mapping that starts at line 3, column 11" in error


def test_file_that_is_not_utf8_reports_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"steps:\n  - id: caf\xe9\n")
    [error] = errors_of(path)
    assert error == f"{path}:5:12: the file is not UTF-8 text"


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert errors_of(path) == [f"{path}:1:1: the file is empty; expected a runbook mapping"]


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(RunbookNotFound, match="no such file"):
        load_runbook(tmp_path / "nope.yaml", EXECUTORS)


def test_unsupported_tags_are_rejected() -> None:
    with pytest.raises(YamlProblem, match=r"unsupported YAML tag '!!python/object"):
        load_yaml("a: !!python/object:os.system {}\n")
    with pytest.raises(YamlProblem, match="unsupported YAML tag '!!binary'"):
        load_yaml("a: !!binary aGk=\n")


@pytest.mark.parametrize("loader", [MarkedLoader, MarkedCLoader])
def test_scalars_follow_yaml_1_2_core(loader: type[Any]) -> None:
    tree = load_yaml(
        "on: yes\nNO: off\nt: true\nint: 010\nhex: 0x1f\noct: 0o17\n"
        "f: 1.5\nwhen: 2024-01-01\nclock: 1:30\nnothing: ~\n",
        loader,
    )
    assert tree == {
        "on": "yes",
        "NO": "off",
        "t": True,
        "int": 10,
        "hex": 31,
        "oct": 15,
        "f": 1.5,
        "when": "2024-01-01",
        "clock": "1:30",
        "nothing": None,
    }


@pytest.mark.parametrize("loader", [MarkedLoader, MarkedCLoader])
def test_marks_are_kept_for_keys_values_and_items(loader: type[Any]) -> None:
    tree = load_yaml("a: 1\nb:\n  - x\n  - {c: 'y'}\n", loader)
    assert isinstance(tree, MarkedDict)
    assert locate(tree, ("a",)) == Position(1, 4)
    assert locate(tree, ("a",), key=True) == Position(1, 1)
    assert locate(tree, ("b", 0)) == Position(3, 5)
    assert locate(tree, ("b", 1, "c")) == Position(4, 9)
    assert locate(tree, ("b", 1, "c"), key=True) == Position(4, 6)


def test_locate_falls_back_to_the_closest_parent() -> None:
    tree = load_yaml("top:\n  inner: {x: 1}\n")
    assert locate(tree, ("top", "inner", "missing")) == Position(2, 10)
    assert locate(tree, ("top", "inner", "x", "deeper")) == Position(2, 14)
    assert locate(tree, ("absent",)) == Position(1, 1)


def test_merge_keys_work_and_explicit_keys_win() -> None:
    tree = load_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert tree["use"] == {"x": 1, "y": 3}


# -- schema errors ------------------------------------------------------------------------
def test_wrong_type_reports_path_and_line() -> None:
    errors = errors_of(DATA / "many-errors.yaml")
    assert (
        f"{DATA / 'many-errors.yaml'}:7:25: steps[0].check.http.url: "
        "5 is not of type 'string'" in errors
    )


def test_errors_from_core_schema_and_executor_configs_come_together_sorted() -> None:
    errors = errors_of(DATA / "many-errors.yaml")
    assert [e.split(": ")[0].rsplit(":", 2)[1] for e in errors] == ["3", "7", "11"]
    assert "metadata.severity: 'P9' is not one of the allowed values" in errors[0]
    assert errors[2].endswith(
        "steps[1].timeout: 'soon': expected a duration: seconds (30, 0.5)"
        " or text like '500ms', '30s', '5m', '1h30m'"
    )


def test_enum_error_lists_allowed_values() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: mitgate\n    check: {shell: {argv: [x]}}\n"
    )
    assert error == (
        "t.yaml:6:12: steps[0].phase: 'mitgate' is not one of the allowed values; "
        "did you mean 'mitigate'? (allowed: detect, triage, mitigate, resolve, "
        "post-incident)"
    )


def test_both_check_and_action_is_an_error() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}}\n    action: {shell: {argv: [y]}}\n"
    )
    assert error == "t.yaml:5:5: steps[0]: a step needs exactly one of 'check' or 'action'"


def test_a_step_with_neither_check_nor_action_is_an_error() -> None:
    error = one_error(HEAD + "steps:\n  - {id: a, phase: detect}\n")
    assert error == "t.yaml:5:5: steps[0]: a step needs exactly one of 'check' or 'action'"


def test_missing_key_points_at_the_mapping() -> None:
    error = one_error(HEAD + "steps:\n  - id: a\n    check: {shell: {argv: [x]}}\n")
    assert error == "t.yaml:5:5: steps[0]: missing required key 'phase'"


def test_two_executors_in_one_call_is_an_error() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}, http: {url: y}}\n"
    )
    assert error.startswith("t.yaml:7:12: steps[0].check: name exactly one executor")


def test_invalid_names_point_at_the_key() -> None:
    errors = text_errors(
        HEAD + "params:\n  Service: {}\nsteps:\n  - id: Bad\n"
        "    phase: detect\n    check: {shell: {argv: [x]}}\n"
    )
    assert errors == [
        "t.yaml:5:3: params.Service: 'Service': parameter names are lowercase letters, digits "
        "and '_', starting with a letter or '_'",
        "t.yaml:7:9: steps[0].id: 'Bad': step ids are lowercase letters, digits, '_' and '-', "
        "starting with a letter or digit",
    ]


def test_long_values_are_not_dumped_into_messages() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}}\n    title: {"
        + ", ".join(f"k{i}: {'v' * 50}" for i in range(20))
        + "}\n"
    )
    assert "is not of type 'string'" in error
    assert len(error) < 200


# -- executors ----------------------------------------------------------------------------
def test_unknown_executor_lists_installed() -> None:
    error = one_error(HEAD + "steps:\n  - id: a\n    phase: detect\n    check: {htp: {url: x}}\n")
    assert error == (
        "t.yaml:7:13: steps[0].check.htp: unknown executor 'htp'; did you mean "
        "'http'? (installed executors: http, shell)"
    )


def test_unknown_executor_message_comes_from_the_callback() -> None:
    def explain(name: str) -> str:
        return f"unknown executor '{name}'; it is provided by: pip install 'runbook-as-code[k8s]'"

    path = DATA / "typo.yaml"
    text = path.read_text().replace("retires", "retries").replace("http", "kubernetes", 1)
    with pytest.raises(InvalidRunbook) as info:
        loads_runbook(text, EXECUTORS, path="k.yaml", unknown_executor=explain)
    assert info.value.errors == [
        "k.yaml:7:13: steps[0].check.kubernetes: unknown executor "
        "'kubernetes'; it is provided by: pip install "
        "'runbook-as-code[k8s]'"
    ]


def test_executor_config_error_points_at_its_line() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: detect\n    check:\n      http:\n"
        "        url: http://127.0.0.1/\n        timeout: five\n"
    )
    assert error == "t.yaml:10:18: steps[0].check.http.timeout: 'five' is not of type 'number'"


def test_executor_alternatives_are_summarised() -> None:
    error = one_error(HEAD + "steps:\n  - id: a\n    phase: detect\n    check: {shell: {}}\n")
    assert error == "t.yaml:7:20: steps[0].check.shell: needs exactly one of 'argv' or 'command'"


def test_verify_check_config_is_validated_too() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: mitigate\n"
        "    action: {shell: {argv: [x]}}\n"
        "    verify:\n      - check: {http: {url: 1}}\n"
    )
    assert error == "t.yaml:9:29: steps[0].verify[0].check.http.url: 1 is not of type 'string'"


# -- semantics ----------------------------------------------------------------------------
def test_when_referring_to_later_step_is_an_error() -> None:
    errors = errors_of(DATA / "refs.yaml")
    assert (
        f"{DATA / 'refs.yaml'}:9:11: steps[0].when: 'steps.restart' refers to a step that "
        "runs later (line 12); only earlier steps have results"
    ) in errors


def test_expect_referring_to_its_own_step_explains_the_result_fields() -> None:
    errors = errors_of(DATA / "refs.yaml")
    assert any(
        ":11:13: steps[0].expect: 'steps.probe' is this step: expect sees its own "
        "result fields directly" in e
        for e in errors
    )


def test_unknown_param_in_template_suggests() -> None:
    errors = errors_of(DATA / "refs.yaml")
    assert (
        f"{DATA / 'refs.yaml'}:10:25: steps[0].check.http.url: 'params.servce' is not a "
        "declared param; did you mean 'service'? (declared: service)"
    ) in errors


def test_goto_to_unknown_step() -> None:
    errors = errors_of(DATA / "refs.yaml")
    assert (
        f"{DATA / 'refs.yaml'}:15:17: steps[1].on_failure: 'goto probee': no step has id "
        "'probee'; did you mean 'probe'?"
    ) in errors
    assert len(errors) == 4  # steps.probe in the later step's argv is fine


def test_goto_to_itself_is_an_error() -> None:
    error = one_error(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}}\n    on_failure: goto a\n"
    )
    assert "steps[0].on_failure: 'goto a' names this step itself" in error


def test_duplicate_step_ids_name_both_lines() -> None:
    error = one_error(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: [x]}}}\n"
        "  - {id: a, phase: detect, check: {shell: {argv: [y]}}}\n"
    )
    assert error == (
        "t.yaml:6:10: steps[1].id: duplicate step id 'a': first on line 5, again on line 6"
    )


def test_confirm_and_verify_only_on_actions() -> None:
    errors = text_errors(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}}\n    confirm: Sure?\n"
        "    verify: [{check: {shell: {argv: [y]}}}]\n"
    )
    assert errors == [
        "t.yaml:8:5: steps[0].confirm: 'confirm' only applies to actions; this step is a check "
        "(read-only)",
        "t.yaml:9:5: steps[0].verify: 'verify' only applies to actions; this step is a check "
        "(read-only)",
    ]


def test_unknown_target_suggests_a_declared_one() -> None:
    error = one_error(
        HEAD + "targets:\n  web: {transport: ssh}\nsteps:\n  - id: a\n"
        "    phase: detect\n    check: {shell: {argv: [x], target: webb}}\n"
    )
    assert error == (
        "t.yaml:9:40: steps[0].check.shell.target: unknown target 'webb'; "
        "did you mean 'web'? (declared targets: web)"
    )


def test_enum_param_needs_values() -> None:
    error = one_error(
        HEAD + "params:\n  env: {type: enum}\nsteps:\n"
        "  - {id: a, phase: detect, check: {shell: {argv: [x]}}}\n"
    )
    assert error == "t.yaml:5:8: params.env: missing required key 'values'"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{type: int, default: '80'}", "params.p.default: the default '80' is not of type 'int'"),
        ("{type: int, default: true}", "params.p.default: the default True is not of type 'int'"),
        (
            "{type: string, default: API, pattern: '^[a-z]+$'}",
            "params.p.default: the default 'API' does not match the pattern '^[a-z]+$'",
        ),
        (
            "{type: enum, values: [a, b], default: c}",
            "params.p.default: the default 'c' is not one of the allowed values (a, b)",
        ),
        (
            "{type: number, default: 11, max: 10}",
            "params.p.default: the default 11 is more than the maximum 10",
        ),
        ("{type: int, min: 5, max: 1}", "params.p.min: min 5 is greater than max 1"),
        ("{type: string, pattern: '('}", "params.p.pattern: invalid regular expression"),
        ("{type: int, values: [1, two]}", "params.p.values[1]: 'two' is not of type 'int'"),
    ],
)
def test_param_spec_must_be_consistent(spec: str, message: str) -> None:
    error = one_error(
        HEAD + f"params:\n  p: {spec}\nsteps:\n"
        "  - {id: a, phase: detect, check: {shell: {argv: [x]}}}\n"
    )
    assert message in error


def test_a_secret_default_is_never_quoted_back() -> None:
    error = one_error(
        HEAD + "params:\n  token: {secret: true, default: hunter2, pattern: '^x'}\n"
        "steps:\n  - {id: a, phase: detect, check: {shell: {argv: [x]}}}\n"
    )
    assert "hunter2" not in error
    assert error.endswith(
        "params.token.default: the default *** does not match the pattern '^x' "
        "(the whole value must match)"
    )


def test_param_value_problem_is_none_for_good_values() -> None:
    param = Param(name="n", type="number", minimum=0, maximum=1)
    assert param_value_problem(param, 0.5) is None
    assert param_value_problem(param, 2) == "2 is more than the maximum 1"


def test_invalid_expression_is_reported_with_its_location() -> None:
    errors = text_errors(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {shell: {argv: [x]}}\n    expect: ['exit_code ==']\n"
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        "t.yaml:8:14: steps[0].expect[0]: expression 'exit_code ==', column 13: "
    )


# -- the model ----------------------------------------------------------------------------
def test_valid_runbook_builds_model() -> None:
    path = DATA / "valid.yaml"
    rb = load_runbook(path, EXECUTORS)
    assert (rb.name, rb.title, rb.severity, rb.api_version) == (
        "service-outage",
        "Service outage",
        "P1",
        "runbook/v1",
    )
    assert rb.owners == ("sre@example.com",) and rb.tags == ("availability", "http")
    assert rb.description == "The service does not answer."
    assert rb.deadline == 1800.0
    assert rb.path == str(path)
    assert rb.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert rb.params["service"] == Param(
        "service", "string", "api", False, "^[a-z0-9-]+$", description="Service name"
    )
    assert rb.params["replicas"] == Param("replicas", "int", 3, minimum=1, maximum=10, example=5)
    assert rb.params["env"].values == ("staging", "production")
    assert rb.params["token"].secret and not rb.params["token"].required
    assert rb.params["host"].required
    assert rb.secret_params == ("token",)
    assert rb.targets == {
        "web": Target("web", "ssh", {"hosts": ["{{ inventory.web }}"], "user": "deploy"}),
        "box": Target("box", "local", {}),
    }
    assert [s.id for s in rb.steps] == ["health", "restart", "report"]


def test_valid_runbook_builds_checks() -> None:
    health = load_runbook(DATA / "valid.yaml", EXECUTORS).step("health")
    assert (health.kind, health.executor, health.phase, health.title, health.line) == (
        "check",
        "http",
        "detect",
        "Is it up?",
        23,
    )
    assert health.config == {"url": "https://{{ params.host }}/health", "timeout": 5}
    assert type(health.config) is dict
    assert health.expect == ("status == 200", "elapsed < 2.0")
    assert health.retries == RetryPolicy(3, 2.0, 2.0, 60.0, ("failed", "timeout"))
    assert (health.timeout, health.deadline) == (0.5, 5400.0)
    assert (health.when, health.on_failure, health.goto, health.confirm) == (
        None,
        "abort",
        None,
        None,
    )
    assert health.register == {"health": ""}
    assert health.verify == ()


def test_valid_runbook_builds_actions_and_verify_steps() -> None:
    rb = load_runbook(DATA / "valid.yaml", EXECUTORS)
    restart, report = rb.step("restart"), rb.step("report")
    assert restart.is_action and restart.when == "not steps.health.passed"
    assert restart.config == {
        "argv": ["systemctl", "restart", "{{ params.service }}"],
        "target": "web",
    }
    assert restart.confirm == Confirm("Restart {{ params.service }}?", "{{ params.service }}")
    assert (restart.on_failure, restart.goto) == ("goto", "report")
    assert restart.register == {"code": "exit_code", "everything": ""}
    assert restart.retries == RetryPolicy(attempts=2)
    first, second = restart.verify
    assert (first.id, first.kind, first.phase, first.executor, first.line) == (
        "restart.verify-1",
        "check",
        "mitigate",
        "http",
        41,
    )
    assert (first.expect, first.retries.attempts, first.timeout, first.title) == (
        ("status == 200",),
        5,
        10.0,
        "Back up",
    )
    assert (second.id, second.config) == ("restart.verify-2", {"argv": ["true"], "target": "local"})
    assert report.confirm == Confirm("Post the report?")
    assert (report.on_failure, report.goto) == ("continue", None)


def test_loading_does_not_import_jinja_or_httpx() -> None:
    code = "\n".join(
        [
            "import sys",
            "from runbook.errors import InvalidRunbook",
            "from runbook.load.loader import load_runbook",
            "try:",
            f"    load_runbook({str(DATA / 'valid.yaml')!r}, {{}})",
            "except InvalidRunbook:",
            "    pass",
            "print(sorted(m for m in ('jinja2', 'httpx') if m in sys.modules))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- schema module ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("30", 30.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        ("1m500ms", 60.5),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["five", "", "30m1h", "1h 30m", "-5s", -1, True, None, float("inf"), "5 minutes"]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_schema_duration_pattern_is_the_parser_pattern() -> None:
    assert core_schema()["$defs"]["duration"]["pattern"] == DURATION_PATTERN


def test_core_schema_is_valid_2020_12_and_documents_every_property() -> None:
    from jsonschema import Draft202012Validator

    schema = core_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] and schema["title"]
    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                if key not in ("if", "not"):  # conditions, not places a user writes
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "$")
    assert missing == []


def test_full_schema_closes_executor_calls_over_installed_executors() -> None:
    from jsonschema import Draft202012Validator

    schema = full_schema(EXECUTORS)
    Draft202012Validator.check_schema(schema)
    doc = load_yaml(
        HEAD + "steps:\n  - id: a\n    phase: detect\n"
        "    check: {http: {url: 1}}\n  - id: b\n    phase: detect\n"
        "    check: {nope: {}}\n"
    )
    found = {
        (".".join(map(str, e.absolute_path)), e.validator)
        for e in validator_for(schema).iter_errors(doc)
    }
    assert found == {("steps.0.check.http.url", "type"), ("steps.1.check", "additionalProperties")}
    assert core_schema()["$defs"]["executorCall"].get("properties") is None  # not mutated
    json.dumps(schema)


def test_executor_schema_is_standalone_and_unknown_names_suggest() -> None:
    schema = executor_schema("http", EXECUTORS)
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"].endswith("http")
    assert schema["description"] == "HTTP requests"
    with pytest.raises(UnknownExecutor, match="did you mean 'shell'"):
        executor_schema("shel", EXECUTORS)
