"""The values an expression may touch: UNKNOWN, the plain-data sandbox and its limits.

`runbook.expr.expression` evaluates against step results it does not trust. This
module decides which data is admitted (`admit`, `has_unknown`: plain str, numbers,
bool, None, lists, tuples, sets and Mappings, checked by exact type before any of
the value's own code could run), how values are quoted back in messages
(`short_repr`, `describe`, `key_list`), the nesting and size limits
(`size_of` measures a value the way those limits count), and the dry-run
`UNKNOWN` placeholder that `runbook.expr.templating` and the planner share
with the evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from runbook.errors import RunbookError

MAX_DEPTH: Final = 64  # of an expression's tree and of the data it reads
MAX_SEQUENCE_LENGTH: Final = 100_000  # cap for `'x' * n` and `[0] * n`
MAX_EVALUATION_SECONDS: Final = 2.0  # one evaluation; each step is linear in the data, but
# a 2,000-character expression can still ask for a hundred sorts of a megabyte of output
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


def is_mapping(value: Any) -> bool:
    """Whether `value` is a Mapping, asked of its type so none of its own code runs."""
    return issubclass(type(value), Mapping)


def admit(value: Any, path: str) -> Any:
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


def has_unknown(value: Any, depth: int = 0) -> bool:
    """Whether `value` is or contains UNKNOWN; also refuses non-plain data nested inside."""
    kind = type(value)
    if value is UNKNOWN:
        return True
    if kind is type(None) or issubclass(kind, (str, int, float)):
        return False
    if depth > MAX_DEPTH:
        raise EvaluationError(f"value is nested more than {MAX_DEPTH} levels deep")
    if kind in (list, tuple, set, frozenset):
        return any(has_unknown(item, depth + 1) for item in value)
    if issubclass(kind, Mapping):
        return any(has_unknown(k, depth + 1) or has_unknown(v, depth + 1) for k, v in value.items())
    raise EvaluationError(f"a {kind.__name__} object cannot be used in expressions")


def short_repr(value: Any) -> str:
    """`repr(value)` cut to a message-sized length; a refused object shows only its type."""
    try:
        has_unknown(value)
    except EvaluationError:
        return f"<{type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def describe(value: Any) -> str:
    """None, or "a <type> (<short repr>)": for messages about a value of the wrong kind."""
    return "None" if value is None else f"a {type(value).__name__} ({short_repr(value)})"


def key_list(mapping: Mapping[Any, Any]) -> str:
    """The first keys of `mapping`, comma separated, for "has no key" messages."""
    keys = [k if issubclass(type(k), str) else short_repr(k) for k in mapping]
    shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
    return shown or "none"


def check_repeat(left: Any, right: Any) -> None:
    """Refuse `'x' * 10**9` (and `[[0] * 10**5] * 10**5`, which `str()` would expand)
    before it eats the machine's memory."""
    for sequence, count in ((left, right), (right, left)):
        size = size_of(sequence, MAX_SEQUENCE_LENGTH)
        if type(count) is int and size * count > MAX_SEQUENCE_LENGTH:
            raise EvaluationError(f"result would be longer than {MAX_SEQUENCE_LENGTH} items")


def size_of(value: Any, limit: int) -> int:
    """Characters and items in `value`, nested ones included: how big it is once printed.

    Counting stops once past `limit`, so a value made of many references to one
    big string (`[s, s, s]`, `[[s] * 100] * 100`) costs no more to measure than
    the limit, even though printing it would not. Only the types plain data is
    made of are looked into, asked of their type so no object's own code runs.
    """
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        kind = type(item)
        if issubclass(kind, (str, bytes, bytearray)):
            total += len(item)
        elif kind in (list, tuple, set, frozenset) or issubclass(kind, Mapping):
            total += len(item)
            if total <= limit:
                pending.extend(item.items() if issubclass(kind, Mapping) else item)
    return total
