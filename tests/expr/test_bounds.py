"""Deadlines and bounds: no regex, template or expression can hold a run past its limits.

Regexes an author or operator writes run on RE2 (linear time), so the classic
catastrophic patterns answer at once, whatever the text; constructs RE2 lacks are
named when the runbook is validated. A param's `pattern` matches the whole value.
Template renders are bounded in size, loop passes and time, and going past a bound
is an error naming it (a timeout when it is the clock). Every CLI run here has a
subprocess `timeout`, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.cli import RunCli
from support.helpers import logs_in
from support.k8s_double import K8sDouble

from runbook.errors import ExpressionError, RunbookError, TemplateError
from runbook.expr.bounds import (
    MAX_RANGE,
    MAX_RENDER_SECONDS,
    MAX_TEMPLATE_OUTPUT,
    TemplateLimit,
)
from runbook.expr.expression import compile_expression
from runbook.expr.patterns import PatternError, compile_pattern
from runbook.expr.templating import Renderer
from runbook.log.journal import read_log

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: bounds, title: Bounds, severity: P2}
"""
EVIL = "a" * 40 + "!"
CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a|a)*b", "(a*)*b", "(.*a){12}$", "^(a+)+b"]
CLI_TIMEOUT = 60  # seconds: a hang fails the test instead of the suite


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    [log] = logs_in(tmp_path / "logs")
    return read_log(log)


def _of(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r["data"] for r in records if r["type"] == kind]


# --- regexes --------------------------------------------------------------------------------


def test_catastrophic_patterns_in_expect_are_judged_within_the_check_timeout(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    expects = "".join(f"\n      - \"stdout matches '{p}'\"" for p in CATASTROPHIC)
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: probe
    phase: detect
    timeout: 3s
    deadline: 5s
    check: {{shell: {{argv: [printf, "{EVIL}"]}}}}
    expect:{expects}
      - "matches(stdout, '(a+)+!$')"
"""
    )
    result = run_cli("run", str(rb), timeout=CLI_TIMEOUT)
    assert result.code == 1, result.text  # the patterns do not match: a failed check, no hang
    records = _records(tmp_path)
    verdicts = {e["expr"]: e["passed"] for e in _of(records, "step.expectation")}
    assert list(verdicts.values()) == [False] * len(CATASTROPHIC) + [True]
    [done] = _of(records, "step.finished")
    assert done["status"] == "failed"
    assert not any(r["timed_out"] for r in _of(records, "step.result"))


def test_a_catastrophic_grep_over_pod_logs_answers_at_once(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path, k8s: K8sDouble
) -> None:
    k8s.deployment("production", "api", ["api:1"], replicas=1)
    k8s.logs("production", "api-h1-0", "api", f"{EVIL}\naaaa\nboot ok\n")
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: logs
    phase: triage
    timeout: 5s
    check:
      kubernetes:
        kubeconfig: {k8s.kubeconfig}
        namespace: production
        logs: {{pod: api-h1-0, grep: "(a+)+$"}}
    expect: ["matches == 1", "lines == 3"]
"""
    )
    result = run_cli("run", str(rb), timeout=CLI_TIMEOUT)
    assert result.code == 0, result.text
    [logs] = _of(_records(tmp_path), "step.result")
    assert logs["fields"]["text"] == "aaaa"


UNSUPPORTED = {
    "(?P<x>a)(?P=x)": "the backreference (?P=name)",
    "(?=a)a": "the lookahead (?=...)",
    "(?<!x)a": "the negative lookbehind (?<!...)",
    "(?>a+)b": "the atomic group (?>...)",
    "a++": "the possessive quantifier ++",
    "a{2000}": "the repetition count {2000}",
}


def test_constructs_re2_lacks_are_named_when_validating(
    run_cli: RunCli, write_runbook: Any
) -> None:
    params = "".join(
        f'\n  p{i}: {{type: string, default: x, pattern: "{p}"}}' for i, p in enumerate(UNSUPPORTED)
    )
    expects = "".join(f"\n      - \"stdout matches '{p}'\"" for p in UNSUPPORTED)
    rb = write_runbook(
        HEAD
        + f"""
params:{params}
steps:
  - id: probe
    phase: detect
    check: {{shell: {{argv: ["true"]}}}}
    expect:{expects}
"""
    )
    result = run_cli("validate", str(rb), timeout=CLI_TIMEOUT)
    assert result.code == 2
    lines = [line for line in result.text.splitlines() if "is not supported" in line]
    for i, (pattern, construct) in enumerate(UNSUPPORTED.items()):
        named = [line for line in lines if repr(pattern) in line]
        assert len(named) == 2, (pattern, result.text)  # the param's and the expectation's
        assert all(construct in line and "RE2" in line for line in named)
        assert any(f"params.p{i}.pattern" in line for line in named)


def test_a_numbered_backreference_is_named() -> None:
    with pytest.raises(PatternError, match=r"the backreference \\1 is not supported"):
        compile_pattern(r"(a)\1")


def test_python_spellings_re2_lacks_are_translated() -> None:
    assert compile_pattern(r"ok\Z").search("ok")
    assert not compile_pattern(r"ok\Z").search("ok\n")  # \Z is the very end, as in Python
    assert compile_pattern("ok$").search("ok\n")  # `$` before a final newline, as re.search
    assert compile_pattern("^a{,2}$").fullmatch("aa")
    assert compile_pattern("[(?=]x").search("(x")  # inside a class it is no lookahead


@pytest.mark.parametrize("value", ["api\n", "ok\napi"])
def test_a_param_pattern_must_match_the_whole_value(
    run_cli: RunCli, write_runbook: Any, value: str
) -> None:
    rb = write_runbook(
        HEAD
        + """
params:
  service: {type: string, default: api, pattern: "^[a-z0-9-]+$"}
  word: {type: string, default: api, pattern: "[a-z]+"}
steps:
  - {id: probe, phase: detect, check: {shell: {argv: [echo, "{{ params.service }}"]}}}
"""
    )
    result = run_cli("run", str(rb), "-p", f"service={value}", timeout=CLI_TIMEOUT)
    assert result.code == 2, result.text
    assert "does not match pattern" in result.text
    assert "the whole value must match" in result.text
    if value == "api\n":
        unanchored = run_cli("run", str(rb), "-p", "word=api-1", timeout=CLI_TIMEOUT)
        assert unanchored.code == 2 and "'[a-z]+'" in unanchored.text
        assert run_cli("run", str(rb), "-p", "service=api-1", timeout=CLI_TIMEOUT).code == 0


# --- templates ------------------------------------------------------------------------------

BOMBS = {
    "range": ("{% for i in range(100000) %}x{% endfor %}", "template loop bound"),
    "nested loops": (
        "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
        "template loop bound",
    ),
    "center": ("{{ 'x' | center(900000000) }}", "template size bound"),
    "format": ("{{ '%0999999999d' | format(1) }}", "template size bound"),
    "join": ("{{ range(9999) | join('x' * 99999) }}", "template size bound"),
    "repetition": ("{{ 'x' * 1000000000 }}", "longer than 100000 items"),
    "doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "template size bound",
    ),
    "wordwrap": ("{{ ('x' * 99999) | wordwrap(1, wrapstring='y' * 999) }}", "template size bound"),
    "indent": ("{{ ('x\\n' * 50000) | indent(99999) }}", "template size bound"),
    "str.format": ("{{ '{:>999999999}'.format(1) }}", "template size bound"),
    "method": ("{{ 'x'.ljust(999999999) }}", "template size bound"),
    "mapped": ("{{ range(9999) | map('center', 999999) | list | length }}", "template size bound"),
}


def test_template_bombs_are_a_clear_error_naming_the_bound(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    steps = "".join(
        f"\n  - id: bomb-{i}\n    phase: detect\n    timeout: 10s\n    on_failure: continue"
        f"\n    check: {{shell: {{argv: [echo, {template!r}]}}}}"
        for i, (template, _) in enumerate(BOMBS.values())
    )
    rb = write_runbook(HEAD + "steps:" + steps + "\n")
    result = run_cli("run", str(rb), timeout=CLI_TIMEOUT)
    assert result.code == 0, result.text  # every failure was handled by on_failure: continue
    done = {r["step"]: r for r in _of(_records(tmp_path), "step.finished")}
    for i, (name, (_, bound)) in enumerate(BOMBS.items()):
        finished = done[f"bomb-{i}"]
        assert finished["status"] == "error", name
        assert finished["message"].startswith("cannot render step config: "), name
        assert bound in finished["message"], (name, finished["message"])


def test_a_render_past_its_time_bound_ends_the_step_as_timed_out(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    # few loop passes, each a slow search of a list: only the clock can stop it, and the
    # step's 1s is the render's deadline
    bomb = (
        "{% set numbers = range(9999) | list %}{% for i in range(9999) %}"
        "{% if 'x' in numbers %}{% endif %}{% endfor %}"
    )
    rb = write_runbook(
        HEAD
        + "steps:\n  - id: render\n    phase: detect\n    timeout: 1s\n"
        + f"    check: {{shell: {{argv: [echo, {bomb!r}]}}}}\n"
    )
    result = run_cli("run", str(rb), timeout=CLI_TIMEOUT)
    assert result.code == 4, result.text
    [done] = _of(_records(tmp_path), "step.finished")
    assert done["status"] == "timeout"
    assert "template time bound" in done["message"]


def test_a_long_template_that_never_closes_its_braces_is_read_in_one_pass(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    # finding `{{ }}` blocks with a lazy regex rescans the rest from every opener: minutes here
    unclosed = "{{ x " * 60_000
    step = f"{{id: say, phase: detect, check: {{shell: {{argv: [echo, '{unclosed}']}}}}}}"
    rb = write_runbook(HEAD + f"steps:\n  - {step}\n")
    assert run_cli("validate", str(rb), timeout=CLI_TIMEOUT).code == 0
    assert run_cli("run", str(rb), timeout=CLI_TIMEOUT).code == 1
    [done] = _of(_records(tmp_path), "step.finished")
    assert done["status"] == "error" and "syntax error in template" in done["message"]


def test_data_bigger_than_the_bound_may_be_worked_on_but_not_grown_or_printed() -> None:
    big = "x" * (MAX_TEMPLATE_OUTPUT + 10)
    renderer = Renderer({"steps": {"dump": {"output": big}}})
    assert renderer.render_value("{{ steps.dump.output | upper | length }}") == len(big)
    assert renderer.render_value("{{ steps.dump.output | truncate(10) }}") == "xxxxxxx..."
    for template in ("{{ steps.dump.output ~ '!' }}", "{{ steps.dump.output }}"):
        with pytest.raises(TemplateLimit, match="template size bound") as caught:
            renderer.render_value(template)
        assert caught.value.bound == "template size" and not caught.value.timed_out


def test_range_is_bounded_and_ordinary_loops_still_render() -> None:
    renderer = Renderer({"params": {"hosts": [f"h{i}" for i in range(500)]}})
    text = renderer.render_value("{% for h in params.hosts %}{{ h }},{% endfor %}")
    assert text.count(",") == 500
    assert renderer.render_value(f"{{{{ range({MAX_RANGE}) | length }}}}") == MAX_RANGE
    with pytest.raises(TemplateLimit, match="template loop bound"):
        renderer.render_value(f"{{{{ range({MAX_RANGE + 1}) | length }}}}")


# --- properties: any input finishes ---------------------------------------------------------

_REGEX_PARTS = ["a", "b", "(", ")", "+", "*", "?", "|", ".", "$", "^", "{2,}", "[ab]", "(?:"]


@settings(max_examples=150, deadline=timedelta(seconds=1))
@given(
    pattern=st.lists(st.sampled_from(_REGEX_PARTS), max_size=12).map("".join),
    text=st.text(alphabet="ab!\n", max_size=80),
)
@example(pattern="(a+)+$", text=EVIL)
@example(pattern="(a|aa)*(a|aa)*(a|aa)*$", text="a" * 80)
def test_any_pattern_on_any_text_answers_at_once(pattern: str, text: str) -> None:
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        return
    assert isinstance(compiled.search(text), bool)
    assert isinstance(compiled.fullmatch(text), bool)


_EXPRESSION_PARTS = [
    "stdout",
    " matches ",
    "'(a+)+$'",
    "'(x+x+)+y'",
    "matches(stdout, '(a|aa)+$')",
    " and ",
    " or ",
    "not ",
    "len(stdout)",
    " * ",
    "99999",
    "'ab'",
    " + ",
    "(",
    ")",
    " == ",
    "sorted(stdout)",
    "stdout.count('a')",
]


@settings(max_examples=150, deadline=timedelta(seconds=1))
@given(st.lists(st.sampled_from(_EXPRESSION_PARTS), max_size=10).map("".join))
@example("stdout matches '(a+)+$' and matches(stdout, '(a|aa)+$')")
def test_any_expression_finishes(source: str) -> None:
    with contextlib.suppress(RunbookError):  # refused or not evaluable: fine, if at once
        compile_expression(source).check({"stdout": EVIL * 50})


_TEMPLATE_PARTS = [
    "{% for i in range(",
    "9999",
    "99999",
    ") %}",
    "{% endfor %}",
    "{{ ",
    " }}",
    "'xy'",
    " * ",
    " ~ ",
    "| center(",
    "| join(",
    "| format(",
    "'%099999999d'",
    "| wordwrap(1, wrapstring=",
    "params.s",
    "i",
    ")",
    "{% set ns = namespace(s='ab') %}",
    "{% set ns.s = ns.s ~ ns.s ~ ns.s %}",
    "{% macro f() %}{{ f() ~ f() }}{% endmacro %}",
    "f()",
    "{{ ns.s | length }}",
]


@settings(
    max_examples=120,
    deadline=timedelta(seconds=MAX_RENDER_SECONDS * 2),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(_TEMPLATE_PARTS), max_size=12).map("".join))
@example(
    "{% set ns = namespace(s='ab') %}{% for i in range(9999) %}"
    "{% set ns.s = ns.s ~ ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
)
def test_any_template_finishes_within_its_bounds(template: str) -> None:
    try:
        text = Renderer({"params": {"s": "x" * 1000}}).render_value(template)
    except TemplateError:
        pass
    else:
        assert len(str(text)) <= MAX_TEMPLATE_OUTPUT


def test_an_expression_that_asks_for_too_much_work_stops_at_its_time_bound() -> None:
    many_sorts = "[" + ", ".join(["sorted(stdout)"] * 120) + "] != 0"
    outcome = compile_expression(many_sorts).check({"stdout": "ab" * 500_000})
    assert outcome.error and not outcome.passed
    assert "(expression time bound)" in outcome.message


def test_expressions_with_written_out_patterns_are_checked_when_compiled() -> None:
    with pytest.raises(ExpressionError, match="the lookahead"):
        compile_expression("stdout matches '(?=a)'")
    outcome = compile_expression("stdout matches pattern").check(
        {"stdout": "a", "pattern": "(?=a)"}
    )
    assert outcome.error and "lookahead" in outcome.message
