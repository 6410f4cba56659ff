"""Safe YAML loading that remembers where every key and value came from.

Schema and semantic errors must point at `file:line:column`, so mappings and
sequences are built as `MarkedDict`/`MarkedList`, which carry the 1-based
position of each key, value and item; `locate()` turns a jsonschema-style
path back into a position, and `unmarked()` copies a tree back to plain data.
Runbooks come from repositories and pull requests, so loading is defensive:
files over 1 MiB are refused unread, duplicate keys are errors, and alias
expansion and nesting are bounded so a "billion laughs" document is rejected
before anything walks it.

Scalars follow the YAML 1.2 core schema (as JSON does): only true/false are
booleans, there are no sexagesimal ints or timestamps, and mapping keys are
always the key's text, so `on:` and `NO:` stay strings. Unknown tags
(`!!python/...`, `!!binary`, ...) are errors.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runbook.errors import InvalidInput, InvalidRunbook, RunbookNotFound

MAX_BYTES = 1024 * 1024
MAX_ALIAS_NODES = 20_000  # nodes that aliases may add on top of the document's own
MAX_DEPTH = 100

_TAG = "tag:yaml.org,2002:"


class Position(NamedTuple):
    """A 1-based line and column in the source file."""

    line: int
    column: int


def _position(node: Node, _new: Any = tuple.__new__) -> Position:
    # Called for every key, value and item: tuple.__new__ skips NamedTuple's keyword layer.
    mark = node.start_mark
    position: Position = _new(Position, (mark.line + 1, mark.column + 1))
    return position


class MarkedDict(dict[str, Any]):
    """A mapping that knows the position of itself and of each key and value.

    Positions of keys and values are worked out when first asked for (an error
    to locate), from the YAML nodes kept meanwhile: most loads ask for none.
    """

    mark: Position = Position(1, 1)

    def __init__(self, pairs: Sequence[tuple[Node, Node]] = ()) -> None:
        super().__init__()
        self._pairs = pairs
        self._marks: tuple[dict[str, Position], dict[str, Position]] | None = None

    def _positions(self) -> tuple[dict[str, Position], dict[str, Position]]:
        if self._marks is None:
            keys = {k.value: _position(k) for k, _ in self._pairs}
            values = {k.value: _position(v) for k, v in self._pairs}
            self._marks, self._pairs = (keys, values), ()
        return self._marks

    @property
    def key_marks(self) -> dict[str, Position]:
        """The position of each key."""
        return self._positions()[0]

    @property
    def value_marks(self) -> dict[str, Position]:
        """The position of each key's value."""
        return self._positions()[1]


class MarkedList(list[Any]):
    """A sequence that knows the position of itself and of each item (worked out lazily)."""

    mark: Position = Position(1, 1)

    def __init__(self, nodes: Sequence[Node] = ()) -> None:
        super().__init__()
        self._nodes = nodes
        self._item_marks: list[Position] | None = None

    @property
    def item_marks(self) -> list[Position]:
        """The position of each item."""
        if self._item_marks is None:
            self._item_marks, self._nodes = [_position(node) for node in self._nodes], ()
        return self._item_marks


class YamlProblem(InvalidInput):
    """A located problem found while reading YAML (not yet tied to a file name)."""

    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def unmarked(value: Any) -> Any:
    """A copy of `value` as plain dicts and lists, without marks (for models and serialising)."""
    if isinstance(value, MarkedDict | dict):
        return {k: unmarked(v) for k, v in value.items()}
    if isinstance(value, MarkedList | list):
        return [unmarked(v) for v in value]
    return value


def locate(tree: Any, path: tuple[str | int, ...], *, key: bool = False) -> Position:
    """The most precise known position for `path` (jsonschema-style) in `tree`.

    Returns the value's position, or the key's when `key` is true (an unknown
    or misplaced key); when the path leaves what exists (a missing key), the
    closest parent's position.
    """
    best = getattr(tree, "mark", Position(1, 1))
    node = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, MarkedDict) and isinstance(part, str) and part in node:
            marks = node.key_marks if (last and key) else node.value_marks
            best = marks.get(part, best)
        elif isinstance(node, MarkedList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_marks[part]
        else:
            break
        node = node[part]
    return best


# -- the loader ---------------------------------------------------------------------------
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_MERGE = re.compile(r"^<<$")


def _core_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    rules = [
        (_TAG + "bool", _BOOL, "tTfF"),
        (_TAG + "int", _INT, "-+0123456789"),
        (_TAG + "float", _FLOAT, "-+0123456789."),
        (_TAG + "null", _NULL, "~nN"),
        (_TAG + "merge", _MERGE, "<"),
    ]
    for tag, regexp, first in rules:
        for char in first:
            table.setdefault(char, []).append((tag, regexp))
    table.setdefault("", []).append((_TAG + "null", _NULL))
    return table


_MAX_INT_TEXT = 400  # characters; a float's range ends at 309 decimal digits
_TOO_LARGE = 10**400


def _clip(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _expect_kind(node: Node, kind: type[Node], tag: str, what: str) -> None:
    """An explicit `!!map`/`!!seq` on the other kind of node is an error, not a crash."""
    if not isinstance(node, kind):
        found = {ScalarNode: "a plain value", SequenceNode: "a list", MappingNode: "a mapping"}
        this = found.get(type(node), "another kind of value")
        raise YamlProblem(f"'{tag}' marks {what}, but this is {this}", _position(node))


class _MarkedConstructor(SafeConstructor):
    """SafeConstructor building marked containers, JSON-compatible scalars only."""

    yaml_implicit_resolvers = _core_resolvers()

    def construct_marked_map(self, node: MappingNode) -> Iterator[MarkedDict]:
        _expect_kind(node, MappingNode, "!!map", "a mapping")
        data = MarkedDict()
        data.mark = _position(node)
        yield data
        self._reject_duplicates(node)
        self.flatten_mapping(node)
        data._pairs = node.value  # merged keys included: the marks come from these
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(
                    f"a mapping key must be a plain value, not a {key_node.id}", _position(key_node)
                )
            data[key_node.value] = self.construct_object(value_node)

    def construct_marked_seq(self, node: SequenceNode) -> Iterator[MarkedList]:
        _expect_kind(node, SequenceNode, "!!seq", "a list")
        data = MarkedList(node.value)
        data.mark = _position(node)
        yield data
        data.extend(self.construct_object(child) for child in node.value)

    def _reject_duplicates(self, node: MappingNode) -> None:
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _TAG + "merge" or not isinstance(key_node, ScalarNode):
                continue
            first_node = seen.setdefault(key_node.value, key_node)
            if first_node is key_node:
                continue
            first, here = _position(first_node), _position(key_node)
            if first != here:
                raise YamlProblem(
                    f"duplicate key '{key_node.value}': first on line {first.line}, "
                    f"again on line {here.line}",
                    here,
                )

    def construct_unsupported(self, node: Node) -> None:
        tag = node.tag.replace(_TAG, "!!")
        raise YamlProblem(
            f"unsupported YAML tag '{tag}'; runbooks hold plain data "
            "(strings, numbers, booleans, null, lists, mappings)",
            _position(node),
        )

    def construct_core_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        try:
            if len(text) > _MAX_INT_TEXT and _INT.match(text):  # int() refuses 4,300+ digits
                value = _TOO_LARGE
            elif text.startswith(("0o", "0x")):
                value = int(text[2:], 8 if text[1] == "o" else 16)
            else:
                value = int(text, 10)
        except ValueError:
            raise YamlProblem(f"'{_clip(text)}' is not an integer", _position(node)) from None
        # Past a float's range a number breaks every duration, limit and comparison with one.
        if abs(value) > sys.float_info.max:
            raise YamlProblem(f"'{_clip(text)}' is too large a number", _position(node))
        return value

    def construct_core_float(self, node: ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        # JSON has no infinity or NaN, and neither does anything a runbook measures.
        if text.lower().lstrip("+-") in (".inf", ".nan"):
            raise YamlProblem(
                f"'{text}' is not a finite number; runbooks hold finite numbers only",
                _position(node),
            )
        try:
            value = float(text)
        except ValueError:
            raise YamlProblem(f"'{_clip(text)}' is not a number", _position(node)) from None
        if not math.isfinite(value):
            if _FLOAT.match(text):  # digits that overflow to infinity: 1e999
                raise YamlProblem(f"'{_clip(text)}' is too large a number", _position(node))
            raise YamlProblem(  # `!!float nan`, `!!float inf`
                f"'{_clip(text)}' is not a finite number; runbooks hold finite numbers only",
                _position(node),
            )
        return value

    def construct_core_bool(self, node: ScalarNode) -> bool:
        text = str(self.construct_scalar(node))
        if not _BOOL.match(text):  # `!!bool maybe`, and YAML 1.1's yes/no/on/off
            raise YamlProblem(f"'{_clip(text)}' is not a boolean (true or false)", _position(node))
        return text.lower() == "true"


# A fresh table, not SafeConstructor's: binary, timestamps, sets and omaps are not JSON.
_MarkedConstructor.yaml_constructors = {
    _TAG + "null": SafeConstructor.construct_yaml_null,
    _TAG + "bool": _MarkedConstructor.construct_core_bool,
    _TAG + "str": SafeConstructor.construct_yaml_str,
    _TAG + "int": _MarkedConstructor.construct_core_int,
    _TAG + "float": _MarkedConstructor.construct_core_float,
    _TAG + "map": _MarkedConstructor.construct_marked_map,
    _TAG + "seq": _MarkedConstructor.construct_marked_seq,
    None: _MarkedConstructor.construct_unsupported,
}


class MarkedLoader(_MarkedConstructor, yaml.SafeLoader):
    """Pure-Python safe loader with marks (the fallback, and the reference in tests)."""


if yaml.__with_libyaml__:

    class MarkedCLoader(_MarkedConstructor, yaml.CSafeLoader):
        """The same loader on libyaml's parser (marks work there too)."""

else:  # pragma: no cover - PyYAML built without libyaml
    MarkedCLoader = MarkedLoader  # type: ignore[misc,assignment]


# libyaml parses ~10x faster and caps nesting itself.
DEFAULT_LOADER: type[Any] = MarkedCLoader


# -- bounds -------------------------------------------------------------------------------
def check_bounds(root: Node, *, aliases: bool = True) -> None:
    """Refuse documents whose aliases expand too far, that recurse, or nest too deep.

    Aliases share one node, so the graph stays small while its expansion can be
    astronomically large. Expanded sizes are computed bottom-up, once per
    distinct node, and checked as they grow, so a bomb fails after a few
    hundred nodes; the walk is iterative so deep documents cannot blow the stack.
    `aliases=False` (the text has no `*`, so no alias) checks only the depth.
    """
    if not aliases:
        _check_depth(root)
        return
    sizes: dict[int, int] = {}
    active: set[int] = set()
    unique = 0
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]  # (node, depth, children done)
    while stack:
        node, depth, children_done = stack.pop()
        if children_done:
            active.discard(id(node))
            size = sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            # Every distinct node under this one is already counted in `unique`,
            # so anything beyond it was added by aliases.
            if size - unique > MAX_ALIAS_NODES:
                raise YamlProblem(
                    "too many aliases (possible alias bomb): they expand to more than "
                    f"{MAX_ALIAS_NODES} extra nodes",
                    _position(node),
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in active:
            raise YamlProblem(
                "an alias refers to its own anchor (recursive structure)", _position(node)
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", _position(node))
        unique += 1
        active.add(id(node))
        stack.append((node, depth, True))
        for child in _children(node):
            if not isinstance(child, ScalarNode):
                stack.append((child, depth + 1, False))
            elif id(child) not in sizes:  # a leaf (most nodes): done here, not via the stack
                if depth + 1 > MAX_DEPTH:
                    raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", _position(child))
                sizes[id(child)] = 1
                unique += 1


def _check_depth(root: Node) -> None:
    """The depth part of `check_bounds`, for a document without aliases (a plain tree)."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        for child in _children(node):
            if depth + 1 > MAX_DEPTH:
                raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", _position(child))
            if not isinstance(child, ScalarNode):
                stack.append((child, depth + 1))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# -- entry points -------------------------------------------------------------------------
def load_yaml(text: str, loader: type[Any] = DEFAULT_LOADER) -> Any:
    """Parse one YAML document into marked containers; raises YamlProblem."""
    try:
        parser = loader(text)  # the pure-Python reader checks characters here already
    except yaml.reader.ReaderError as exc:
        raise _reader_problem(exc, text) from None
    try:
        node = parser.get_single_node()
        if node is None:
            raise YamlProblem("the file is empty; expected a runbook mapping", Position(1, 1))
        check_bounds(node, aliases="*" in text)
        return parser.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        raise YamlProblem(_yaml_message(exc), where) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_problem(exc, text) from None
    except RecursionError:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", Position(1, 1)) from None
    finally:
        parser.dispose()


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> YamlProblem:
    """A character YAML refuses (NUL, other control characters), located in `text`."""
    at = max(0, min(int(exc.position), len(text)))
    where = Position(text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1)
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return YamlProblem(
        f"the character U+{code:04X} (a control or non-printable character) is not allowed "
        f'in YAML; write it as an escape in a double-quoted string ("{escape}")',
        where,
    )


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    message = exc.problem or exc.context or "invalid YAML"
    start = exc.context_mark
    if exc.problem and exc.context and start is not None:
        # "expected ',' or ']' (while parsing a flow sequence that starts at line 3, column 8)"
        message += (
            f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        )
    return message


def read_yaml_file(path: str | Path, name: str | None = None) -> tuple[Any, bytes]:
    """Read and parse a YAML file; returns (marked tree, the exact bytes read).

    Every problem raises InvalidRunbook with `name:line:column: message`
    (`name` defaults to the path as given).
    """
    name = str(path) if name is None else name
    data = read_limited(path, name)
    return parse_yaml_bytes(data, name), data


def parse_yaml_bytes(data: bytes, name: str) -> Any:
    """Parse UTF-8 YAML bytes into a marked tree; InvalidRunbook on any problem."""
    if len(data) > MAX_BYTES:
        raise InvalidRunbook(_too_big(name, len(data)))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidRunbook(f"{name}:{line}:{column}: the file is not UTF-8 text") from None
    try:
        return load_yaml(text)
    except YamlProblem as exc:
        line, column = exc.position
        raise InvalidRunbook(f"{name}:{line}:{column}: {exc.message}") from None


def _too_big(name: str, size: int) -> str:
    return (
        f"{name}:1:1: file is {size / (1024 * 1024):.1f} MiB; "
        f"runbooks are limited to {MAX_BYTES // (1024 * 1024)} MiB"
    )


def read_limited(path: str | Path, name: str) -> bytes:
    """The file's bytes, refusing (before reading them) files over MAX_BYTES."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_BYTES:
                raise InvalidRunbook(_too_big(name, size))
            # A pipe or a growing file has no trustworthy size: never read past the limit.
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise RunbookNotFound(f"{name}: no such file") from None
    except OSError as exc:
        raise InvalidRunbook(f"{name}: cannot read: {exc.strerror or exc}") from None
    return data
