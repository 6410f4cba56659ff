"""The semantic pass of loading: what a schema cannot express about a runbook.

Unique step ids, references to earlier steps and declared params, goto
targets (never into or out of the `always` steps, which run after the others),
declared targets, action-only keys, expressions that compile, and
param specs whose defaults and values satisfy their own type, pattern and
range. `runbook.load.loader` runs `semantic_issues` after the core-schema and
executor-config passes, on the same marked tree: every check here tolerates the
parts the schema rejected, so independent problems are all reported at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Container, Iterator, Mapping
from typing import Any

from runbook.errors import ExpressionError
from runbook.expr.expression import compile_expression
from runbook.expr.patterns import PatternError, compile_pattern
from runbook.load.build import build_param
from runbook.load.marked_yaml import MarkedDict, locate
from runbook.load.model import PARAM_TYPES, Param
from runbook.load.params import matches_whole
from runbook.load.refs import Reference, expression_refs, template_refs
from runbook.load.schema import DURATION, Issue, PathT, issue_at, parse_duration, short

IMPLICIT_TARGETS = ("local",)


def iter_steps(tree: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, step) of each mapping under `steps:`, skipping what the schema rejects."""
    steps = tree.get("steps") if isinstance(tree, dict) else None
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            yield i, step


def _strings(value: Any, path: PathT) -> Iterator[tuple[PathT, str]]:
    """Every string inside `value` (keys excluded), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, path + (index,))


# -- semantic checks ----------------------------------------------------------------------
def semantic_issues(tree: MarkedDict) -> list[Issue]:
    """Every problem in `tree` that needs the whole runbook to see (see the module docstring)."""
    return _Semantics(tree).issues()


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Visible(Container[str]):
    """The ids of the steps that have results when one step starts, with an O(1) `in`.

    `first_run` maps each id to when it first runs (`_Semantics.run_order`); an id is
    visible when that is before `start`, and `also` (the step itself, for its `verify:`
    checks) always is.
    """

    __slots__ = ("_first_run", "_start", "_also")

    def __init__(
        self, first_run: Mapping[str, tuple[int, int]], start: tuple[int, int], also: str | None
    ) -> None:
        self._first_run, self._start, self._also = first_run, start, also

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name == self._also:
            return True
        at = self._first_run.get(name)
        return at is not None and at < self._start


class _Semantics:
    """Checks that need the whole runbook; each tolerates parts the schema rejected."""

    def __init__(self, tree: MarkedDict) -> None:
        self.tree = tree
        self.found: list[Issue] = []
        params, targets = tree.get("params"), tree.get("targets")
        self.params = sorted(params) if isinstance(params, dict) else []
        self.targets = sorted(targets) if isinstance(targets, dict) else []
        self.ids: list[str | None] = []
        self.always: set[str] = set()  # ids of `always: true` steps: they run last
        steps = tree.get("steps")
        for step in steps if isinstance(steps, list) else []:
            step_id = step.get("id") if isinstance(step, dict) else None
            self.ids.append(step_id if isinstance(step_id, str) else None)
            if isinstance(step_id, str) and step.get("always") is True:
                self.always.add(step_id)
        # Looked up for every reference of every step: kept as maps so that a check is
        # O(1), and validating a runbook of n steps stays linear in n.
        self.known = [s for s in self.ids if s is not None]
        self.known_set = set(self.known)
        self.first_index: dict[str, int] = {}
        self.first_run: dict[str, tuple[int, int]] = {}
        for i, step_id in enumerate(self.ids):
            if step_id is not None:
                self.first_index.setdefault(step_id, i)
                self.first_run.setdefault(step_id, self.run_order(i))

    def add(self, path: PathT, message: str, *, key: bool = False) -> None:
        self.found.append(issue_at(self.tree, path, message, key=key))

    def issues(self) -> list[Issue]:
        self.check_ids()
        for i, step in iter_steps(self.tree):
            self.check_step(i, step)
        self.check_params()
        self.check_durations()
        targets = self.tree.get("targets")
        for path, text in _strings(targets if isinstance(targets, dict) else {}, ("targets",)):
            self.check_refs(path, template_refs(text), set(), None, "target")
        return self.found

    def check_ids(self) -> None:
        first: dict[str, int] = {}
        for i, step_id in enumerate(self.ids):
            if step_id is None:
                continue
            if step_id in first:
                earlier = locate(self.tree, ("steps", first[step_id], "id")).line
                here = locate(self.tree, ("steps", i, "id")).line
                self.add(
                    ("steps", i, "id"),
                    f"duplicate step id '{step_id}': first on line {earlier}, again on line {here}",
                )
            else:
                first[step_id] = i

    def check_step(self, i: int, step: dict[str, Any]) -> None:
        own, earlier = self.ids[i], self.runs_before(i)
        base: PathT = ("steps", i)
        when = step.get("when")
        if isinstance(when, str):
            self.check_expression(base + ("when",), when, earlier, own, "when")
        self.check_expect(base, step, earlier, own)
        register = step.get("register")
        for name, expr in register.items() if isinstance(register, dict) else ():
            if isinstance(expr, str) and expr.strip():
                self.check_expression(base + ("register", name), expr, earlier, own, "expect")
        for field in ("check", "action", "confirm", "title"):
            for path, text in _strings(step.get(field), base + (field,)):
                self.check_refs(path, template_refs(text), earlier, own, "config")
        for key in ("on_failure", "on_error"):
            self.check_goto(base + (key,), step.get(key), own, always=own in self.always)
        self.check_action_only(base, step)
        self.check_target(base, step)
        self.check_verify(base, step, self.runs_before(i, including_itself=True))

    def check_expect(
        self, base: PathT, step: dict[str, Any], visible: Container[str], own: str | None
    ) -> None:
        expect = step.get("expect")
        if isinstance(expect, str):
            self.check_expression(base + ("expect",), expect, visible, own, "expect")
        for j, text in enumerate(expect if isinstance(expect, list) else []):
            if isinstance(text, str):
                self.check_expression(base + ("expect", j), text, visible, own, "expect")

    def check_expression(
        self, path: PathT, text: str, visible: Container[str], own: str | None, role: str
    ) -> None:
        self.check_refs(path, expression_refs(text), visible, own, role)
        try:
            compile_expression(text)
        except ExpressionError as exc:  # its message quotes the expression and the column
            self.add(path, exc.message)

    def check_refs(
        self,
        path: PathT,
        refs: list[Reference],
        visible: Container[str],
        own: str | None,
        role: str,
    ) -> None:
        for ref in dict.fromkeys(refs):
            if ref.root == "params" and ref.name not in self.params:
                declared = ", ".join(self.params) or "none"
                self.add(
                    path,
                    f"'params.{ref.name}' is not a declared param"
                    f"{_did_you_mean(ref.name, self.params)} (declared: {declared})",
                )
            elif ref.root == "steps" and ref.name not in visible:
                self.add(path, self.step_ref_problem(ref.name, own, role))

    def run_order(self, i: int) -> tuple[int, int]:
        """When step `i` runs: the normal steps in file order, then the `always` steps
        in file order among themselves."""
        return (1 if self.ids[i] in self.always else 0, i)

    def runs_before(self, i: int, *, including_itself: bool = False) -> _Visible:
        """Ids of the steps that have run (or been skipped) when step `i` starts."""
        also = self.ids[i] if including_itself else None
        return _Visible(self.first_run, self.run_order(i), also)

    def step_ref_problem(self, name: str, own: str | None, role: str) -> str:
        if role == "target":
            return f"'steps.{name}': targets are resolved before any step runs"
        if name == own and role == "expect":
            return (
                f"'steps.{name}' is this step: expect sees its own result fields directly "
                f"(e.g. 'status == 200', not 'steps.{name}.status == 200')"
            )
        if name == own:
            return f"'steps.{name}' is this step; only earlier steps have results here"
        if name in self.always:
            return (
                f"'steps.{name}' is an `always` step: it runs after the normal steps "
                "(and after the always steps before it), so it has no result here"
            )
        if name in self.first_index:
            line = locate(self.tree, ("steps", self.first_index[name])).line
            return (
                f"'steps.{name}' refers to a step that runs later (line {line}); "
                "only earlier steps have results"
            )
        return f"'steps.{name}' is not a step in this runbook{_did_you_mean(name, self.known)}"

    def check_goto(self, path: PathT, route: Any, own: str | None, *, always: bool) -> None:
        if not (isinstance(route, str) and route.startswith("goto ")):
            return
        target = route[len("goto ") :].strip()
        if always:
            self.add(
                path,
                f"'goto {target}': an `always` step cannot jump; always steps each run once, "
                "in file order, after the normal steps (use continue or abort)",
            )
        elif target == own:
            self.add(path, f"'goto {target}' names this step itself; use retries to repeat a step")
        elif target not in self.known_set:
            self.add(
                path,
                f"'goto {target}': no step has id '{target}'{_did_you_mean(target, self.known)}",
            )
        elif target in self.always:
            self.add(
                path,
                f"'goto {target}': '{target}' is an `always` step, which runs after the "
                "normal steps whatever happens; jump to a normal step",
            )

    def check_action_only(self, base: PathT, step: dict[str, Any]) -> None:
        if "check" not in step or "action" in step:
            return
        for key in ("confirm", "verify"):
            if key in step:
                self.add(
                    base + (key,),
                    f"'{key}' only applies to actions; this step is a check (read-only)",
                    key=True,
                )

    def check_target(self, base: PathT, step: dict[str, Any]) -> None:
        for kind in ("check", "action"):
            call = step.get(kind)
            if not (isinstance(call, dict) and len(call) == 1):
                continue
            ((name, config),) = call.items()
            target = config.get("target") if isinstance(config, dict) else None
            if not isinstance(target, str) or "{{" in target or "{%" in target:
                continue
            if target not in self.targets and target not in IMPLICIT_TARGETS:
                declared = ", ".join(self.targets) or "none"
                self.add(
                    base + (kind, name, "target"),
                    f"unknown target '{target}'"
                    f"{_did_you_mean(target, self.targets)} (declared targets: {declared})",
                )

    def check_verify(self, base: PathT, step: dict[str, Any], visible: Container[str]) -> None:
        verify = step.get("verify")
        for j, entry in enumerate(verify if isinstance(verify, list) else []):
            if not isinstance(entry, dict):
                continue
            path = base + ("verify", j)
            self.check_expect(path, entry, visible, None)
            for field in ("check", "title"):
                for where, text in _strings(entry.get(field), path + (field,)):
                    self.check_refs(where, template_refs(text), visible, None, "config")

    def check_durations(self) -> None:
        """Durations of the right shape that are still unusable (longer than a year)."""
        for path, value in _duration_fields(self.tree):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                continue  # the core schema reports the wrong type
            if isinstance(value, str) and not DURATION.match(value.strip()):
                continue  # ... and a malformed text
            if not isinstance(value, str) and value < 0:
                continue  # ... and a negative number
            try:
                parse_duration(value)
            except ValueError as exc:
                self.add(path, str(exc))

    def check_params(self) -> None:
        params = self.tree.get("params")
        for name, spec in params.items() if isinstance(params, dict) else ():
            if isinstance(spec, dict):
                for where, message in _param_spec_problems(spec):
                    self.add(("params", name) + where, message)


def _duration_fields(tree: MarkedDict) -> Iterator[tuple[PathT, Any]]:
    """(path, value) of every duration the core schema declares, where it is present."""
    if "deadline" in tree:
        yield ("deadline",), tree["deadline"]
    for i, step in iter_steps(tree):
        entries: list[tuple[PathT, Any]] = [(("steps", i), step)]
        verify = step.get("verify")
        for j, entry in enumerate(verify if isinstance(verify, list) else []):
            entries.append((("steps", i, "verify", j), entry))
        for base, entry in entries:
            if not isinstance(entry, dict):
                continue
            for key in ("timeout", "deadline"):
                if key in entry:
                    yield base + (key,), entry[key]
            retries = entry.get("retries")
            if not isinstance(retries, dict):
                continue
            for key in ("delay", "max_delay"):
                if key in retries:
                    yield base + ("retries", key), retries[key]


# -- params -------------------------------------------------------------------------------
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "number": (int, float),
    "bool": (bool,),
}


def param_value_problem(param: Param, value: Any) -> str | None:
    """Why `value` is not acceptable for `param` (type, values, pattern, range), or None.

    A secret's value is never quoted back: it shows as ***.
    """
    wanted = _PY_TYPES.get(param.type)
    is_bool = isinstance(value, bool)
    shown = "***" if param.secret else short(value)
    if wanted is not None and (not isinstance(value, wanted) or (is_bool and param.type != "bool")):
        return f"{shown} is not of type '{param.type}'"
    if param.values and value not in param.values:
        allowed = ", ".join(str(v) for v in param.values)
        return f"{shown} is not one of the allowed values ({allowed})"
    if param.pattern is not None and isinstance(value, str) and not matches_whole(param, value):
        return f"{shown} does not match the pattern {param.pattern!r} (the whole value must match)"
    if isinstance(value, int | float) and not is_bool:
        if param.minimum is not None and value < param.minimum:
            return f"{shown} is less than the minimum {param.minimum:g}"
        if param.maximum is not None and value > param.maximum:
            return f"{shown} is more than the maximum {param.maximum:g}"
    return None


def _param_spec_problems(spec: dict[str, Any]) -> list[tuple[PathT, str]]:
    """(path in the param, message) for a param spec that is well-typed but inconsistent."""
    if not _param_well_typed(spec):
        return []  # the core schema already reports the wrong types
    pattern, low, high = spec.get("pattern"), spec.get("min"), spec.get("max")
    if pattern is not None:
        try:
            compile_pattern(pattern)
        except PatternError as exc:  # names the pattern and, for RE2's gaps, the construct
            return [(("pattern",), str(exc))]
    if low is not None and high is not None and low > high:
        return [(("min",), f"min {low} is greater than max {high}")]
    shape = build_param("", {k: v for k, v in spec.items() if k != "values"})
    problems: list[tuple[PathT, str]] = []
    if spec.get("type") != "enum":
        for j, value in enumerate(spec.get("values", [])):
            problem = param_value_problem(shape, value)
            if problem:
                problems.append((("values", j), problem))
    if spec.get("default") is not None:  # null means "no default"
        problem = param_value_problem(build_param("", spec), spec["default"])
        if problem:
            problems.append((("default",), f"the default {problem}"))
    return problems


def _param_well_typed(spec: Mapping[str, Any]) -> bool:
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    return (
        spec.get("type", "string") in PARAM_TYPES
        and isinstance(spec.get("pattern", ""), str)
        and isinstance(spec.get("values", []), list)
        and number(spec.get("min"))
        and number(spec.get("max"))
    )
