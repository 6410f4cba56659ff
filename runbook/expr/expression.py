"""The safe evaluator behind `expect:` and `when:` expressions, and its explanations.

Runbooks are reviewed like code but run with production credentials, so an
expression must never be able to do more than read the step result it is
given. `compile_expression` has `runbook.expr.compile` parse the text and check
it against the whitelist of syntax, functions and string methods; `Expression`
then walks that tree node by node, and nothing is ever compiled to Python code.
Only plain data is touched (`runbook.expr.values` admits it by exact type before
a single one of its methods could run). A failed check explains itself the way
pytest does (`assert 503 == 200 (status)`) from the values the evaluation
remembered, and for dry-runs the `UNKNOWN` value flows through every operation
so a `when:` that depends on a step that has not run yet evaluates to UNKNOWN
instead of a guess. A `when:` is evaluated with `Expression.condition`, where a
reference to a value that is not there (the answer of a skipped step, a key a
step that errored never produced) is *undefined*: it flows like UNKNOWN and
makes the condition false, naming the reference, instead of failing the run.
"""

from __future__ import annotations

import ast
import difflib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from runbook.expr.compile import (
    BINARY_OPERATORS,
    COMPARISONS,
    FUNCTIONS,
    SourceMap,
    parse_expression,
)
from runbook.expr.values import (
    MAX_EVALUATION_SECONDS,
    UNKNOWN,
    EvaluationError,
    admit,
    check_repeat,
    describe,
    has_unknown,
    is_mapping,
    key_list,
    short_repr,
)

__all__ = ["Condition", "Expression", "Outcome", "compile_expression"]


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Expression:
    """Parse and check `source` once; raise ExpressionError naming the column of the problem."""
    tree, positions = parse_expression(source)
    return Expression(source, tree, positions)


# --- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The verdict on one expectation: `message` says why, pytest style.

    `error` marks an expression that could not be evaluated (as opposed to one
    that was false); `unknown` marks a dry-run verdict that needs a real run.
    """

    passed: bool
    message: str
    error: bool = False
    unknown: bool = False


@dataclass(frozen=True)
class Condition:
    """The verdict on a `when:`: run the step (True), skip it (False), or None for a
    dry-run that cannot tell yet.

    `undefined` names the reference that was not there (`steps.decision.answer`) when
    that is what made the condition false, and `why` says what was missing.
    """

    value: bool | None
    undefined: str | None = None
    why: str = ""


class _Missing(EvaluationError):
    """A key, index or value that is not there; an error, except inside a `when:`."""


class Expression:
    """A compiled, validated expression; immutable and shared through the compile cache."""

    def __init__(self, source: str, tree: ast.Expression, positions: SourceMap) -> None:
        self.source = source
        self._tree = tree
        self._positions = positions

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    @property
    def names(self) -> frozenset[str]:
        """The top-level names the expression reads (for validation of references)."""
        calls = {id(n.func) for n in ast.walk(self._tree) if isinstance(n, ast.Call)}
        return frozenset(
            n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name) and id(n) not in calls
        )

    def evaluate(self, namespace: Mapping[str, Any]) -> Any:
        """The expression's value; raises EvaluationError when it cannot be computed."""
        return _Evaluation(self, namespace).run()

    def condition(self, namespace: Mapping[str, Any]) -> Condition:
        """Evaluate as a `when:`: a reference to a value that is not there is undefined.

        Undefined flows through the expression like UNKNOWN (`x or True` still holds),
        and a condition it decides is false. Other problems (`'a' < 1`, an unknown
        name) raise EvaluationError as `evaluate` does.
        """
        evaluation = _Evaluation(self, namespace, lenient=True)
        value = evaluation.run()
        if value is not UNKNOWN:
            return Condition(bool(value))
        if evaluation.saw_unknown or evaluation.undefined is None:
            return Condition(None)
        ref, why = evaluation.undefined
        return Condition(False, ref, why)

    def check(self, namespace: Mapping[str, Any]) -> Outcome:
        """Evaluate as an expectation: truthiness decides, failures are explained."""
        evaluation = _Evaluation(self, namespace)
        try:
            value = evaluation.run()
        except EvaluationError as exc:
            return Outcome(False, f"error: {exc.message}", error=True)
        if value is UNKNOWN:
            return Outcome(
                False, f"unknown: depends on {evaluation.unknown_ref or self.source}", unknown=True
            )
        if value:
            return Outcome(True, self.source)
        return Outcome(False, evaluation.explain())

    def segment(self, node: ast.expr) -> str:
        """The text the author wrote for `node` (before any rewriting)."""
        return self._positions.segment(node)

    def column(self, node: ast.AST) -> int | None:
        """1-based column of `node` in the original source (None on later lines)."""
        return self._positions.column(node)


_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, re.error, RecursionError)


class _Evaluation:
    """One evaluation of an Expression: remembers every node's value to explain failures."""

    def __init__(
        self, expression: Expression, namespace: Mapping[str, Any], lenient: bool = False
    ) -> None:
        self.expr = expression
        self.namespace = namespace
        self.values: dict[int, Any] = {}
        self.failed_link: dict[int, int] = {}
        self.unknown_ref: str | None = None
        self._unknown_start: int | None = None
        self.lenient = lenient  # missing values are undefined (a `when:`), not errors
        self.undefined: tuple[str, str] | None = None  # the first: (reference, why)
        self.saw_unknown = False  # a real UNKNOWN (dry-run) was read, not just undefined
        self._deadline = time.monotonic() + MAX_EVALUATION_SECONDS

    def run(self) -> Any:
        try:
            return self.visit(self.expr._tree.body)
        except _ERRORS as exc:  # safety net; specific messages are raised closer to the cause
            raise EvaluationError(f"cannot evaluate {self.expr.source!r}: {exc}") from None

    def visit(self, node: ast.expr) -> Any:
        value = self._HANDLERS[type(node)](self, node)
        if time.monotonic() > self._deadline:  # no loops, so each node is seen once
            raise EvaluationError(
                f"evaluating took longer than {MAX_EVALUATION_SECONDS:g}s (expression time bound)"
            )
        self.values[id(node)] = value
        if value is UNKNOWN and isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
            self._note_unknown(node)
        return value

    def _note_unknown(self, node: ast.expr) -> None:
        """Remember the longest access path that turned UNKNOWN, for the dry-run message."""
        if self._unknown_start in (None, node.col_offset):
            self._unknown_start = node.col_offset
            self.unknown_ref = self.expr.segment(node)

    def src(self, node: ast.expr) -> str:
        return self.expr.segment(node)

    def _constant(self, node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        try:
            value = self.namespace[node.id]
        except KeyError:
            raise EvaluationError(self._undefined(node.id)) from None
        return self._read(value, node.id)

    def _read(self, value: Any, path: str) -> Any:
        """A value taken from the namespace, admitted; remembers a dry-run's UNKNOWN."""
        if value is UNKNOWN:
            self.saw_unknown = True
        return admit(value, path)

    def _missing(self, node: ast.expr, exc: _Missing) -> Any:
        """In a `when:`, UNKNOWN stands for a value that is not there; elsewhere an error."""
        if not self.lenient:
            raise exc
        if self.undefined is None:
            self.undefined = (self.src(node), exc.message)
        return UNKNOWN

    def _undefined(self, name: str) -> str:
        available = sorted(str(k) for k in self.namespace)
        message = f"name {name!r} is not defined; available: {', '.join(available) or 'none'}"
        close = difflib.get_close_matches(name, [*available, "True", "False", "None"], n=1)
        return message + (f"; did you mean {close[0]!r}?" if close else "")

    def _attribute(self, node: ast.Attribute) -> Any:
        base = self.visit(node.value)
        try:
            return self._lookup(base, node.attr, node.value)
        except _Missing as exc:
            return self._missing(node, exc)

    def _subscript(self, node: ast.Subscript) -> Any:
        base = self.visit(node.value)
        index = self.visit(node.slice)
        if index is UNKNOWN or (type(index) is not slice and has_unknown(index)):
            return UNKNOWN
        try:
            if base is UNKNOWN or is_mapping(base) or base is None:
                return self._lookup(base, index, node.value)
            if type(base) in (list, tuple) or issubclass(type(base), str):
                return self._index(base, index, node.value)
        except _Missing as exc:
            return self._missing(node, exc)
        raise EvaluationError(f"{self.src(node.value)} is {describe(base)}; it cannot be indexed")

    def _slice(self, node: ast.Slice) -> Any:
        parts = [None if n is None else self.visit(n) for n in (node.lower, node.upper, node.step)]
        if any(p is UNKNOWN for p in parts):
            return UNKNOWN
        if any(p is not None and type(p) is not int for p in parts):
            raise EvaluationError("slice bounds must be integers")
        return slice(*parts)

    def _lookup(self, base: Any, key: Any, base_node: ast.expr) -> Any:
        where = self.src(base_node)
        if base is UNKNOWN:
            return UNKNOWN
        if base is None:
            raise _Missing(f"{where} is None, so it has no key {key!r}")
        if not is_mapping(base):
            raise EvaluationError(
                f"{where} is {describe(base)}, not a mapping; it has no key {key!r}"
            )
        try:
            value = base[key]
        except KeyError:
            raise _Missing(f"{where} has no key {key!r} (keys: {key_list(base)})") from None
        except TypeError as exc:
            raise EvaluationError(f"{where}[{short_repr(key)}]: {exc}") from None
        return self._read(value, f"{where}[{key!r}]")

    def _index(self, base: Any, index: Any, base_node: ast.expr) -> Any:
        where = self.src(base_node)
        if type(index) not in (int, bool, slice):
            raise EvaluationError(
                f"{where} is {type(base).__name__}; its index must be an "
                f"integer, not {describe(index)}"
            )
        try:
            return self._read(base[index], f"{where}[{index!r}]")
        except IndexError:
            raise _Missing(f"{where} has no index {index} (length {len(base)})") from None

    def _compare(self, node: ast.Compare) -> Any:
        left, unknown = self.visit(node.left), False
        for link, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
            right = self.visit(right_node)
            if has_unknown(left) or has_unknown(right):
                unknown = True
            elif not self._compare_pair(op, left, right, node):
                self.failed_link[id(node)] = link
                return False
            left = right
        return UNKNOWN if unknown else True

    def _compare_pair(self, op: ast.cmpop, left: Any, right: Any, node: ast.Compare) -> bool:
        symbol, function = COMPARISONS[type(op)]
        try:
            return bool(function(left, right))
        except TypeError as exc:
            raise EvaluationError(
                f"cannot evaluate {short_repr(left)} {symbol} "
                f"{short_repr(right)} in {self.src(node)!r}: {exc}"
            ) from None

    def _binop(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if has_unknown(left) or has_unknown(right):
            return UNKNOWN
        if isinstance(node.op, ast.Mult):
            check_repeat(left, right)
        if isinstance(node.op, ast.Mod) and issubclass(type(left), str):
            raise EvaluationError("'%' string formatting is not supported in expressions")
        try:
            return BINARY_OPERATORS[type(node.op)](left, right)
        except (TypeError, ArithmeticError, ValueError, re.error) as exc:
            raise EvaluationError(f"cannot evaluate {self.src(node)!r}: {exc}") from None

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        if operand is UNKNOWN or (not isinstance(node.op, ast.Not) and has_unknown(operand)):
            return UNKNOWN
        if isinstance(node.op, ast.Not):
            return not operand
        if type(operand) not in (int, float, bool):
            raise EvaluationError(
                f"cannot negate {self.src(node.operand)}: it is {describe(operand)}"
            )
        return -operand if isinstance(node.op, ast.USub) else +operand

    def _boolop(self, node: ast.BoolOp) -> Any:
        """Short-circuit like Python; UNKNOWN only wins when no known operand decides."""
        deciding = not isinstance(node.op, ast.And)  # `and` stops on falsy, `or` on truthy
        value: Any = None
        unknown = False
        for operand in node.values:
            value = self.visit(operand)
            if value is UNKNOWN:
                unknown = True
            elif bool(value) is deciding:
                return value
        return UNKNOWN if unknown else value

    def _ifexp(self, node: ast.IfExp) -> Any:
        test = self.visit(node.test)
        if test is UNKNOWN:
            return UNKNOWN
        return self.visit(node.body if test else node.orelse)

    def _call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Attribute):
            return self._method(node, node.func)
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args = [self.visit(arg) for arg in node.args]
        if any(has_unknown(arg) for arg in args):
            return UNKNOWN
        try:
            return FUNCTIONS[name](*args)
        except _ERRORS as exc:
            raise EvaluationError(f"{self.src(node)}: {exc}") from None

    def _method(self, node: ast.Call, func: ast.Attribute) -> Any:
        receiver = self.visit(func.value)
        args = [self.visit(arg) for arg in node.args]
        if receiver is UNKNOWN or any(has_unknown(arg) for arg in args):
            return UNKNOWN
        if not issubclass(type(receiver), str):
            raise EvaluationError(
                f"{self.src(func.value)} is {describe(receiver)}; "
                f".{func.attr}() works on strings only"
            )
        try:
            return getattr(str, func.attr)(receiver, *args)  # str's own method, never an override
        except _ERRORS as exc:
            raise EvaluationError(f"{self.src(node)}: {exc}") from None

    def _list(self, node: ast.List) -> Any:
        return [self.visit(item) for item in node.elts]

    def _tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.visit(item) for item in node.elts)

    def _set(self, node: ast.Set) -> Any:
        items = [self.visit(item) for item in node.elts]
        for item in items:
            has_unknown(item)  # refuse hidden objects before hashing calls into them
        return set(items)

    def _dict(self, node: ast.Dict) -> Any:
        keys = [self.visit(key) for key in node.keys if key is not None]
        for key in keys:
            has_unknown(key)
        return dict(zip(keys, (self.visit(v) for v in node.values), strict=True))

    _HANDLERS: ClassVar[dict[type[ast.AST], Callable[[_Evaluation, Any], Any]]] = {
        ast.Constant: _constant,
        ast.Name: _name,
        ast.Attribute: _attribute,
        ast.Subscript: _subscript,
        ast.Slice: _slice,
        ast.Compare: _compare,
        ast.BinOp: _binop,
        ast.UnaryOp: _unaryop,
        ast.BoolOp: _boolop,
        ast.IfExp: _ifexp,
        ast.Call: _call,
        ast.List: _list,
        ast.Tuple: _tuple,
        ast.Set: _set,
        ast.Dict: _dict,
    }

    # --- explanations ------------------------------------------------------------------------
    # Once a check came out false, walk the tree again over the values `visit` remembered, to
    # show the part that made it false with its values and the source it came from.

    def explain(self) -> str:
        """`assert <values> (<sources>)` for the part of the expression that made it false."""
        text, sources = self._explain(self.expr._tree.body)
        unique = list(dict.fromkeys(sources))
        return f"assert {text}" + (f" ({', '.join(unique)})" if unique else "")

    def _explain(self, node: ast.expr) -> tuple[str, list[str]]:
        if isinstance(node, ast.Compare):
            return self._explain_compare(node)
        if isinstance(node, ast.BoolOp):
            return self._explain_boolop(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            text, sources = self._explain(node.operand)
            nested = isinstance(node.operand, (ast.Compare, ast.BoolOp, ast.BinOp))
            return (f"not ({text})" if nested else f"not {text}"), sources
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return self._explain_operands(node.left, ["matches"], [node.right])
        return self._explain_operands(node, [], [])

    def _explain_compare(self, node: ast.Compare) -> tuple[str, list[str]]:
        link = self.failed_link.get(id(node))
        if link is None:  # the comparison held (e.g. under `not`): show the whole chain
            return self._explain_operands(
                node.left, [COMPARISONS[type(op)][0] for op in node.ops], node.comparators
            )
        left = node.left if link == 0 else node.comparators[link - 1]
        return self._explain_operands(
            left, [COMPARISONS[type(node.ops[link])][0]], [node.comparators[link]]
        )

    def _explain_operands(
        self, first: ast.expr, symbols: list[str], rest: list[ast.expr]
    ) -> tuple[str, list[str]]:
        parts, sources = [self._value_text(first)], []
        for symbol, operand in zip(symbols, rest, strict=True):
            parts += [symbol, self._value_text(operand)]
        for operand in (first, *rest):
            if not _is_literal(operand):
                sources.append(self.src(operand))
        return " ".join(parts), sources

    def _value_text(self, node: ast.expr) -> str:
        return short_repr(self.values[id(node)]) if id(node) in self.values else "?"

    def _explain_boolop(self, node: ast.BoolOp) -> tuple[str, list[str]]:
        evaluated = [n for n in node.values if id(n) in self.values]
        if isinstance(node.op, ast.And):
            for operand in evaluated:
                value = self.values[id(operand)]
                if value is not UNKNOWN and not value:
                    return self._explain(operand)
        texts, sources = [], []
        for operand in evaluated:
            text, found = self._explain(operand)
            texts.append(text)
            sources += found
        return " or ".join(texts), sources


def _is_literal(node: ast.expr) -> bool:
    """Whether `node` is written-out data (`200`, `-1`, `[200, 204]`), whose source adds nothing."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_literal(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(
            _is_literal(v) for v in node.values
        )
    return False
