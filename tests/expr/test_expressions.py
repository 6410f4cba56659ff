"""The `expect:`/`when:` evaluator: semantics, pytest-style explanations, and the sandbox."""

from __future__ import annotations

import ast
import contextlib
import copy
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runbook.expr.expression as expressions
from runbook.errors import ExpressionError, InvalidInput, RunbookError
from runbook.expr.compile import rewrite_hyphenated_ids
from runbook.expr.expression import Outcome, compile_expression
from runbook.expr.values import UNKNOWN, EvaluationError, Unknown, is_unknown

RESULT: dict[str, Any] = {
    "status": 503,
    "exit_code": 0,
    "stdout": "inactive\n",
    "elapsed": 0.25,
    "json": {"status": "ok", "replicas": 2, "items": [{"name": "a"}, {"name": "b"}], "empty": None},
    "steps": {
        "health": {"passed": False, "output": "down"},
        "check-db": {"passed": True, "output": "db ok"},
        "later": UNKNOWN,
        "half": {"passed": UNKNOWN, "output": "x"},
    },
    "vars": {"max-lag": 5},
    "params": {"service": "api"},
}


def value(source: str, namespace: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(RESULT if namespace is None else namespace)


def check(source: str, namespace: dict[str, Any] | None = None) -> Outcome:
    return compile_expression(source).check(RESULT if namespace is None else namespace)


# --- operators --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1", 1),
        ("'a'", "a"),
        ("None", None),
        ("True", True),
        ("2.5", 2.5),
        ("[1, 2]", [1, 2]),
        ("(1, 2)", (1, 2)),
        ("{'a': 1}", {"a": 1}),
        ("{1, 2}", {1, 2}),
        ("status == 503", True),
        ("status != 503", False),
        ("status < 600", True),
        ("status <= 503", True),
        ("status > 503", False),
        ("status >= 504", False),
        ("'act' in stdout", True),
        ("'x' not in stdout", True),
        ("json.empty is None", True),
        ("json.empty is not None", False),
        ("200 <= status < 300", False),
        ("500 <= status < 600", True),
        ("1 + 2 * 3", 7),
        ("7 - 2", 5),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("-status", -503),
        ("+elapsed", 0.25),
        ("not exit_code", True),
        ("exit_code == 0 and status == 503", True),
        ("exit_code or status", 503),
        ("exit_code and status", 0),
        ("'big' if status > 500 else 'small'", "big"),
        ("'a' + 'b'", "ab"),
        ("[1] + [2]", [1, 2]),
        ("'ab' * 2", "abab"),
    ],
)
def test_operator_semantics_match_python(source: str, expected: Any) -> None:
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("json['items'][0]['name']", "a"),
        ("json.items[1].name", "b"),
        ("json.items[-1].name", "b"),
        ("stdout[0:3]", "ina"),
        ("json.items[:1]", [{"name": "a"}]),
        ("stdout[::-1][0]", "\n"),
        ("json.status", "ok"),
        ("json['status']", "ok"),
    ],
)
def test_subscripts_slices_and_mapping_attributes(source: str, expected: Any) -> None:
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len(json.items)", 2),
        ("int('42')", 42),
        ("float('1.5')", 1.5),
        ("str(status)", "503"),
        ("bool(exit_code)", False),
        ("abs(-3)", 3),
        ("min(3, 1, 2)", 1),
        ("max([3, 1])", 3),
        ("round(2.567, 2)", 2.57),
        ("sum([1, 2, 3])", 6),
        ("any([0, 1])", True),
        ("all([1, 0])", False),
        ("sorted([3, 1, 2])", [1, 2, 3]),
        ("lower('AbC')", "abc"),
        ("upper('abc')", "ABC"),
        ("matches(stdout, '^in')", True),
        ("matches(status, '50')", True),
    ],
)
def test_whitelisted_functions(source: str, expected: Any) -> None:
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stdout.startswith('in')", True),
        ("stdout.endswith('\\n')", True),
        ("'AB'.lower()", "ab"),
        ("'ab'.upper()", "AB"),
        ("stdout.strip()", "inactive"),
        ("'a b'.split()", ["a", "b"]),
        ("'a,b'.split(',')", ["a", "b"]),
        ("'aaa'.count('a')", 3),
        ("'a\\nb'.splitlines()", ["a", "b"]),
    ],
)
def test_string_methods_on_strings(source: str, expected: Any) -> None:
    assert value(source) == expected


def test_string_method_on_a_non_string_is_an_evaluation_error() -> None:
    with pytest.raises(
        EvaluationError,
        match=r"json is a dict .*\.startswith\(\) works on "
        r"strings only",
    ):
        value("json.startswith('a')")


def test_infix_matches_searches_the_text() -> None:
    assert value(r"stdout matches 'act\w+'") is True
    assert value("stdout matches '^active'") is False
    assert value("status matches '^5'") is True  # the left side is turned into text


def test_infix_matches_binds_tighter_than_comparisons_and_and() -> None:
    # parsed as (stdout matches 'in') and (status == 503), not stdout matches ('in' and ...)
    assert value("stdout matches 'in' and status == 503") is True
    assert value("stdout matches 'zz' and status == 503") is False
    assert value("stdout matches 'in' == True") is True


def test_matches_as_a_mapping_key_or_inside_strings_is_not_the_operator() -> None:
    ns = {"json": {"matches": 3}, "text": "x matches y"}
    assert value("json.matches", ns) == 3
    assert value("text == 'x matches y'", ns) is True


def test_matches_is_a_plain_name_where_no_operand_precedes_it() -> None:
    ns = {"matches": 3, "ok": True}
    assert value("matches > 2", ns) is True
    assert value("ok and matches == 3", ns) is True
    assert value("[matches, (matches)]", ns) == [3, 3]
    assert value("'3' matches str(matches)", ns) is True


def test_an_invalid_written_out_regular_expression_is_refused_when_compiled() -> None:
    with pytest.raises(ExpressionError, match="column 16: invalid regular expression"):
        compile_expression("stdout matches '('")


def test_an_invalid_regular_expression_from_data_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError, match="cannot evaluate"):
        value("stdout matches pattern", {"stdout": "x", "pattern": "("})


def test_hyphenated_step_ids_are_read_as_keys() -> None:
    assert value("steps.check-db.passed") is True
    assert value("steps.check-db.output == 'db ok'") is True
    assert value("vars.max-lag > 3") is True
    assert value("steps.health.passed or steps.check-db.passed") is True


def test_hyphen_rewrite_leaves_strings_and_spaced_subtraction_alone() -> None:
    assert rewrite_hyphenated_ids("steps.a-b.ok == 'steps.c-d'") == "steps['a-b'].ok == 'steps.c-d'"
    assert rewrite_hyphenated_ids("steps.a - b") == "steps.a - b"
    assert rewrite_hyphenated_ids("xsteps.a-b") == "xsteps.a-b"


# --- explanations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "namespace", "message"),
    [
        ("status == 200", {"status": 503}, "assert 503 == 200 (status)"),
        ("json.replicas >= 3", {"json": {"replicas": 2}}, "assert 2 >= 3 (json.replicas)"),
        ("'active' in stdout", {"stdout": "failed\n"}, "assert 'active' in 'failed\\n' (stdout)"),
        ("not x", {"x": True}, "assert not True (x)"),
        (
            "steps.health.passed",
            {"steps": {"health": {"passed": False}}},
            "assert False (steps.health.passed)",
        ),
        ("200 <= status < 300", {"status": 503}, "assert 503 < 300 (status)"),
        ("200 <= status < 300", {"status": 100}, "assert 200 <= 100 (status)"),
        ("stdout matches 'x'", {"stdout": "abc"}, "assert 'abc' matches 'x' (stdout)"),
        ("status == 200 and ok", {"status": 503, "ok": True}, "assert 503 == 200 (status)"),
        ("ok and status == 200", {"status": 503, "ok": True}, "assert 503 == 200 (status)"),
        (
            "status == 200 or status == 204",
            {"status": 503},
            "assert 503 == 200 or 503 == 204 (status)",
        ),
        ("a == b", {"a": 1, "b": 2}, "assert 1 == 2 (a, b)"),
        ("status in [200, 204]", {"status": 503}, "assert 503 in [200, 204] (status)"),
        ("len(items) > 2", {"items": [1]}, "assert 1 > 2 (len(items))"),
        ("not (a == 1)", {"a": 1}, "assert not (1 == 1) (a)"),
        (
            "steps.check-db.passed",
            {"steps": {"check-db": {"passed": False}}},
            "assert False (steps.check-db.passed)",
        ),
        ("1 == 2", {}, "assert 1 == 2"),
    ],
)
def test_failures_are_explained_pytest_style(
    source: str, namespace: dict[str, Any], message: str
) -> None:
    assert check(source, namespace) == Outcome(False, message)


@pytest.mark.parametrize(
    ("source", "namespace", "message"),
    [
        (
            "(status == 200 and\n  json.x >= 3)",
            {"status": 200, "json": {"x": 2}},
            "assert 2 >= 3 (json.x)",
        ),
        ("'é' + x == 'éb'", {"x": "a"}, "assert 'éa' == 'éb' ('é' + x)"),
        (
            "  steps.a-b.n  matches 'x'",
            {"steps": {"a-b": {"n": "y"}}},
            "assert 'y' matches 'x' (steps.a-b.n)",
        ),
    ],
)
def test_explanations_quote_the_source_as_the_author_wrote_it(
    source: str, namespace: dict[str, Any], message: str
) -> None:
    assert check(source, namespace).message == message


def test_long_values_are_truncated_with_an_ellipsis() -> None:
    outcome = check("text == 'short'", {"text": "x" * 500})
    shown = outcome.message.split(" == ")[0].removeprefix("assert ")
    assert len(shown) == 120
    assert shown.endswith("...")


def test_truthiness_decides_and_a_pass_carries_the_source() -> None:
    assert check("json.items") == Outcome(True, "json.items")
    assert not check("json.empty").passed
    assert not check("''", {}).passed


def test_evaluation_errors_fail_the_check_as_errors() -> None:
    outcome = check("json.nope == 1")
    assert outcome.error and not outcome.passed
    assert outcome.message == "error: json has no key 'nope' (keys: status, replicas, items, empty)"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "nope",
            "name 'nope' is not defined; available: elapsed, exit_code, json, params, status, "
            "stdout, steps, vars",
        ),
        ("json.empty.x", "json.empty is None, so it has no key 'x'"),
        ("json.items[5]", "json.items has no index 5 (length 2)"),
        (
            "json.items.name",
            "json.items is a list ([{'name': 'a'}, {'name': 'b'}]), not a mapping; "
            "it has no key 'name'",
        ),
        ("stdout < 1", "cannot evaluate 'inactive\\n' < 1 in 'stdout < 1'"),
        ("1 / 0", "cannot evaluate '1 / 0': division by zero"),
        ("int('x')", "int('x'): invalid literal for int()"),
    ],
)
def test_evaluation_error_messages_name_what_is_missing(source: str, message: str) -> None:
    with pytest.raises(EvaluationError) as caught:
        value(source)
    assert caught.value.message.startswith(message)


def test_an_undefined_name_suggests_the_closest_one() -> None:
    with pytest.raises(EvaluationError, match="did you mean 'status'"):
        value("statsu == 200")
    with pytest.raises(EvaluationError, match="did you mean 'True'"):
        value("true")


def test_evaluation_error_is_a_runbook_error_but_not_invalid_input() -> None:
    assert issubclass(EvaluationError, RunbookError)
    assert not issubclass(EvaluationError, InvalidInput)


# --- compile-time rejection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("__import__('os')", "'__import__' is not allowed"),
        ("().__class__", "attribute '__class__' is not allowed"),
        ("x.__class__", "attribute '__class__' is not allowed"),
        ("x.__class__.__mro__", "is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[a for a in b]", "a comprehension is not allowed"),
        ("{a: 1 for a in b}", "a comprehension is not allowed"),
        ("any(a for a in b)", "a generator expression is not allowed"),
        ("open('f')", "function 'open' is not allowed"),
        ("exec('1')", "function 'exec' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("f'{x}'", "an f-string is not allowed"),
        ("getattr(x, 'y')", "function 'getattr' is not allowed"),
        ("(y := 1)", "':=' is not allowed"),
        ("[*x]", "'*' unpacking is not allowed"),
        ("{**x}", "'**' unpacking is not allowed"),
        ("sorted(x, reverse=True)", "keyword arguments are not supported"),
        ("x.format(1)", "method 'format' is not allowed"),
        ("x[0](1)", "only the allowed functions and string methods can be called"),
        ("2 ** 8", "'**' is not allowed"),
        ("~x", "'~' is not allowed"),
        ("x | y", "'|' is not allowed"),
        ("b'x'", "bytes literals are not supported"),
        ("x @ y", "'@' is not an operator in expressions"),
        ("_private", "name '_private' is not allowed"),
        ("status = 200", "invalid syntax"),
        ("status ==", "the expression ends early"),
    ],
)
def test_forbidden_constructs_are_rejected_at_compile_time(source: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match="^expression .*: .*" + re.escape(problem)):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("x.__class__", 3),
        ("status = 200", 8),
        ("  open('f')", 3),
        ("a and lambda: 1", 7),
        ("steps.check-db.__x", 16),
        ("x @ y", 3),
    ],
)
def test_compile_errors_point_at_the_column_the_author_wrote(source: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert caught.value.column == column
    assert f"column {column}" in caught.value.message


def test_overlong_and_overdeep_expressions_are_refused() -> None:
    with pytest.raises(ExpressionError, match="limit is 2000"):
        compile_expression("1 + " * 600 + "1")
    with pytest.raises(ExpressionError, match="nested more than"):
        compile_expression("not " * 100 + "x")
    with pytest.raises(ExpressionError):
        compile_expression("(" * 300 + "1" + ")" * 300)


def test_compiled_expressions_are_cached() -> None:
    assert compile_expression("status == 1") is compile_expression("status == 1")


def test_names_lists_what_the_expression_reads() -> None:
    assert compile_expression("len(stdout) > x and steps.a.ok").names == {"stdout", "x", "steps"}


def test_huge_repetitions_are_refused_before_they_allocate() -> None:
    with pytest.raises(EvaluationError, match="longer than"):
        value("'x' * 1000000000")
    with pytest.raises(EvaluationError, match="formatting is not supported"):
        value("'%s' % 1")


def test_the_evaluator_never_calls_eval_exec_or_compile() -> None:
    import runbook.expr

    package = Path(runbook.expr.__file__).parent
    sources = sorted(package.glob("*.py"))
    # the guard follows the evaluator wherever it lives, not a file-name pattern
    assert Path(expressions.__file__) in sources
    for source in sources:
        tree = ast.parse(source.read_text())
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert not called & {"eval", "exec", "compile", "__import__"}, source


# --- UNKNOWN (dry-runs) -----------------------------------------------------------------------


def test_unknown_is_a_falsy_singleton_that_survives_copies() -> None:
    assert Unknown() is UNKNOWN
    assert is_unknown(UNKNOWN) and not is_unknown(None)
    assert not UNKNOWN
    assert copy.deepcopy(UNKNOWN) is UNKNOWN
    assert pickle.loads(pickle.dumps(UNKNOWN)) is UNKNOWN


@pytest.mark.parametrize(
    "source",
    [
        "steps.later",
        "steps.later.passed",
        "steps.later['output']",
        "not steps.later.passed",
        "steps.later.output == 'x'",
        "'x' in steps.later.output",
        "steps.later.output matches 'x'",
        "len(steps.later.output)",
        "steps.later.output.strip()",
        "steps.later.n + 1",
        "-steps.later.n",
        "steps.later.passed and True",
        "steps.later.passed or False",
        "1 if steps.later.passed else 2",
        "json.items[steps.later.n]",
        "[steps.later] == [1]",
        "steps.half.passed",
        "steps.half.passed and steps.check-db.passed",
        "stdout[steps.later:]",
    ],
)
def test_unknown_propagates_through_every_operation(source: str) -> None:
    assert value(source) is UNKNOWN


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("steps.later.passed and False", False),
        ("False and steps.later.passed", False),
        ("steps.later.passed or 1", 1),
        ("steps.health.passed or steps.check-db.passed", True),
        ("[steps.later]", [UNKNOWN]),
    ],
)
def test_a_known_operand_that_decides_wins_over_unknown(source: str, expected: Any) -> None:
    assert value(source) == expected


def test_an_unknown_check_says_what_it_depends_on() -> None:
    outcome = check("steps.later.output matches 'ok' and status == 503")
    assert outcome == Outcome(False, "unknown: depends on steps.later.output", unknown=True)
    assert check("x == steps.later.n", {"x": 1, "steps": {"later": UNKNOWN}}).message == (
        "unknown: depends on steps.later.n"
    )
    assert check("not steps.check-db.passed or steps.half.passed").message == (
        "unknown: depends on steps.half.passed"
    )


def test_an_unknown_when_with_a_known_false_operand_is_false() -> None:
    assert check("steps.later.passed and status == 200") == Outcome(
        False, "assert 503 == 200 (status)"
    )


# --- the sandbox never runs code from the namespace -------------------------------------------

SIDE_EFFECTS: list[str] = []

_DEFAULTS: dict[str, Any] = {
    "__bool__": False,
    "__len__": 0,
    "__hash__": 0,
    "__index__": 0,
    "__int__": 0,
    "__float__": 0.0,
    "__str__": "recorder",
    "__repr__": "Recorder()",
    "__format__": "r",
    "__iter__": iter(()),
    "__contains__": False,
}
_DUNDERS = [
    f"__{name}__"
    for name in [
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "hash",
        "bool",
        "len",
        "iter",
        "contains",
        "getitem",
        "add",
        "radd",
        "sub",
        "rsub",
        "mul",
        "rmul",
        "truediv",
        "rtruediv",
        "floordiv",
        "rfloordiv",
        "mod",
        "rmod",
        "matmul",
        "rmatmul",
        "neg",
        "pos",
        "abs",
        "index",
        "int",
        "float",
        "round",
        "str",
        "repr",
        "format",
        "call",
        "getattr",
        "reversed",
        "lshift",
        "rlshift",
    ]
]


def _recording(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        SIDE_EFFECTS.append(name)
        return _DEFAULTS.get(name, self)

    return method


class Recorder:
    """Records every method call, including the implicit ones (`==`, `bool()`, `str()`)."""

    def __getattribute__(self, name: str) -> Any:
        SIDE_EFFECTS.append(f"getattr {name}")
        return object.__getattribute__(self, name)


for _name in _DUNDERS:
    setattr(Recorder, _name, _recording(_name))


def _sandbox_namespace() -> dict[str, Any]:
    return {
        "sentinel": Recorder(),
        "objs": [Recorder(), 1],
        "nested": {"obj": Recorder(), "n": 1},
        "keyed": {(1, Recorder()): 1},
        "status": 200,
        "text": "abc",
        "data": {"a": [1, 2]},
    }


def test_the_recorder_really_records() -> None:
    SIDE_EFFECTS.clear()
    _ = Recorder() == 1
    bool(Recorder())
    isinstance(Recorder(), str)
    assert SIDE_EFFECTS == ["__eq__", "__bool__", "getattr __class__"]
    SIDE_EFFECTS.clear()


@pytest.mark.parametrize(
    "source",
    [
        "sentinel",
        "sentinel == 1",
        "not sentinel",
        "objs[0]",
        "objs == [1]",
        "len(objs)",
        "str(objs)",
        "nested.obj",
        "nested == {}",
        "not objs",
        "objs + objs",
        "1 in objs",
        "sorted(objs)",
        "{objs[1]: 1}",
        "{keyed: 1}",
        "keyed[(1, 2)]",
        "[keyed] == [1]",
        "sentinel.upper()",
        "text.count(sentinel)",
        "str(keyed)",
    ],
)
def test_non_plain_objects_are_refused_without_touching_them(source: str) -> None:
    expression = compile_expression(source)
    namespace = _sandbox_namespace()
    SIDE_EFFECTS.clear()
    with contextlib.suppress(EvaluationError):
        expression.evaluate(namespace)
    outcome = expression.check(namespace)
    assert SIDE_EFFECTS == []
    assert outcome.passed or outcome.error or "<list>" in outcome.message


_NAMES = [
    "sentinel",
    "objs",
    "nested",
    "keyed",
    "status",
    "text",
    "data",
    "open",
    "exec",
    "eval",
    "__import__",
    "__builtins__",
    "getattr",
    "globals",
    "type",
    "object",
    "len",
    "str",
    "sorted",
    "matches",
    "lower",
    "os",
    "_x",
]
_ATTRS = [
    "__class__",
    "__dict__",
    "__globals__",
    "__subclasses__",
    "__mro__",
    "__init__",
    "__code__",
    "__builtins__",
    "obj",
    "n",
    "a",
    "upper",
    "split",
    "startswith",
    "format",
    "mro",
    "gi_frame",
    "f_globals",
    "matches",
    "items",
]
_LITERALS = [
    "1",
    "0",
    "-1",
    "'a'",
    "'__class__'",
    "None",
    "True",
    "[]",
    "()",
    "{}",
    "[1, 2]",
    "'(a+)+$'",
    "1.5",
    "10**9",
]
_BINARY = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "is",
    "is not",
    "and",
    "or",
    "matches",
    "**",
    "@",
    "|",
    "&",
]


def _grammar() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(_NAMES + _LITERALS + ["lambda: 0", "(y := 1)", "f'{text}'"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(_BINARY), inner).map(" ".join),
            st.tuples(inner, st.sampled_from(_ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(st.sampled_from(_NAMES) | inner, st.lists(inner, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.tuples(inner, st.sampled_from(_ATTRS), st.lists(inner, max_size=2)).map(
                lambda t: f"{t[0]}.{t[1]}({', '.join(t[2])})"
            ),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}:]"),
            st.sampled_from(["not ", "-", "~"]).flatmap(lambda op: inner.map(lambda s: op + s)),
            inner.map(lambda s: f"({s})"),
            inner.map(lambda s: f"[{s}]"),
            st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        )

    return st.recursive(atoms, extend, max_leaves=10)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_grammar())
def test_the_evaluator_never_executes_code(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    namespace = _sandbox_namespace()
    SIDE_EFFECTS.clear()
    with contextlib.suppress(EvaluationError):
        expression.evaluate(namespace)
    outcome = expression.check(namespace)
    assert isinstance(outcome, Outcome)
    assert SIDE_EFFECTS == [], f"{source!r} touched the sentinel: {SIDE_EFFECTS}"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_only_ever_raises_our_errors(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(source).check({"x": 1, "s": "a"})
