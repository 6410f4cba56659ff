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
import operator
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Final

from runbook.errors import ExpressionError, RunbookError

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

MAX_SOURCE_LENGTH: Final = 2000
MAX_DEPTH: Final = 64
MAX_SEQUENCE_LENGTH: Final = 100_000  # cap for `'x' * n` and `[0] * n`
_MAX_REPR: Final = 120


class EvaluationError(RunbookError):
    """A well-formed expression could not be evaluated against this result.

    Typical causes: a name or key that is not there, a type mismatch such as
    `'a' < 1`, or a value the sandbox refuses to touch.
    """


class Unknown:
    """The type of `UNKNOWN`: a value that only a real run can tell.

    Falsy so naive code errs on the side of "not passed", but callers must ask
    `is_unknown()` first: any operation in an expression involving UNKNOWN
    yields UNKNOWN instead of an answer.
    """

    __slots__ = ()
    _instance: ClassVar[Unknown | None] = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNKNOWN"  # pickling and deepcopy keep the singleton


UNKNOWN: Final = Unknown()


def is_unknown(value: object) -> bool:
    """Whether `value` is the dry-run placeholder for a not-yet-known value."""
    return value is UNKNOWN


def _matches(text: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str):
        raise TypeError(f"matches needs a pattern string, got {type(pattern).__name__}")
    return re.search(pattern, str(text)) is not None


FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "len": len,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "sum": sum,
    "any": any,
    "all": all,
    "sorted": sorted,
    "lower": lambda text: str(text).lower(),
    "upper": lambda text: str(text).upper(),
    "matches": _matches,
}
STRING_METHODS: Final = frozenset(
    {"startswith", "endswith", "lower", "upper", "strip", "split", "count", "splitlines"}
)

# --- source rewriting: `matches` as an infix operator, hyphenated step ids ------------------

_INFIX_MATCHES = re.compile(r"(\.\s*)?\bmatches\b(?!\s*\()")
# `matches` is the operator only right after an operand; after `and`, `(`, `==` or at the
# start it is a plain name (a result field may well be called `matches`).
_NOT_AFTER_OPERAND = re.compile(r"(?:^|\b(?:and|or|not|in|is|if|else)|[^\w)\]}'\"\s])\s*$")
_HYPHEN_ID = re.compile(r"(?<![\w.])(steps|vars)\.([a-z0-9_]+(?:-[a-z0-9_]+)+)(?![\w-])")


@dataclass(frozen=True)
class _Edit:
    """One rewrite, so positions in the parsed text map back to what the author wrote."""

    new_start: int
    new_end: int
    old_start: int
    old_end: int


def _code_spans(text: str) -> Iterable[tuple[int, int]]:
    """Spans of `text` outside string literals; a tiny lexer so rewrites skip quoted text."""
    start = i = 0
    while i < len(text):
        if text[i] not in "'\"":
            i += 1
            continue
        quote = text[i : i + 3] if text[i : i + 3] in ("'''", '"""') else text[i]
        yield start, i
        j = i + len(quote)
        while j < len(text) and not text.startswith(quote, j):
            j += 2 if text[j] == "\\" else 1
        i = start = min(j + len(quote), len(text))
    yield start, len(text)


def _rewrite(text: str, *, infix: bool) -> tuple[str, tuple[_Edit, ...]]:
    """Apply the hyphenated-id (and optionally infix `matches`) rewrites outside strings."""
    replacements: list[tuple[int, int, str]] = []
    for lo, hi in _code_spans(text):
        for m in _HYPHEN_ID.finditer(text, lo, hi):
            replacements.append((m.start(), m.end(), f"{m.group(1)}[{m.group(2)!r}]"))
        for m in _INFIX_MATCHES.finditer(text, lo, hi) if infix else ():
            # `x.matches` is a key lookup, not the operator
            if m.group(1) is None and not _NOT_AFTER_OPERAND.search(text, 0, m.start()):
                replacements.append((m.start(), m.end(), "@"))
    pieces: list[str] = []
    edits: list[_Edit] = []
    pos = shift = 0
    for start, end, new in sorted(replacements):
        pieces += [text[pos:start], new]
        edits.append(_Edit(start + shift, start + shift + len(new), start, end))
        shift += len(new) - (end - start)
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces), tuple(edits)


def rewrite_hyphenated_ids(code: str) -> str:
    """`steps.check-db.passed` -> `steps['check-db'].passed`, leaving string literals alone.

    Step ids may contain hyphens, which Python (and Jinja) would read as minus.
    Only `steps.` and `vars.` followed by a lowercase id with a hyphen and no
    spaces are rewritten, so `steps.a - b` keeps meaning subtraction.
    """
    return _rewrite(code, infix=False)[0]


def _original_position(pos: int, edits: tuple[_Edit, ...], *, end: bool) -> int:
    original = pos
    for edit in edits:
        if pos >= edit.new_end:
            original = pos - edit.new_end + edit.old_end
        elif pos > edit.new_start:
            return edit.old_end if end else edit.old_start
        else:
            break
    return original


# --- compile-time validation ----------------------------------------------------------------

_NODE_NAMES: Final[Mapping[type[ast.AST], str]] = {
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.NamedExpr: "':='",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Pow: "'**'",
    ast.Invert: "'~'",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.BitXor: "'^'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
}
_BINOPS: Final[Mapping[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.MatMult: lambda text, pattern: _matches(text, pattern),
}
_COMPARE: Final[Mapping[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_ALLOWED: Final = frozenset(
    {
        ast.Expression,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.List,
        ast.Tuple,
        ast.Dict,
        ast.Set,
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.UnaryOp,
        ast.Not,
        ast.USub,
        ast.UAdd,
        ast.Compare,
        ast.BinOp,
        ast.IfExp,
        ast.Subscript,
        ast.Slice,
        ast.Attribute,
        ast.Call,
        *_BINOPS,
        *_COMPARE,
    }
)
_CONSTANT_TYPES: Final = (str, int, float, bool, type(None))


def _depth(tree: ast.AST) -> int:
    """Nesting depth, computed without recursion so hostile input cannot blow the stack."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _problem(node: ast.AST) -> str | None:
    """Why `node` is not allowed in an expression, or None when it is."""
    if isinstance(node, ast.Name) and node.id.startswith("_"):
        return f"name {node.id!r} is not allowed (names starting with '_' are private)"
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        return f"attribute {node.attr!r} is not allowed (names starting with '_' are private)"
    if isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANT_TYPES):
        return f"{type(node.value).__name__} literals are not supported"
    if isinstance(node, ast.Dict) and None in node.keys:
        return "'**' unpacking is not allowed"
    if isinstance(node, ast.Call):
        return _call_problem(node)
    if isinstance(node, (ast.BinOp, ast.UnaryOp)) and type(node.op) not in _ALLOWED:
        return f"{_NODE_NAMES.get(type(node.op), type(node.op).__name__)} is not allowed"
    if type(node) not in _ALLOWED:
        name = _NODE_NAMES.get(type(node), type(node).__name__)
        return f"{name} is not allowed in expressions"
    return None


def _call_problem(node: ast.Call) -> str | None:
    if node.keywords:
        return "keyword arguments are not supported"
    func = node.func
    if isinstance(func, ast.Name):
        if func.id not in FUNCTIONS:
            return (
                f"function {func.id!r} is not allowed; allowed functions: "
                f"{', '.join(sorted(FUNCTIONS))}"
            )
        return None
    if isinstance(func, ast.Attribute) and not func.attr.startswith("_"):
        if func.attr not in STRING_METHODS:
            return (
                f"method {func.attr!r} is not allowed; allowed string methods: "
                f"{', '.join(sorted(STRING_METHODS))}"
            )
        return None
    if isinstance(func, ast.Attribute):
        return None  # the private attribute itself is reported
    return "only the allowed functions and string methods can be called"


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


def _shift(edit: _Edit, indent: int) -> _Edit:
    return _Edit(edit.new_start, edit.new_end, edit.old_start + indent, edit.old_end + indent)


_WARNINGS_LOCK = threading.Lock()  # catch_warnings swaps process-wide filters


def _parse(source: str, text: str, edits: tuple[_Edit, ...]) -> ast.Expression:
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # `matches 'ERROR \d+'` is how authors write regexes; an unknown escape stays a
            # backslash, which is what re wants, so Python's warning would only be noise.
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        column: int | None = None
        problem = exc.msg
        if not exc.offset or exc.offset > len(text):  # the parser ran out of input
            column, problem = len(source.rstrip()) + 1, f"{exc.msg} (the expression ends early)"
        elif (exc.lineno or 1) == 1:
            column = _original_position(exc.offset - 1, edits, end=False) + 1
        raise ExpressionError(_located(source, problem, column), column) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(_located(source, str(exc) or "too complex", None)) from None


def _located(source: str, problem: str, column: int | None) -> str:
    where = f", column {column}" if column is not None else ""
    return f"expression {source!r}{where}: {problem}"


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


def _is_mapping(value: Any) -> bool:
    return issubclass(type(value), Mapping)


def _admit(value: Any, path: str) -> Any:
    """Let plain data in; refuse anything else by its exact type, before calling any method.

    `type()` and `issubclass` on the type run none of the object's code, unlike
    `isinstance`, which may consult a hostile `__class__`.
    """
    kind = type(value)
    if (
        value is UNKNOWN
        or kind in (list, tuple, dict, set, frozenset, type(None))
        or issubclass(kind, (str, int, float, Mapping))
    ):
        return value
    raise EvaluationError(f"{path} is a {kind.__name__} object, which expressions cannot use")


def _has_unknown(value: Any, depth: int = 0) -> bool:
    """Whether `value` is or contains UNKNOWN; also refuses non-plain data nested inside."""
    kind = type(value)
    if value is UNKNOWN:
        return True
    if kind is type(None) or issubclass(kind, (str, int, float)):
        return False
    if depth > MAX_DEPTH:
        raise EvaluationError(f"value is nested more than {MAX_DEPTH} levels deep")
    if kind in (list, tuple, set, frozenset):
        return any(_has_unknown(item, depth + 1) for item in value)
    if issubclass(kind, Mapping):
        return any(
            _has_unknown(k, depth + 1) or _has_unknown(v, depth + 1) for k, v in value.items()
        )
    raise EvaluationError(f"a {kind.__name__} object cannot be used in expressions")


def _short_repr(value: Any) -> str:
    try:
        _has_unknown(value)
    except EvaluationError:
        return f"<{type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _describe(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__} ({_short_repr(value)})"


def _key_list(mapping: Mapping[Any, Any]) -> str:
    keys = [k if issubclass(type(k), str) else _short_repr(k) for k in mapping]
    shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
    return shown or "none"


_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, re.error, RecursionError)


class _Evaluation:
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

    # --- explanations ------------------------------------------------------------------------

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
                node.left, [_COMPARE[type(op)][0] for op in node.ops], node.comparators
            )
        left = node.left if link == 0 else node.comparators[link - 1]
        return self._explain_operands(
            left, [_COMPARE[type(node.ops[link])][0]], [node.comparators[link]]
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
        return _short_repr(self.values[id(node)]) if id(node) in self.values else "?"

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


def _check_repeat(left: Any, right: Any) -> None:
    """Refuse `'x' * 10**9` (and `[[0] * 10**5] * 10**5`, which `str()` would expand)
    before it eats the machine's memory."""
    for sequence, count in ((left, right), (right, left)):
        if type(count) is int and _size(sequence) * count > MAX_SEQUENCE_LENGTH:
            raise EvaluationError(f"result would be longer than {MAX_SEQUENCE_LENGTH} items")


def _size(value: Any) -> int:
    """Items in `value`, nested ones included; stops counting past the limit."""
    if issubclass(type(value), str):
        return len(value)
    if type(value) not in (list, tuple):
        return 0
    total = len(value)
    for item in value:
        if total > MAX_SEQUENCE_LENGTH:
            break
        total += _size(item)
    return total


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
