"""The safe evaluator behind `expect:` and `when:` expressions.

Runbooks are reviewed like code but run with production credentials, so an
expression must never be able to do more than read the step result it is
given. Expressions are parsed with `ast` and walked node by node over a
whitelist of syntax, functions and string methods; nothing is ever compiled to
Python code. Only plain data (str, numbers, bool, None, lists, tuples, sets and
Mappings) is touched: any other object in the namespace is refused by its exact
type before a single one of its methods could run. A failed check explains
itself the way pytest does (`assert 503 == 200 (status)`), and for dry-runs the
`UNKNOWN` value flows through every operation so a `when:` that depends on a
step that has not run yet evaluates to UNKNOWN instead of a guess.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from runbook.errors import ExpressionError
from runbook.expr.compile import (
    _BINOPS,
    _COMPARE,
    FUNCTIONS,
    STRING_METHODS,
    _code_spans,
    _depth,
    _Edit,
    _located,
    _original_position,
    _parse,
    _problem,
    _rewrite,
    _shift,
    rewrite_hyphenated_ids,
)
from runbook.expr.explain import _Explainer
from runbook.expr.values import MAX_DEPTH as MAX_DEPTH
from runbook.expr.values import MAX_SEQUENCE_LENGTH as MAX_SEQUENCE_LENGTH
from runbook.expr.values import MAX_SOURCE_LENGTH as MAX_SOURCE_LENGTH
from runbook.expr.values import (
    UNKNOWN,
    EvaluationError,
    Unknown,
    _admit,
    _check_repeat,
    _describe,
    _has_unknown,
    _is_mapping,
    _key_list,
    _short_repr,
    is_unknown,
)

__all__ = [
    "FUNCTIONS",
    "STRING_METHODS",
    "UNKNOWN",
    "EvaluationError",
    "Expression",
    "Outcome",
    "Unknown",
    "compile_expression",
    "is_unknown",
    "rewrite_hyphenated_ids",
]


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Expression:
    """Parse and check `source` once; raise ExpressionError naming the column of the problem."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters long; the limit is {MAX_SOURCE_LENGTH}"
        )
    stripped = source.lstrip()
    indent = len(source) - len(stripped)
    for lo, hi in _code_spans(source):
        if "@" in source[lo:hi]:
            at = source.index("@", lo, hi) + 1
            raise ExpressionError(
                _located(
                    source, "'@' is not an operator in expressions; did you mean 'matches'?", at
                ),
                at,
            )
    text, edits = _rewrite(stripped, infix=True)
    edits = (_Edit(0, 0, 0, indent), *(_shift(e, indent) for e in edits)) if indent else edits
    tree = _parse(source, text, edits)
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(
            _located(source, f"expression is nested more than {MAX_DEPTH} levels deep", None)
        )
    expression = Expression(source, tree, text, edits)
    for node in ast.walk(tree):
        problem = _problem(node)
        if problem is not None:
            column = expression.column(node.func if isinstance(node, ast.Call) else node)
            raise ExpressionError(_located(source, problem, column), column)
    return expression


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


class Expression:
    """A compiled, validated expression; immutable and shared through the compile cache."""

    def __init__(
        self, source: str, tree: ast.Expression, text: str, edits: tuple[_Edit, ...]
    ) -> None:
        self.source = source
        self._tree = tree
        self._text = text
        self._edits = edits
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

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
        start = _original_position(
            self._offset(node.lineno, node.col_offset), self._edits, end=False
        )
        end_line, end_col = node.end_lineno or node.lineno, node.end_col_offset or 0
        end = _original_position(self._offset(end_line, end_col), self._edits, end=True)
        return self.source[start:end]

    def column(self, node: ast.AST) -> int | None:
        """1-based column of `node` in the original source (None on later lines)."""
        lineno: int | None = getattr(node, "lineno", None)
        if lineno is None:
            return None
        offset = self._offset(lineno, getattr(node, "col_offset", 0))
        if isinstance(node, ast.Attribute) and node.end_lineno == lineno:
            offset = self._offset(lineno, node.end_col_offset or 0) - len(node.attr)
        return _original_position(offset, self._edits, end=False) + 1

    def _offset(self, lineno: int, col_bytes: int) -> int:
        """`ast` counts columns in UTF-8 bytes; we need characters."""
        start = self._line_starts[lineno - 1]
        if self._text.isascii():
            return start + col_bytes
        return start + len(self._text[start:].encode()[:col_bytes].decode(errors="replace"))


_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, re.error, RecursionError)


class _Evaluation(_Explainer):
    """One evaluation of an Expression: remembers every node's value to explain failures."""

    def __init__(self, expression: Expression, namespace: Mapping[str, Any]) -> None:
        self.expr = expression
        self.namespace = namespace
        self.values: dict[int, Any] = {}
        self.failed_link: dict[int, int] = {}
        self.unknown_ref: str | None = None
        self._unknown_start: int | None = None

    def run(self) -> Any:
        try:
            return self.visit(self.expr._tree.body)
        except _ERRORS as exc:  # safety net; specific messages are raised closer to the cause
            raise EvaluationError(f"cannot evaluate {self.expr.source!r}: {exc}") from None

    def visit(self, node: ast.expr) -> Any:
        value = self._HANDLERS[type(node)](self, node)
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
        return _admit(value, node.id)

    def _undefined(self, name: str) -> str:
        available = sorted(str(k) for k in self.namespace)
        message = f"name {name!r} is not defined; available: {', '.join(available) or 'none'}"
        close = difflib.get_close_matches(name, [*available, "True", "False", "None"], n=1)
        return message + (f"; did you mean {close[0]!r}?" if close else "")

    def _attribute(self, node: ast.Attribute) -> Any:
        return self._lookup(self.visit(node.value), node.attr, node.value)

    def _subscript(self, node: ast.Subscript) -> Any:
        base = self.visit(node.value)
        index = self.visit(node.slice)
        if index is UNKNOWN or (type(index) is not slice and _has_unknown(index)):
            return UNKNOWN
        if base is UNKNOWN or _is_mapping(base) or base is None:
            return self._lookup(base, index, node.value)
        if type(base) in (list, tuple) or issubclass(type(base), str):
            return self._index(base, index, node.value)
        raise EvaluationError(f"{self.src(node.value)} is {_describe(base)}; it cannot be indexed")

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
            raise EvaluationError(f"{where} is None, so it has no key {key!r}")
        if not _is_mapping(base):
            raise EvaluationError(
                f"{where} is {_describe(base)}, not a mapping; it has no key {key!r}"
            )
        try:
            value = base[key]
        except KeyError:
            raise EvaluationError(f"{where} has no key {key!r} (keys: {_key_list(base)})") from None
        except TypeError as exc:
            raise EvaluationError(f"{where}[{_short_repr(key)}]: {exc}") from None
        return _admit(value, f"{where}[{key!r}]")

    def _index(self, base: Any, index: Any, base_node: ast.expr) -> Any:
        where = self.src(base_node)
        if type(index) not in (int, bool, slice):
            raise EvaluationError(
                f"{where} is {type(base).__name__}; its index must be an "
                f"integer, not {_describe(index)}"
            )
        try:
            return _admit(base[index], f"{where}[{index!r}]")
        except IndexError:
            raise EvaluationError(f"{where} has no index {index} (length {len(base)})") from None

    def _compare(self, node: ast.Compare) -> Any:
        left, unknown = self.visit(node.left), False
        for link, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
            right = self.visit(right_node)
            if _has_unknown(left) or _has_unknown(right):
                unknown = True
            elif not self._compare_pair(op, left, right, node):
                self.failed_link[id(node)] = link
                return False
            left = right
        return UNKNOWN if unknown else True

    def _compare_pair(self, op: ast.cmpop, left: Any, right: Any, node: ast.Compare) -> bool:
        symbol, function = _COMPARE[type(op)]
        try:
            return bool(function(left, right))
        except TypeError as exc:
            raise EvaluationError(
                f"cannot evaluate {_short_repr(left)} {symbol} "
                f"{_short_repr(right)} in {self.src(node)!r}: {exc}"
            ) from None

    def _binop(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if _has_unknown(left) or _has_unknown(right):
            return UNKNOWN
        if isinstance(node.op, ast.Mult):
            _check_repeat(left, right)
        if isinstance(node.op, ast.Mod) and issubclass(type(left), str):
            raise EvaluationError("'%' string formatting is not supported in expressions")
        try:
            return _BINOPS[type(node.op)](left, right)
        except (TypeError, ArithmeticError, ValueError, re.error) as exc:
            raise EvaluationError(f"cannot evaluate {self.src(node)!r}: {exc}") from None

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        if operand is UNKNOWN or (not isinstance(node.op, ast.Not) and _has_unknown(operand)):
            return UNKNOWN
        if isinstance(node.op, ast.Not):
            return not operand
        if type(operand) not in (int, float, bool):
            raise EvaluationError(
                f"cannot negate {self.src(node.operand)}: it is {_describe(operand)}"
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
        if any(_has_unknown(arg) for arg in args):
            return UNKNOWN
        try:
            return FUNCTIONS[name](*args)
        except _ERRORS as exc:
            raise EvaluationError(f"{self.src(node)}: {exc}") from None

    def _method(self, node: ast.Call, func: ast.Attribute) -> Any:
        receiver = self.visit(func.value)
        args = [self.visit(arg) for arg in node.args]
        if receiver is UNKNOWN or any(_has_unknown(arg) for arg in args):
            return UNKNOWN
        if not issubclass(type(receiver), str):
            raise EvaluationError(
                f"{self.src(func.value)} is {_describe(receiver)}; "
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
            _has_unknown(item)  # refuse hidden objects before hashing calls into them
        return set(items)

    def _dict(self, node: ast.Dict) -> Any:
        keys = [self.visit(key) for key in node.keys if key is not None]
        for key in keys:
            _has_unknown(key)
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
