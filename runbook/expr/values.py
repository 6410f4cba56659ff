"""The values an expression may touch: UNKNOWN, the plain-data sandbox and its limits.

`runbook.expr.expression` evaluates against step results it does not trust; this
module holds the part that decides what data is admitted (`_admit`,
`_has_unknown`), how values are quoted back in messages, the size limits, and
the dry-run `UNKNOWN` placeholder. It is separate so the evaluator and the
failure explanations share one definition of each without importing one
another; `runbook.expr.expression` re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from runbook.errors import RunbookError

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
