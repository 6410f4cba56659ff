"""Scripted step results for scenario tests: what a stub returns, and the default that passes.

A scenario replaces every executor's `run()` with a script, so this module
turns what an author writes (`{status: 503, json: {status: error}}`,
`{exit_code: 0, stdout: "..."}`, `{error: "connection refused"}`) into the one
`StepResult` shape real executors return. A step with no stub must still pass,
or scenarios would have to stub every step: its default result is built to
satisfy the step's own `expect` (or, without one, the executor's
`default_expect`) by reading the simple comparisons there (`status == 200`,
`200 <= status < 300`, `json.status == 'ok'`), then checked with the real
evaluator. When that cannot be done the step errors with a message asking for
a stub, rather than passing by accident.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from runbook.contract import ExecContext, ExecutorSpec, StepResult

# Keys of a stub that shape the StepResult itself; every other key is a result field.
RESULT_KEYS = ("error", "timed_out", "output")
# Neutral values for well-known result fields, used when the executor declares them.
_NEUTRAL: Mapping[str, Any] = {
    "exit_code": 0,
    "stdout": "",
    "stderr": "",
    "text": "",
    "headers": {},
    "json": None,
}
_OUTPUT_FIELDS = ("stdout", "text", "message", "answer")


def _base_fields(spec: ExecutorSpec, config: Mapping[str, Any], ctx: ExecContext) -> dict[str, Any]:
    """Neutral values for the executor's declared fields, and config values it echoes."""
    fields: dict[str, Any] = {}
    for name in spec.result_fields:
        if name in _NEUTRAL:
            fields[name] = _copy(_NEUTRAL[name])
        elif name in config:  # e.g. notify's `message`, rendered
            fields[name] = config[name]
    if ctx.answer is not None:
        fields["answer"] = ctx.answer
    return fields


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _output(fields: Mapping[str, Any], explicit: Any) -> str:
    if explicit is not None:
        return str(explicit)
    for name in _OUTPUT_FIELDS:
        if isinstance(fields.get(name), str):
            return str(fields[name])
    return ""


def scripted_result(
    spec: ExecutorSpec, config: Mapping[str, Any], ctx: ExecContext, stub: Mapping[str, Any]
) -> StepResult:
    """The StepResult a stub describes: `error` makes a failed attempt, the rest are fields."""
    if stub.get("error") is not None or stub.get("timed_out"):
        reason = str(stub.get("error") or f"timed out after {ctx.timeout or 0:g}s")
        return StepResult.failure(reason, timed_out=bool(stub.get("timed_out")))
    fields = _base_fields(spec, config, ctx)
    fields.update({k: _copy(v) for k, v in stub.items() if k not in RESULT_KEYS})
    elapsed = fields.get("elapsed")
    return StepResult(
        ok=True,
        fields=fields,
        output=_output(fields, stub.get("output")),
        elapsed=float(elapsed) if isinstance(elapsed, int | float) else 0.0,
    )


def default_result(
    spec: ExecutorSpec, config: Mapping[str, Any], ctx: ExecContext, expect: Sequence[str]
) -> StepResult:
    """A result that passes `expect`, or an error naming the expectation it cannot meet."""
    from runbook.expr.expression import compile_expression
    from runbook.run.state import result_namespace

    fields = _base_fields(spec, config, ctx)
    if ctx.answer is not None:
        # The scenario's operator answered: that answer is the result, and the runner
        # judges it like any other (a "no" must fail `answer == 'yes'`, not be solved away).
        return StepResult(ok=True, fields=fields, output=_output(fields, None))
    for text in expect:
        _solve(text, fields)
    result = StepResult(ok=True, fields=fields, output=_output(fields, None))
    namespace = result_namespace(result, {})
    for text in expect:
        outcome = compile_expression(text).check(namespace)
        if not outcome.passed:
            return StepResult.failure(
                f"scenario: step '{ctx.step_id}' has no stub, and no default result "
                f"satisfies its expectation {text!r} ({outcome.message}); add a stub for it"
            )
    return result


# -- reading simple expectations ----------------------------------------------------------
def _solve(text: str, fields: dict[str, Any]) -> None:
    """Set fields so the comparisons in `text` hold, where the shape is simple enough."""
    from runbook.expr.compile import rewrite_hyphenated_ids

    try:
        tree = ast.parse(rewrite_hyphenated_ids(text.strip()), mode="eval")
    except SyntaxError:
        return  # `x matches 'y'` and friends: left to the check that follows
    _solve_node(tree.body, fields)


def _solve_node(node: ast.expr, fields: dict[str, Any]) -> None:
    if isinstance(node, ast.BoolOp):
        parts = node.values if isinstance(node.op, ast.And) else node.values[:1]
        for part in parts:
            _solve_node(part, fields)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        path = _subject(node.operand)
        if path:
            _assign(fields, path, False)
    elif isinstance(node, ast.Compare):
        _solve_compare(node, fields)
    else:
        path = _subject(node)
        if path:
            _assign(fields, path, True)


def _solve_compare(node: ast.Compare, fields: dict[str, Any]) -> None:
    """`a OP b [OP c]`: give the one field operand the value its first bound allows."""
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        left, right = operands[i], operands[i + 1]
        path, literal, field_on_left = _subject(left), _literal(right), True
        if not path:
            path, literal, field_on_left = _subject(right), _literal(left), False
        if not path or literal is _NO_VALUE:
            continue
        value = _satisfying(op, literal, field_on_left)
        if value is not _NO_VALUE:
            _assign(fields, path, value)
            return


_NO_VALUE: Any = object()


def _satisfying(op: ast.cmpop, literal: Any, field_on_left: bool) -> Any:
    """A value for the field that makes `field OP literal` (or `literal OP field`) true."""
    number = isinstance(literal, int | float) and not isinstance(literal, bool)
    if isinstance(op, ast.Eq | ast.Is):
        return literal
    if isinstance(op, ast.In) and field_on_left and isinstance(literal, list | tuple | set):
        return next(iter(literal), _NO_VALUE)
    if isinstance(op, ast.In) and not field_on_left:
        return literal if isinstance(literal, str) else [literal]
    if not number:
        return _NO_VALUE
    lower_bound = isinstance(op, ast.GtE | ast.Gt) == field_on_left
    if isinstance(op, ast.GtE | ast.LtE):
        return literal
    if isinstance(op, ast.Gt | ast.Lt):
        step = 1 if isinstance(literal, int) else 0.5
        return literal + step if lower_bound else literal - step
    return _NO_VALUE


def _subject(node: ast.expr) -> tuple[str, ...]:
    """`status` -> ('status',); `json.status` / `json['status']` -> ('json', 'status')."""
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        base = _subject(node.value)
        return (*base, node.attr) if base else ()
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = _subject(node.value)
        key = node.slice.value
        return (*base, key) if base and isinstance(key, str) else ()
    return ()


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return _NO_VALUE


def _assign(fields: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if path[0] in ("params", "steps", "vars", "run", "target"):
        return  # context, not the result: nothing a stub could set
    node = fields
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
