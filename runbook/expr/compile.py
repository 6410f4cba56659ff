"""Source text to a checked `ast` tree: the language's whitelist, rewriting and parsing.

This is the static half of the sandbox; nothing here ever sees a value. It says
what an expression may contain (the syntax whitelist, `FUNCTIONS`,
`STRING_METHODS`, `BINARY_OPERATORS`, `COMPARISONS`), rewrites the author's text
(`matches` as an infix operator, hyphenated step ids; `template_blocks` finds the
code inside a template's `{{ }}`/`{% %}` for the same rewriting), parses it, and
refuses anything outside the whitelist with an error pointing at the column the
author wrote. `parse_expression` returns the tree with a `SourceMap` that leads every
node back to that text, which `runbook.expr.expression` uses to quote sources
when it explains a failed check.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from runbook.errors import ExpressionError
from runbook.expr.patterns import PatternError, compile_pattern
from runbook.expr.values import MAX_DEPTH

MAX_SOURCE_LENGTH: Final = 2000


def _matches(text: Any, pattern: Any) -> bool:
    """`re.search` semantics on RE2 (`runbook.expr.patterns`): linear time, so no check
    can hang on a pattern; a pattern RE2 cannot run raises PatternError (a ValueError)."""
    if not isinstance(pattern, str):
        raise TypeError(f"matches needs a pattern string, got {type(pattern).__name__}")
    return compile_pattern(pattern).search(str(text))


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


_DELIMITERS: Final = (("{{", "}}"), ("{%", "%}"))


def template_blocks(text: str) -> Iterator[tuple[int, int]]:
    """Where the code of each `{{ ... }}` and `{% ... %}` block of `text` starts and ends.

    What `re.finditer(r"\\{\\{(.*?)\\}\\}|\\{%(.*?)%\\}", re.S)` finds, in one pass: that
    regex rescans the rest of the text from every `{{` never closed, so a long template
    could take hours. Here each delimiter's next opener and closer are searched only
    forward from the last ones found, and an opener never closed ends its kind.
    """
    found: list[tuple[int, int] | None] = [(-1, -1)] * len(_DELIMITERS)
    at = 0
    while True:
        best: tuple[int, int, int] | None = None
        for kind, (opener, closer) in enumerate(_DELIMITERS):
            spot = found[kind]
            if spot is None:
                continue
            if spot[0] < at:
                start = text.find(opener, at)
                end = spot[1]
                if start >= 0 and end < start + len(opener):
                    end = text.find(closer, start + len(opener))
                if start < 0 or end < 0:  # an opener never closed: no later block of its kind
                    found[kind] = None
                    continue
                spot = found[kind] = (start, end)
            if best is None or spot[0] < best[1]:
                best = (kind, *spot)
        if best is None:
            return
        kind, start, end = best
        yield start + len(_DELIMITERS[kind][0]), end
        at = end + len(_DELIMITERS[kind][1])


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


class SourceMap:
    """Leads a node of the parsed (rewritten) text back to what the author wrote."""

    def __init__(self, source: str, text: str, edits: tuple[_Edit, ...]) -> None:
        self.source = source
        self._text = text
        self._edits = edits
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

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
# The operators expressions support and what each does, applied by the evaluator; a
# comparison also carries the symbol that the explanation of a failed check shows.
BINARY_OPERATORS: Final[Mapping[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.MatMult: lambda text, pattern: _matches(text, pattern),
}
COMPARISONS: Final[Mapping[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]]] = {
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
        *BINARY_OPERATORS,
        *COMPARISONS,
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


def parse_expression(source: str) -> tuple[ast.Expression, SourceMap]:
    """The checked tree of `source` and its way back to the author's text.

    Raises ExpressionError, naming the column where it can, for text that is too
    long, does not parse, is nested too deep, or uses anything outside the whitelist.
    """
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
    positions = SourceMap(source, text, edits)
    for node in ast.walk(tree):
        problem = _problem(node)
        if problem is not None:
            column = positions.column(node.func if isinstance(node, ast.Call) else node)
            raise ExpressionError(_located(source, problem, column), column)
        literal = _literal_pattern(node)
        if literal is not None:
            try:
                compile_pattern(literal.value)
            except PatternError as exc:
                column = positions.column(literal)
                raise ExpressionError(_located(source, str(exc), column), column) from None
    return tree, positions


def _literal_pattern(node: ast.AST) -> ast.Constant | None:
    """The written-out regex of `x matches 'p'` or `matches(x, 'p')`, checked at validate
    time so an author learns of a construct RE2 lacks before the incident."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        pattern = node.right
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "matches"
        and len(node.args) == 2
    ):
        pattern = node.args[1]
    else:
        return None
    if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
        return pattern
    return None


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
