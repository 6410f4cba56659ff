"""The runbook JSON Schema: the packaged core, executors merged in, and durations.

The core schema in `schemas/runbook.schema.json` is the format contract; it
leaves every executor's config open. Editors need the opposite (completion for
`http: {url: ...}`), so `full_schema()` embeds each installed executor's own
schema as a separate resource under `$defs` and closes `check`/`action` over
the known names. Validators are compiled once per schema and kept in-process,
so validating many files in one `runbook validate` pays the cost once. Beside
each, `compile_check` builds a plain-Python predicate for the keywords runbook
schemas use: it proves a valid document valid several times faster than
jsonschema walks it, and jsonschema is left to find and explain the problems.

Two non-standard keywords, understood by VS Code and yaml-language-server,
carry human messages: `patternErrorMessage` (used when a `pattern` fails) and
`errorMessage` (used when a composite rule such as `oneOf` or `maxProperties`
fails). The loader uses them too.
"""

from __future__ import annotations

import copy
import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from runbook.errors import UnknownExecutor

if TYPE_CHECKING:
    # jsonschema ships no type information (types-jsonschema is optional).
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped,unused-ignore]
    from jsonschema.protocols import Validator  # type: ignore[import-untyped,unused-ignore]

    from runbook.contract import ExecutorSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
EXECUTOR_ID_PREFIX = "urn:runbook-as-code:schema:executor:"

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# Units must come in decreasing order ("1h30m", not "30m1h"); a bare number is seconds.
DURATION_PATTERN = (
    rf"^(?:{_NUMBER}|(?=[0-9])(?:{_NUMBER}d)?(?:{_NUMBER}h)?(?:{_NUMBER}m(?!s))?"
    rf"(?:{_NUMBER}s)?(?:{_NUMBER}ms)?)$"
)
DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION = 365 * 86400.0  # a year: longer is a typo, and overflows timers


def parse_duration(value: object) -> float:
    """Seconds in a duration: a non-negative number, or text like '500ms', '1h30m'.

    At most MAX_DURATION (365d); ValueError for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration, got {type(value).__name__} {short(value)}")
    if isinstance(value, str):
        text = value.strip()
        if not DURATION.match(text):
            raise ValueError(
                f"{short(value)} is not a duration; use seconds (30, 0.5) or text like "
                "'500ms', '30s', '5m', '1h30m'"
            )
        if _PART.search(text) is None:
            seconds = float(text)
        else:
            seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int past a float's range
            seconds = math.inf
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(
                f"a duration must be a finite number of seconds >= 0, got {short(value)}"
            )
    if not seconds <= MAX_DURATION:
        raise ValueError(
            f"a duration must be a finite number of seconds up to {MAX_DURATION:.0f} (365d), "
            f"got {short(value)}"
        )
    return seconds


@cache
def core_schema() -> dict[str, Any]:
    """The packaged core schema (executor configs left open). Do not mutate it."""
    try:  # importlib.resources costs more to import than reading the file does
        data = (Path(__file__).parents[1] / "schemas" / "runbook.schema.json").read_bytes()
    except OSError:  # installed in a zip archive, say
        from importlib import resources

        data = resources.files("runbook.schemas").joinpath("runbook.schema.json").read_bytes()
    schema: dict[str, Any] = json.loads(data)
    return schema


@cache
def core_validator() -> Validator:
    """The compiled validator for the core schema (its `$defs` references inlined)."""
    return validator_for(inline_refs(core_schema(), core_schema().get("$defs", {})))


def inline_refs(node: Any, defs: Mapping[str, Any], inlining: tuple[str, ...] = ()) -> Any:
    """`node` with each `{"$ref": "#/$defs/NAME", ...}` replaced by that definition.

    Validating the same: a reference's siblings here are annotations (`description`),
    kept beside the definition's keywords, and a definition that refers to itself
    keeps its `$ref`. Following a reference costs a registry lookup on every
    instance it applies to, which was a third of validating a 12,000-step runbook.
    """
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if not isinstance(ref, str):
            ref = ""
        name = ref[len("#/$defs/") :] if ref.startswith("#/$defs/") else ""
        if name in defs and ref not in inlining:
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**inline_refs(defs[name], defs, (*inlining, ref)), **siblings}
        return {
            key: value if key == "$defs" else inline_refs(value, defs, inlining)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [inline_refs(item, defs, inlining) for item in node]
    return node


def executor_schema(name: str, executors: Mapping[str, ExecutorSpec]) -> dict[str, Any]:
    """One executor's config schema, standalone (with `$schema`, `$id` and a title).

    A new top-level mapping over the spec's own nested schemas: read it, do not mutate it.
    """
    spec = executors.get(name)
    if spec is None:
        raise UnknownExecutor(unknown_executor_message(name, executors))
    return _standalone(spec)


def unknown_executor_message(name: str, executors: Mapping[str, ExecutorSpec]) -> str:
    """ "unknown executor 'htp'; did you mean 'http'? (installed executors: http, shell)"."""
    import difflib

    close = difflib.get_close_matches(name, list(executors), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    installed = ", ".join(sorted(executors)) or "none"
    return f"unknown executor '{name}'{hint} (installed executors: {installed})"


def _standalone(spec: ExecutorSpec) -> dict[str, Any]:
    # A new top level over the spec's own nested schemas: callers only read them.
    schema = dict(spec.schema)
    schema.setdefault("$schema", DIALECT)
    schema.setdefault("$id", EXECUTOR_ID_PREFIX + spec.name)
    schema.setdefault("title", f"{spec.name} executor config")
    if spec.description:
        schema.setdefault("description", spec.description)
    return schema


def full_schema(executors: Mapping[str, ExecutorSpec]) -> dict[str, Any]:
    """The core schema with `check`/`action`/verify `check` closed over known executors.

    Each executor schema is embedded as its own resource (it keeps its `$id`,
    so its internal `#/...` references still resolve inside it).
    """
    schema = copy.deepcopy(core_schema())
    defs = schema["$defs"]
    names = sorted(executors)
    for name in names:
        defs[f"executor.{name}"] = _standalone(executors[name])
    call = dict(defs["executorCall"])
    call.pop("additionalProperties", None)
    call["properties"] = {
        name: {
            "$ref": defs[f"executor.{name}"]["$id"],
            "description": executors[name].description or f"The {name} executor's config.",
        }
        for name in names
    }
    call["additionalProperties"] = False
    call["errorMessage"] = "Name exactly one executor with its config; installed: " + (
        ", ".join(names) or "none"
    )
    defs["executorCall"] = call
    return schema


def validator_for(schema: Mapping[str, Any]) -> Validator:
    """A compiled Draft 2020-12 validator for `schema`, cached by `$id` and content."""
    # Keyed by content, not identity: two registries may give one name different schemas.
    return _compiled(json.dumps(schema, sort_keys=True, default=repr))


@cache
def _compiled(text: str) -> Validator:
    # jsonschema costs ~50 ms to import: only paid by commands that validate.
    from jsonschema import validators  # type: ignore[import-untyped,unused-ignore]

    schema = json.loads(text)
    # An executor may declare an older draft in `$schema`; without one, 2020-12.
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    validator: Validator = cls(schema)
    return validator


# -- a fast path for valid documents --------------------------------------------------------
Verdict = bool | None
"""True: valid; False: invalid; None: the fast path cannot tell exactly (ask jsonschema)."""
Check = Callable[[Any], Verdict]
_Builder = Callable[[Any, Mapping[str, Any]], "Check | None"]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "format",  # an annotation: validators here are built without a format checker
        "deprecated",
        "readOnly",
        "writeOnly",
        "markdownDescription",
        "errorMessage",
        "patternErrorMessage",
    }
)
_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def is_valid_fast(check: Check | None, instance: Any) -> bool:
    """True only when `check` (from `compile_check`) proves `instance` valid.

    False means "not proven": the caller then runs the real validator, which
    decides and explains. So a runbook with no problem is never walked by
    jsonschema, whose per-node cost was half of validating a 12,000-step file.
    """
    return check is not None and check(instance) is True


def compile_check(schema: Any) -> Check | None:
    """A predicate giving jsonschema's verdict on `schema` (Draft 2020-12), or None.

    It covers the keywords runbook schemas use (type, properties, required,
    additionalProperties, propertyNames, items, enum, const, pattern, lengths,
    bounds, oneOf, anyOf, allOf, not, if/then/else; `$ref` inlined first with
    `inline_refs`); a schema using anything else, or another draft, gets None
    and is always validated by jsonschema. Where exactness would cost more than
    it saves (`uniqueItems` over non-strings), the verdict is None.
    """
    if isinstance(schema, Mapping) and schema.get("$schema", DIALECT) != DIALECT:
        return None  # older drafts differ (draft 4's integer, draft 7's array `items`)
    try:
        return _compile(schema)
    except (re.error, LookupError, TypeError, ValueError):  # a malformed schema
        return None


def _all(checks: tuple[Check, ...], values: Iterable[Any]) -> Verdict:
    """Every check on every value: False as soon as one fails, None if one cannot tell."""
    verdict: Verdict = True
    for value in values:
        for check in checks:
            result = check(value)
            if result is False:
                return False
            if result is None:
                verdict = None
    return verdict


def _always(value: Any) -> Verdict:
    return True


def _never(value: Any) -> Verdict:
    return False


def _compile(schema: Any) -> Check | None:
    if isinstance(schema, bool):
        return _always if schema else _never
    if not isinstance(schema, Mapping):
        return None
    checks: list[Check | None] = []
    for key, value in schema.items():
        if key in _ANNOTATIONS or key in ("then", "else"):  # `if` reads then/else
            continue
        if key == "properties":
            if "additionalProperties" not in schema:  # else that check covers them too
                checks.append(_properties(value, schema))
        elif key in _KEYWORDS:
            checks.append(_KEYWORDS[key](value, schema))
        else:
            return None  # a keyword the fast path does not implement
    if any(check is None for check in checks):
        return None
    compiled = tuple(check for check in checks if check is not None)
    if not compiled:
        return _always
    if len(compiled) == 1:
        return compiled[0]
    return lambda v: _all(compiled, (v,))


def _compile_each(schemas: Iterable[Any]) -> tuple[Check, ...] | None:
    compiled = [_compile(sub) for sub in schemas]
    return None if any(c is None for c in compiled) else tuple(c for c in compiled if c)


def _type(value: Any, schema: Mapping[str, Any]) -> Check | None:
    tests = tuple(_TYPE_TESTS[name] for name in ([value] if isinstance(value, str) else value))
    return lambda v: any(test(v) for test in tests)


def _properties(value: Mapping[str, Any], schema: Mapping[str, Any]) -> Check | None:
    compiled = _compile_each(value.values())
    if compiled is None:
        return None
    named = dict(zip(value, compiled, strict=True))

    def check(v: Any) -> Verdict:
        if not isinstance(v, dict):
            return True
        return _all_pairs((named[k], v[k]) for k in named if k in v)

    return check


def _all_pairs(pairs: Iterable[tuple[Check, Any]]) -> Verdict:
    verdict: Verdict = True
    for check, item in pairs:
        result = check(item)
        if result is False:
            return False
        if result is None:
            verdict = None
    return verdict


def _additional(value: Any, schema: Mapping[str, Any]) -> Check | None:
    if "patternProperties" in schema:
        return None
    properties = schema.get("properties", {})
    compiled = _compile_each([*properties.values(), value])
    if compiled is None:
        return None
    named, other = dict(zip(properties, compiled, strict=False)), compiled[-1]

    def check(v: Any) -> Verdict:
        if not isinstance(v, dict):
            return True
        return _all_pairs((named.get(k, other), item) for k, item in v.items())

    return check


def _required(value: list[str], schema: Mapping[str, Any]) -> Check | None:
    names = tuple(value)
    return lambda v: not isinstance(v, dict) or all(name in v for name in names)


def _property_names(value: Any, schema: Mapping[str, Any]) -> Check | None:
    names = _compile(value)
    if names is None:
        return None
    return lambda v: True if not isinstance(v, dict) else _all((names,), v)


def _items(value: Any, schema: Mapping[str, Any]) -> Check | None:
    item = _compile(value) if "prefixItems" not in schema else None
    if item is None:
        return None
    return lambda v: True if not isinstance(v, list) else _all((item,), v)


def _unique_items(value: bool, schema: Mapping[str, Any]) -> Check | None:
    def check(v: Any) -> Verdict:
        if not value or not isinstance(v, list):
            return True
        if not all(isinstance(item, str) for item in v):
            return None  # jsonschema's equality (1 == 1.0, True != 1) is not Python's
        return len(set(v)) == len(v)

    return check


def _enum(value: list[Any], schema: Mapping[str, Any]) -> Check | None:
    strings = frozenset(x for x in value if isinstance(x, str))
    exact = len(strings) == len(value)  # a non-string never equals a string in jsonschema

    def check(v: Any) -> Verdict:
        if isinstance(v, str) and v in strings:
            return True
        return False if exact else None

    return check


def _const(value: Any, schema: Mapping[str, Any]) -> Check | None:
    return _enum([value], schema)


def _pattern(value: str, schema: Mapping[str, Any]) -> Check | None:
    if not isinstance(value, str):
        return None
    search: Callable[[str], object] | None = None

    def check(v: Any) -> Verdict:
        # Compiled on first use: most patterns of a schema never meet a value in one file,
        # and compiling them all was most of building the checks in a fresh process.
        nonlocal search
        if not isinstance(v, str):
            return True
        if search is None:
            try:
                search = re.compile(value).search
            except re.error:  # a malformed schema: jsonschema decides (and explains)
                return None
        return search(v) is not None

    return check


def _bound(holds: Callable[[Any], bool], kind: str) -> Check:
    """A bound on strings, arrays, objects or numbers; other instances pass."""
    test = _TYPE_TESTS[kind]
    return lambda v: not test(v) or holds(v)


def _one_of(value: list[Any], schema: Mapping[str, Any]) -> Check | None:
    branches = _compile_each(value)
    if branches is None:
        return None

    def check(v: Any) -> Verdict:
        results = [branch(v) for branch in branches]
        return None if None in results else results.count(True) == 1

    return check


def _any_of(value: list[Any], schema: Mapping[str, Any]) -> Check | None:
    branches = _compile_each(value)
    if branches is None:
        return None

    def check(v: Any) -> Verdict:
        results = [branch(v) for branch in branches]
        return True if True in results else None if None in results else False

    return check


def _all_of(value: list[Any], schema: Mapping[str, Any]) -> Check | None:
    branches = _compile_each(value)
    return None if branches is None else lambda v: _all(branches, (v,))


def _not(value: Any, schema: Mapping[str, Any]) -> Check | None:
    negated = _compile(value)
    if negated is None:
        return None
    return lambda v: None if (result := negated(v)) is None else not result


def _if(value: Any, schema: Mapping[str, Any]) -> Check | None:
    branches = _compile_each([value, schema.get("then", True), schema.get("else", True)])
    if branches is None:
        return None
    condition, then, otherwise = branches

    def check(v: Any) -> Verdict:
        holds = condition(v)
        return None if holds is None else then(v) if holds else otherwise(v)

    return check


_KEYWORDS: dict[str, _Builder] = {
    "type": _type,
    "additionalProperties": _additional,
    "required": _required,
    "propertyNames": _property_names,
    "minProperties": lambda n, s: _bound(lambda v: len(v) >= n, "object"),
    "maxProperties": lambda n, s: _bound(lambda v: len(v) <= n, "object"),
    "items": _items,
    "minItems": lambda n, s: _bound(lambda v: len(v) >= n, "array"),
    "maxItems": lambda n, s: _bound(lambda v: len(v) <= n, "array"),
    "uniqueItems": _unique_items,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minLength": lambda n, s: _bound(lambda v: len(v) >= n, "string"),
    "maxLength": lambda n, s: _bound(lambda v: len(v) <= n, "string"),
    "minimum": lambda n, s: _bound(lambda v: v >= n, "number"),
    "maximum": lambda n, s: _bound(lambda v: v <= n, "number"),
    "exclusiveMinimum": lambda n, s: _bound(lambda v: v > n, "number"),
    "exclusiveMaximum": lambda n, s: _bound(lambda v: v < n, "number"),
    "oneOf": _one_of,
    "anyOf": _any_of,
    "allOf": _all_of,
    "not": _not,
    "if": _if,
}


def fast_check_for(schema: Mapping[str, Any]) -> Check | None:
    """`compile_check` of a standalone schema, its local `$defs` references inlined."""
    if any(isinstance(sub, Mapping) and "$id" in sub for sub in _subschemas(schema)):
        return None  # a nested resource: `#/$defs/...` inside it means its own $defs
    return compile_check(inline_refs(schema, schema.get("$defs", {})))


def _subschemas(schema: Any) -> Iterable[Any]:
    """Every mapping below `schema` (not itself), for `fast_check_for`'s look at `$id`s."""
    stack = list(schema.values()) if isinstance(schema, Mapping) else []
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@cache
def core_check() -> Check | None:
    """The fast path's predicate for the core schema (see `compile_check`)."""
    return fast_check_for(core_schema())


# -- configs after rendering --------------------------------------------------------------
def rendered_none_problem(
    step_id: str, spec: ExecutorSpec, source: Mapping[str, Any], rendered: Mapping[str, Any]
) -> str | None:
    """Why a config whose templates rendered to None cannot go to its executor, else None.

    An optional param left unset renders as None. In an optional key of the
    config that reads as "not given" (an executor's `config.get(...)`), but a
    key the executor needs -- a required one, one of the keys an operation is
    named by -- or a value inside (a list item, an `env` entry) would make it
    trip. So the config is checked against the executor's schema with its None
    keys left out: if that fails, and the config with those templates as
    written passes (as it did when the file was loaded), the None is to blame
    and the message names the step and the field.
    Other rendered values are the executor's to take (`''` for "none", an int
    where the file wrote a string). A config with no template costs nothing.
    """
    nones = [
        path
        for path, text in _strings_in(source, ())
        if _is_template(text) and path and _value_at(rendered, path) is None
    ]
    if not nones:
        return None
    schema, fast = _spec_validator(spec)

    def valid(instance: Any) -> bool:
        return is_valid_fast(fast, instance) or bool(validator_for(schema).is_valid(instance))

    def with_nones(written: Sequence[PathT]) -> Any:
        """`rendered` with the templates at `written` as written, other None keys left out."""
        config = copy.deepcopy(dict(rendered))
        for path in nones:
            parent = _value_at(config, path[:-1])
            if path in written:
                parent[path[-1]] = _value_at(source, path)
            elif len(path) == 1:  # a key of the config itself: None reads as not given
                parent.pop(path[-1], None)
        return config

    if valid(with_nones(())) or not valid(with_nones(nones)):
        return None  # the None fields read as "not given", or something else is wrong
    blamed = next(
        (path for path in nones if not valid(with_nones([p for p in nones if p != path]))),
        nones[0],
    )
    written = short(_value_at(source, blamed))
    return (
        f"step '{step_id}': {format_path((spec.name, *blamed))}: {written} rendered to None, "
        "which this field does not take; an optional param with no value renders as None: "
        "give it a default, or skip the step with `when:`"
    )


_SPEC_VALIDATORS: dict[int, tuple[ExecutorSpec, dict[str, Any], Check | None]] = {}


def _spec_validator(spec: ExecutorSpec) -> tuple[dict[str, Any], Check | None]:
    """An executor's schema and fast check, remembered per spec (plans render every step)."""
    known = _SPEC_VALIDATORS.get(id(spec))
    if known is None or known[0] is not spec:
        schema = _standalone(spec)
        known = (spec, schema, fast_check_for(schema))
        _SPEC_VALIDATORS[id(spec)] = known
    return known[1], known[2]


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _strings_in(value: Any, path: PathT) -> list[tuple[PathT, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _strings_in(v, (*path, k))]
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in _strings_in(v, (*path, i))]
    return []


def _value_at(value: Any, path: PathT) -> Any:
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


# -- turning jsonschema errors into located, human messages ---------------------------------
class Issue(NamedTuple):
    """One located problem; sorts by position in the file."""

    line: int
    column: int
    path: str
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}:{self.column}: {self.path}: {self.message}"


PathT = tuple[str | int, ...]
_IDENT = re.compile(r"^[A-Za-z_][\w-]*$")
# Keywords whose failure is about the object's shape as a whole, where a schema's own
# `errorMessage` says it better than the generic text.
_OWN_MESSAGE = {
    "type",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "minProperties",
    "maxProperties",
    "const",
    "enum",
}
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def format_path(path: PathT) -> str:
    """`steps[2].check.http.timeout`; `$` is the top level."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "$"


def explain(errors: Iterable[ValidationError], tree: Any, prefix: PathT = ()) -> list[Issue]:
    """Located, human issues for jsonschema errors about `tree` (at `prefix` in the file).

    A wrong type at a location makes every other complaint there moot, so only
    the best type error is kept; other errors at one location are independent
    (a missing key and an unknown key) and are all kept.
    """
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    by_path: dict[PathT, list[ValidationError]] = {}
    for error in errors:
        by_path.setdefault(tuple(error.absolute_path), []).append(error)
    issues: list[Issue] = []
    for group in by_path.values():
        wrong_type = [e for e in group if e.validator == "type"]
        chosen = [best_match(wrong_type)] if wrong_type else group
        for error in chosen:
            issues.extend(_explain_one(error, tree, prefix))
    return sorted(set(issues))


def _explain_one(error: ValidationError, tree: Any, prefix: PathT) -> list[Issue]:
    path = prefix + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and error.validator_value is False:
        return [
            issue_at(tree, path + (key,), message, key=True)
            for key, message in _unknown_keys(error.instance, schema)
        ]
    if list(error.schema_path)[-2:-1] == ["propertyNames"]:
        # The error is about a key: point at the key itself.
        return [issue_at(tree, path + (error.instance,), _message(error, schema), key=True)]
    if error.validator in ("oneOf", "anyOf") and "errorMessage" not in schema:
        deeper = _composite_detail(error)
        if deeper is not None:
            return _explain_one(deeper, tree, prefix)
    return [issue_at(tree, path, _message(error, schema))]


def issue_at(tree: Any, path: PathT, message: str, *, key: bool = False) -> Issue:
    """An Issue located at `path` in a marked tree (at the key itself when `key`)."""
    from runbook.load.marked_yaml import locate

    line, column = locate(tree, path, key=key)
    return Issue(line, column, format_path(path), message)


def _message(error: ValidationError, schema: Mapping[str, Any]) -> str:
    validator, value, instance = error.validator, error.validator_value, error.instance
    if validator == "pattern":
        hint = schema.get("patternErrorMessage")
        return (
            f"{short(instance)}: {_sentence(hint)}"
            if hint
            else (f"{short(instance)} does not match {value!r}")
        )
    if validator in _OWN_MESSAGE and schema.get("errorMessage"):
        return _sentence(str(schema["errorMessage"]))
    if validator == "type":
        types = ", ".join(repr(t) for t in (value if isinstance(value, list) else [value]))
        return f"{short(instance)} is not of type {types}"
    if validator == "enum":
        return _not_allowed(instance, list(value))
    if validator == "const":
        return f"expected {value!r}, got {short(instance)}"
    text = str(error.message)
    if validator == "required":
        # jsonschema reports one missing key per error, as "'phase' is a required property".
        return re.sub(r"^(.*) is a required property$", r"missing required key \1", text)
    if validator in ("oneOf", "anyOf"):
        return _composite_message(error)
    return text if len(text) <= 200 else text[:197] + "..."


def short(value: Any) -> str:
    """A bounded repr: error messages must not dump a whole mapping."""
    return _repr.repr(value)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _not_allowed(instance: Any, allowed: list[Any]) -> str:
    import difflib

    choices = ", ".join(str(v) for v in allowed)
    message = f"{short(instance)} is not one of the allowed values"
    if isinstance(instance, str):
        close = difflib.get_close_matches(instance, [str(v) for v in allowed], n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return f"{message} (allowed: {choices})"


def _unknown_keys(instance: Any, schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    import difflib

    allowed = sorted(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    found: list[tuple[str, str]] = []
    for key in instance if isinstance(instance, Mapping) else ():
        if key in allowed or any(re.search(p, str(key)) for p in patterns):
            continue
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(str(key), allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if allowed:
            message += f" (allowed: {', '.join(allowed)})"
        found.append((str(key), message))
    return found


def _required_branches(error: ValidationError) -> list[str] | None:
    """For `oneOf: [{required: [a]}, {required: [b]}]`, the names a, b; else None."""
    names: list[str] = []
    for branch in error.validator_value:
        keys = (
            set(branch) - {"description", "title", "errorMessage"}
            if isinstance(branch, Mapping)
            else set()
        )
        if keys != {"required"}:
            return None
        names.extend(branch["required"])
    return names


def _composite_detail(error: ValidationError) -> ValidationError | None:
    """The one alternative worth reporting, when the alternatives are not just key sets."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    if _required_branches(error) is not None or not error.context:
        return None
    best = best_match([error])
    return None if best is error else best


def _composite_message(error: ValidationError) -> str:
    names = _required_branches(error)
    if names is not None:
        listed = " or ".join(repr(n) for n in names)
        how = "exactly one" if error.validator == "oneOf" else "at least one"
        return f"needs {how} of {listed}"
    if error.validator == "oneOf" and not error.context:
        return f"{short(error.instance)} matches more than one of the allowed forms"
    return f"{short(error.instance)} does not match any of the allowed forms"
